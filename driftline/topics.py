"""driftline's topics: their names, layout and idempotent creation.

Control topics (models, deployments, profiles) are compacted — the latest
record per key is the state — and have one partition so every reader sees
them in one order. Event topics spread over ``settings.partitions``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic, OffsetSpec

from driftline.errors import BrokerError
from driftline.kafka_clients import make_admin, unreachable
from driftline.settings import Settings

EVENT_TOPICS = ("features", "predictions", "labels")
ALL_TOPICS = (
    "features", "predictions", "labels", "stats.partial", "stats", "alerts",
    "models", "deployments", "runs", "profiles", "deadletter", "monitor.watermarks", "quality",
    "monitor.by-model", "monitor.score-state",
)
COMPACTED = frozenset({"models", "deployments", "profiles", "monitor.watermarks", "monitor.score-state"})


@dataclass(frozen=True)
class TopicSpec:
    """How one driftline topic is laid out."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    specs = []
    for short in ALL_TOPICS:
        config = {
            "retention.ms": str(settings.retention_ms),
            "min.insync.replicas": str(min(2, settings.replication_factor)),
        }
        partitions = settings.partitions
        if short in COMPACTED:
            config = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000",
                      "min.insync.replicas": config["min.insync.replicas"]}
            partitions = 1
        if short in ("models", "deadletter"):
            # Artifacts, and dead letters that carry any event's original bytes.
            config["max.message.bytes"] = str(settings.max_message_bytes)
        specs.append(TopicSpec(settings.topic(short), partitions, config))
    return specs


def create_topics(settings: Settings, timeout: float = 30.0) -> dict[str, str]:
    """Create every driftline topic that does not exist yet.

    Returns ``{topic: "created" | "exists"}``. Safe to run any number of times.
    """
    admin = make_admin(settings)
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise unreachable(settings, exc) from None
    wanted = [s for s in topic_specs(settings) if s.name not in existing]
    result = {s.name: "exists" for s in topic_specs(settings) if s.name in existing}
    if not wanted:
        return result
    futures = admin.create_topics(
        [NewTopic(s.name, num_partitions=s.partitions,
                  replication_factor=settings.replication_factor, config=s.config)
         for s in wanted],
        operation_timeout=timeout,
    )
    for name, future in futures.items():
        try:
            future.result()
            result[name] = "created"
        except KafkaException as exc:
            error = exc.args[0]
            if error.name() == "TOPIC_ALREADY_EXISTS":  # a concurrent creator won the race
                result[name] = "exists"
            else:
                raise BrokerError(f"cannot create topic {name}: {error.str()}") from None
    wait_for_leaders(settings, [s.name for s in wanted], timeout)
    return result


def wait_for_leaders(settings: Settings, topics: list[str], timeout: float = 30.0) -> None:
    """Block until every partition of ``topics`` answers a ListOffsets request.

    Right after creation the metadata already names a leader while that
    broker has not taken leadership yet, and a fetch or watermark query fails
    with NOT_LEADER_FOR_PARTITION. Asking each partition for its end offset
    is the check that matches what readers do next.
    """
    if not topics:
        return
    admin = make_admin(settings)
    deadline = time.monotonic() + timeout
    pending = set(topics)
    last_error = ""
    while pending and time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=timeout)
        requests = {
            TopicPartition(name, p): OffsetSpec.latest()
            for name in pending
            if name in metadata.topics
            for p in metadata.topics[name].partitions
        }
        failed: set[str] = {name for name in pending if name not in metadata.topics}
        if requests:
            for tp, future in admin.list_offsets(requests, request_timeout=5).items():
                try:
                    future.result()
                except KafkaException as exc:
                    failed.add(tp.topic)
                    last_error = exc.args[0].str()
        pending = failed
        if pending:
            time.sleep(0.1)
    if pending:
        raise BrokerError(
            f"topics not ready after {timeout:.0f}s ({last_error or 'no metadata'}): {sorted(pending)}"
        )


def list_topics(settings: Settings, timeout: float = 10.0) -> dict[str, int]:
    """driftline topics that exist, with their partition counts."""
    metadata = make_admin(settings).list_topics(timeout=timeout)
    return {
        name: len(meta.partitions)
        for name, meta in sorted(metadata.topics.items())
        if name.startswith(settings.topic_prefix)
    }


def message_count(settings: Settings, topic: str, timeout: float = 10.0) -> int:
    """Messages on a topic now: the sum over partitions of high minus low watermark.

    Exact for topics written without transactions only: on a transactional
    topic (stats, alerts, stats.partial) commit markers take offsets too.
    """
    from driftline.kafka_clients import throwaway_consumer

    consumer = throwaway_consumer(settings, "count")
    try:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        return sum(
            high - low
            for low, high in (consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                              for p in partitions)
        )
    finally:
        consumer.close()
