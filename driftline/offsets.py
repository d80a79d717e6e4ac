"""Time ranges of a topic as exact offset ranges, and reading exactly those ranges back.

A training run's lineage is the list of ``OffsetRange`` it read: the same
ranges read again give the same records (committed records only), which is
what makes ``driftline runs replay`` reproduce a dataset bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from confluent_kafka import Consumer, Message, TopicPartition

from driftline.errors import ConfigError
from driftline.kafka_clients import position_of, throwaway_consumer
from driftline.settings import Settings

K = TypeVar("K")


def held_back(positions: Mapping[K, int], oldest: Iterable[tuple[K, int]]) -> dict[K, int]:
    """Offsets safe to commit: each partition's position, held back to the oldest offset some stage
    still holds in state (so a restart re-reads it). One rule for every stateful stage."""
    safe = dict(positions)
    for key, offset in oldest:
        if key in safe:
            safe[key] = min(safe[key], offset)
    return safe


@dataclass(frozen=True, order=True)
class OffsetRange:
    topic: str
    partition: int
    start_offset: int
    end_offset: int  # exclusive

    def to_avro(self) -> dict:
        return asdict(self)


def ranges_for_times(settings: Settings, topic: str, start_ms: int, end_ms: int | None = None,
                     timeout: float = 10.0) -> list[OffsetRange]:
    """Offsets of records with broker timestamps in [start_ms, end_ms) (end: the current end)."""
    consumer = throwaway_consumer(settings, "range")
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=timeout).topics[topic].partitions)
        if not partitions:
            raise ConfigError(f"topic {topic} does not exist; run 'driftline topics create'")
        starts = consumer.offsets_for_times([TopicPartition(topic, p, start_ms) for p in partitions], timeout)
        ends = (consumer.offsets_for_times([TopicPartition(topic, p, end_ms) for p in partitions], timeout)
                if end_ms is not None else [TopicPartition(topic, p, -1) for p in partitions])
        ranges = []
        for s, e in zip(starts, ends, strict=True):
            high = consumer.get_watermark_offsets(TopicPartition(topic, s.partition), timeout=timeout)[1]
            first = s.offset if s.offset >= 0 else high
            last = e.offset if e.offset >= 0 else high
            if last > first:
                ranges.append(OffsetRange(topic, s.partition, first, last))
        return ranges
    finally:
        consumer.close()


def follow_from(settings: Settings, topics: list[str], start_ms: int,
                purpose: str) -> tuple[Consumer, dict[tuple[str, int], int]]:
    """A consumer assigned to every partition of ``topics`` from the first record at or after ``start_ms``
    (committed records only), and each non-empty partition's end when it began: a reader whose state is
    derived from the topics knows when it has read what existed (``ends``)."""
    consumer = throwaway_consumer(settings, purpose)
    wanted = [TopicPartition(topic, p, start_ms) for topic in topics
              for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions]
    starts = consumer.offsets_for_times(wanted, 10) if wanted else []  # no partitions: no topic
    consumer.assign(starts)
    ends = {}
    for tp in starts:
        high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[1]
        if 0 <= tp.offset < high:
            ends[(tp.topic, tp.partition)] = high
    return consumer, ends


def read_ranges(settings: Settings, ranges: list[OffsetRange], timeout: float = 60.0,
                batch: int = 5000, *, from_earliest: bool = False) -> Iterator[list[Message]]:
    """Batches of the committed records inside ``ranges`` (transaction markers and aborted records skipped).

    ``from_earliest``: a range may start before what retention kept; it is then read from the earliest
    record kept (else a range must be readable whole)."""
    pending = {(r.topic, r.partition): r.end_offset for r in ranges if r.end_offset > r.start_offset}
    if not pending:
        return
    next_offset = {(r.topic, r.partition): r.start_offset for r in ranges}
    consumer = throwaway_consumer(settings, "range", **({"auto.offset.reset": "earliest"} if from_earliest else {}))
    try:
        consumer.assign([TopicPartition(r.topic, r.partition, r.start_offset) for r in ranges
                         if (r.topic, r.partition) in pending])
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise ConfigError(f"reading {sorted(pending)} timed out; is the broker up?")
            # A batch call returns early only once it holds all it asked for: ask for no more than the
            # ranges have left, so the last call does not sit out its timeout (markers aside).
            left = sum(end - next_offset[key] for key, end in pending.items())
            messages = consumer.consume(max(1, min(batch, left)), 0.05)
            inside = []
            for message in messages:
                if message.error():
                    continue
                topic, partition, offset = position_of(message)
                key = (topic, partition)
                end = pending.get(key)
                if end is None or offset >= end:
                    pending.pop(key, None)
                    continue
                inside.append(message)
                next_offset[key] = offset + 1
                if offset + 1 >= end:
                    pending.pop(key)
            # A range can end on a transaction marker: the position passes the end without a record.
            for tp in consumer.position([TopicPartition(t, p) for t, p in pending]):
                if tp.offset >= pending.get((tp.topic, tp.partition), 1 << 62):
                    pending.pop((tp.topic, tp.partition), None)
            if inside:
                yield inside
    finally:
        consumer.close()


@dataclass
class ModelRecords:
    """One model's decoded events inside offset ranges; events that do not decode are counted in ``skipped``.

    (They were dead-lettered, or never were driftline events, when they were
    first consumed; a reader of the past skips them the same way.)
    """

    settings: Settings
    model: str
    skipped: int = 0

    def read(self, ranges: list[OffsetRange], timeout: float = 60.0) -> Iterator[dict[str, Any]]:
        from driftline.contract import codec_for
        from schemas import ContractError

        codec = codec_for(self.settings)
        for batch in read_ranges(self.settings, ranges, timeout=timeout):
            for message in batch:
                try:
                    record = codec.decode(message.value() or b"")
                except ContractError:
                    self.skipped += 1
                    continue
                if record.get("model") == self.model:
                    yield record
