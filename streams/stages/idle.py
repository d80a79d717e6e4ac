"""Stage 1's idle declarations: which source partitions it has verified quiet, told to the closing stages.

The rule is in :mod:`streams.drift.watermarks`; this module is its Kafka
side. :class:`EndProbe` asks the partitions' leaders where they end (the
admin client's ``list_offsets``, committed records only) without blocking
the worker's loop: a request is sent, and its answers are read on a later
step. A partition is at its end when the reader's position (taken when the
request was sent) is at or past the answer; an unanswered or failed request
says "not at the end", so an unreachable partition is never declared idle.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

from confluent_kafka import Consumer, IsolationLevel, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from driftline.kafka_clients import make_admin
from driftline.settings import Settings
from streams.drift.watermarks import SourcePartition

log = logging.getLogger(__name__)
OFFSET_INVALID = -1001


class EndProbe:
    """Asks, every ``every_s`` seconds, whether the reader is at the end of each of its partitions."""

    def __init__(self, settings: Settings, consumer: Consumer, every_s: float) -> None:
        self.consumer = consumer
        self.every_s = every_s
        self.admin: AdminClient = make_admin(settings)
        self._pending: dict[TopicPartition, Future] = {}
        self._asked_at: dict[SourcePartition, int] = {}  # the position when the question was sent
        self._committed: dict[SourcePartition, int] = {}  # where nothing was read since assignment
        self._next = 0.0

    def poll(self, partitions: list[TopicPartition]) -> dict[SourcePartition, bool]:
        """Answers that arrived since the last call ({source: at its end}); sends the next question when due."""
        answers: dict[SourcePartition, bool] = {}
        if self._pending and all(future.done() for future in self._pending.values()):
            for tp, future in self._pending.items():
                source = (tp.topic, tp.partition)
                try:
                    end = future.result().offset
                except KafkaException as exc:
                    log.debug("end of %s[%d] unknown: %s", tp.topic, tp.partition, exc)
                    answers[source] = False
                    continue
                answers[source] = self._asked_at.get(source, OFFSET_INVALID) >= end >= 0
            self._pending = {}
        now = time.monotonic()
        if not self._pending and partitions and now >= self._next:
            self._next = now + self.every_s
            self._ask(partitions)
        return answers

    def _ask(self, partitions: list[TopicPartition]) -> None:
        positions = self.consumer.position(partitions)
        committed = self._committed_offsets([tp for tp in positions if tp.offset < 0])
        self._asked_at = {}
        for tp in positions:
            source = (tp.topic, tp.partition)
            offset = tp.offset if tp.offset >= 0 else committed.get(source, OFFSET_INVALID)
            if offset >= 0:
                self._asked_at[source] = offset
        try:
            self._pending = self.admin.list_offsets(
                {TopicPartition(tp.topic, tp.partition): OffsetSpec.latest() for tp in partitions},
                isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=max(1.0, self.every_s))
        except KafkaException as exc:  # the cluster is away: nothing is at its end until it answers
            log.debug("end offsets not asked: %s", exc)
            self._pending = {}

    def _committed_offsets(self, unread: list[TopicPartition]) -> dict[SourcePartition, int]:
        """Where the group resumes the partitions nothing was read from since assignment: asked once, in
        one request for all of them (the loop waits for it, at most 5 s, once per assignment)."""
        missing = [TopicPartition(tp.topic, tp.partition) for tp in unread
                   if (tp.topic, tp.partition) not in self._committed]
        if missing:
            try:
                found = self.consumer.committed(missing, timeout=5)
            except KafkaException:
                found = []  # ask again next time
            for tp in found:
                # No commit at all: the partition has never been read, so it holds nothing it could be
                # behind on only if it is empty; position 0 says exactly that when compared with its end.
                self._committed[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else 0
        return self._committed

    def forget(self) -> None:
        """After a rebalance: positions of partitions read before are asked of the group again."""
        self._committed = {}


class TopicPartitions:
    """Every partition of some topics, from the cluster's metadata, asked again every ``refresh_s``.

    Source progress goes to every partition of a closing stage's input, and a
    closing stage waits on every partition of its sources' topics: both need
    the whole list, and a topic may gain partitions.
    """

    def __init__(self, client: Consumer | Producer, refresh_s: float = 60.0) -> None:
        self.client = client
        self.refresh_s = refresh_s
        self._counts: dict[str, tuple[int, float]] = {}  # topic -> (partition count, asked at)

    def count(self, topic: str) -> int:
        count, asked = self._counts.get(topic, (0, -self.refresh_s))
        if time.monotonic() - asked >= self.refresh_s:
            count = len(self.client.list_topics(topic, timeout=10).topics[topic].partitions)
            self._counts[topic] = (count, time.monotonic())
        return count

    def sources(self, *topics: str) -> set[SourcePartition]:
        return {(topic, partition) for topic in topics for partition in range(self.count(topic))}
