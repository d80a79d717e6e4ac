"""Reading driftline's control topics: the latest value per key, then following changes.

Profiles, models, deployments and the monitor's checkpoints are compacted
topics whose latest record per key is the state. Every service that needs
them (monitor, trainer, serving nodes, the CLI) reads them here, so they all
agree on what "latest" means: committed records only, tombstones delete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from driftline.errors import BrokerError
from driftline.kafka_clients import position_of, throwaway_consumer
from driftline.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def read_compacted(settings: Settings, topic: str, timeout: float = 10.0,
                   since_ms: int | None = None) -> dict[bytes, bytes]:
    """Latest value per key of a topic, committed records only (from ``since_ms`` when given).

    All of it or an error: callers derive versions and restore state from
    this, so a partial read (a broker that stops answering, a fetch error)
    raises :class:`BrokerError` instead of returning what arrived in time.
    """
    consumer = throwaway_consumer(settings, "follow")
    try:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        ends = non_empty_ends(consumer, topic, partitions, timeout)
        starts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends]
        if since_ms is not None and ends:
            found = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in ends], timeout)
            starts = [tp if tp.offset >= 0 else TopicPartition(topic, tp.partition, ends[tp.partition])
                      for tp in found]
            ends = {tp.partition: ends[tp.partition] for tp in starts if tp.offset < ends[tp.partition]}
            starts = [tp for tp in starts if tp.partition in ends]
        consumer.assign(starts)
        latest: dict[bytes, bytes] = {}

        def take(message: Message) -> None:
            key, value = message.key(), message.value()
            if key is not None:  # a compacted topic's state is keyed; a keyless record is no state
                if value is None:
                    latest.pop(key, None)
                else:
                    latest[key] = value

        read_to(consumer, topic, ends, take, timeout)
        return latest
    finally:
        consumer.close()


def non_empty_ends(consumer: Consumer, topic: str, partitions: Iterable[int], timeout: float) -> dict[int, int]:
    """The end offset of each partition that holds records now (partition -> offset)."""
    ends = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
        if high > low:
            ends[p] = high
    return ends


def read_to(consumer: Consumer, topic: str, ends: dict[int, int], take: Callable[[Message], object],
            timeout: float) -> None:
    """Hand every record of ``topic`` from the consumer's positions up to ``ends`` (partition -> offset) to
    ``take``, or raise :class:`BrokerError` (a fetch error, or the ends not reached within ``timeout``)."""
    ends = dict(ends)
    deadline = time.monotonic() + timeout
    while ends and time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.05):  # a batch call waits its whole timeout unless full
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise BrokerError(f"reading {topic} failed: {error.str()}")
            take(message)
            _, partition, offset = position_of(message)
            if offset + 1 >= ends.get(partition, 0):
                ends.pop(partition, None)
        # A transactional topic ends on a commit marker, which is never delivered as a record:
        # the position passing the end is what says the partition is read.
        for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
            if tp.offset >= ends.get(tp.partition, 1 << 62):
                ends.pop(tp.partition, None)
    if ends:
        raise BrokerError(f"reading {topic} did not reach its end within {timeout:g} s "
                          f"(partitions {sorted(ends)} unread): is the broker reachable?")


def read_record(settings: Settings, topic: str, partition: int, offset: int, key: bytes,
                timeout: float = 10.0) -> bytes | None:
    """The value of the record at ``offset`` of ``partition``, if it is still the record of ``key`` there.

    Followers keep what they need of a large record (a model's metadata) and
    where it is, and read its bytes here when they are needed (a model's
    artifact, at load). None when compaction has since replaced the record:
    the follower will see the newer one. A fetch error or no record within
    ``timeout`` raises :class:`BrokerError`.
    """
    consumer = throwaway_consumer(settings, "record")
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in consumer.consume(1, 0.1):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise BrokerError(f"reading {topic} [{partition}] @{offset} failed: {error.str()}")
                if message.offset() == offset and message.key() == key:
                    return message.value()
                return None
        raise BrokerError(f"the record at {topic} [{partition}] @{offset} did not arrive within {timeout:g} s")
    finally:
        consumer.close()


class TopicFollower(Generic[T]):
    """The latest parsed value per key of a control topic, kept current by ``poll``.

    A record that does not parse is logged and skipped (one bad record must
    not stop a service from following the others); ``caught_up`` says when
    everything that existed at start-up has been read, and :meth:`catch_up`
    reads everything committed when it is called. ``located`` says where each
    key's latest record is, so a follower may keep a summary of a large
    record (``parse``) and read its bytes again when it needs them
    (:meth:`reread`).
    """

    def __init__(self, settings: Settings, short_topic: str, parse: Callable[[bytes], T]) -> None:
        self.topic = settings.topic(short_topic)
        self.parse = parse
        self.consumer = throwaway_consumer(settings, "follow")
        self.settings = settings
        self.partitions = list(self.consumer.list_topics(self.topic, timeout=10).topics[self.topic].partitions)
        self._ends = non_empty_ends(self.consumer, self.topic, self.partitions, 10.0)
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self.partitions])
        self.latest: dict[bytes, T] = {}
        self.located: dict[bytes, tuple[int, int]] = {}  # key -> (partition, offset) of its latest record

    @property
    def caught_up(self) -> bool:
        return not self._ends

    def poll(self, timeout: float = 0.0, max_messages: int = 100) -> list[T]:
        """Read what arrived; the newly parsed values in topic order."""
        fresh: list[T] = []
        if self._ends:
            for tp in self.consumer.position([TopicPartition(self.topic, p) for p in self._ends]):
                if tp.offset >= self._ends.get(tp.partition, 1 << 62):
                    self._ends.pop(tp.partition, None)
        for message in self.consumer.consume(max_messages, timeout):
            if message.error():
                continue
            _, partition, offset = position_of(message)
            if offset + 1 >= self._ends.get(partition, 0):
                self._ends.pop(partition, None)
            key = message.key()
            if self._take(message) and key is not None:
                fresh.append(self.latest[key])
        return fresh

    def catch_up(self, timeout: float = 10.0) -> None:
        """Read everything committed on the topic now (the registry's read-your-writes), or raise
        :class:`BrokerError`: callers derive versions from what they read, so a partial read must not pass."""
        ends = non_empty_ends(self.consumer, self.topic, self.partitions, timeout)
        for tp in self.consumer.position([TopicPartition(self.topic, p) for p in ends]):
            if tp.offset >= ends[tp.partition]:
                ends.pop(tp.partition)
        read_to(self.consumer, self.topic, ends, self._take, timeout)
        self._ends = {}

    def reread(self, key: bytes) -> bytes | None:
        """The bytes of ``key``'s latest record as read, read again from the topic (what ``parse`` did not
        keep: a model's artifact); None when the key has none, or compaction replaced it since."""
        place = self.located.get(key)
        return read_record(self.settings, self.topic, *place, key) if place is not None else None

    def _take(self, message: Message) -> bool:
        """Keep a record's parsed value (a tombstone deletes its key); whether a value was kept (a parsed
        value may itself be None: a follower that only counts records parses them to nothing)."""
        key, raw = message.key(), message.value()
        if key is None:
            return False  # a compacted topic's state is keyed; a keyless record is no state
        if raw is None:
            self.latest.pop(key, None)
            self.located.pop(key, None)
            return False
        try:
            value = self.parse(raw)
        except Exception as exc:  # any unreadable record is skipped the same way
            log.error("ignoring an unreadable record at %s@%d: %s", self.topic, message.offset(), exc)
            return False
        self.latest[key] = value
        self.located[key] = position_of(message)[1:]
        return True

    def close(self) -> None:
        self.consumer.close()
