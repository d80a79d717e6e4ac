"""Reference data already in Kafka: the rows of a model on a topic between two times.

``driftline profile --from-topic`` builds a profile from training data that
was produced as Features events, instead of from a file. Times become offsets
through ``offsets_for_times``; the range read is recorded as the profile's
source, so it can be read again.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime

from confluent_kafka import Consumer, TopicPartition

from driftline.contract import codec_for
from driftline.errors import ConfigError
from driftline.kafka_clients import common_config
from driftline.settings import Settings
from schemas import ContractError, FeatureFrame, Table

log = logging.getLogger(__name__)


def parse_time(text: str) -> int:
    """ISO 8601 (``2026-11-25T10:00:00Z``) or epoch milliseconds, as epoch milliseconds."""
    if text.isdigit():
        return int(text)
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise ConfigError(f"{text!r} is neither an ISO 8601 time nor epoch milliseconds") from None


def read_model_rows(settings: Settings, topic_kind: str, model: str, start_ms: int, end_ms: int,
                    timeout: float = 30.0) -> tuple[Table, str]:
    """The model's rows on ``features`` or ``predictions`` with broker timestamps in [start, end)."""
    if topic_kind not in ("features", "predictions"):
        raise ConfigError(f"--from-topic must be features or predictions, got {topic_kind!r}")
    if end_ms <= start_ms:
        raise ConfigError("the end of the time range must be after its start")
    topic = settings.topic(topic_kind)
    codec = codec_for(settings)
    consumer = Consumer({**common_config(settings), "group.id": f"driftline-profile-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        starts = consumer.offsets_for_times([TopicPartition(topic, p, start_ms) for p in partitions], timeout)
        ends = consumer.offsets_for_times([TopicPartition(topic, p, end_ms) for p in partitions], timeout)
        ranges = {}
        for s, e in zip(starts, ends, strict=True):
            high = consumer.get_watermark_offsets(TopicPartition(topic, s.partition), timeout=10)[1]
            first = s.offset if s.offset >= 0 else high
            last = e.offset if e.offset >= 0 else high
            if last > first:
                ranges[s.partition] = (first, last)
        consumer.assign([TopicPartition(topic, p, first) for p, (first, _) in ranges.items()])
        items, skipped, pending = [], 0, dict(ranges)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise ConfigError(f"reading {topic} timed out with partitions {sorted(pending)} unfinished")
            messages = consumer.consume(1000, 0.5)  # returns early with what there is
            for message in messages:
                if message.error() or message.partition() not in pending:
                    continue
                if message.offset() >= pending[message.partition()][1]:
                    pending.pop(message.partition())
                    continue
                try:
                    record = codec.decode(message.value() or b"")
                except ContractError:
                    skipped += 1
                    continue
                if record.get("model") == model and "columns" in record:
                    items.append((record["columns"], len(record["request_ids"])))
                if message.offset() + 1 >= pending[message.partition()][1]:
                    pending.pop(message.partition())
        if skipped:
            log.warning("skipped %d undecodable events in %s", skipped, topic)
        if not items:
            raise ConfigError(f"no {model!r} rows on {topic} between {start_ms} and {end_ms}")
        source = f"{topic}@" + ",".join(f"{p}:{a}-{b}" for p, (a, b) in sorted(ranges.items()))
        return Table.from_frame(FeatureFrame.from_records(items)), source
    finally:
        consumer.close()
