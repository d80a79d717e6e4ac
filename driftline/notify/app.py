"""``driftline notify``: a faust-streaming agent over the alerts topic, delivering each alert to its sinks once.

The guarantee is **at-least-once processing plus idempotent delivery by
alert id**, the right one for notifications: a crash replays alerts, and a
changelogged faust table of (sink, alert id) pairs already delivered turns
the replay into a skip. The table lives in Kafka (its changelog topic), so it
survives restarts and moves with the partitions when several notifiers share
the work; the changelog write is flushed right after each delivery, so the
window in which a crash can repeat a delivery is the few milliseconds between
a sink's answer and that flush (and every delivery carries the alert id for
receivers that want to be strict).

faust is trusted to deliver records, not to deliver all of them: around a
restart it dropped fetched records without fetching them again (see
``driftline.notify.continuity``). The agent keeps, per partition, the offset
after the last alert it handled; records it was not handed are read directly
(an event beyond that offset) or faust is sought back to them (an idle agent
behind the partition's committed end). Offsets are committed only by a
graceful stop, and a restart re-checks every retained alert against the
table rather than trusting them.

A failing sink is retried with capped, jittered backoff (0.5 s doubling to
30 s; 8 attempts reach about a minute); then the alert goes to the
dead-letter topic with the sink's last error, is marked dead-lettered, and
the agent moves on. Per sink, a token bucket bounds the delivery rate (the
agent waits: nothing queues without bound). Alerts a sink's filters do not
match are skipped for that sink.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import faust
from faust.types import TP
from prometheus_client import Counter

from driftline.deadletter import DeadLetterQueue
from driftline.errors import DeliveryError
from driftline.kafka_clients import bootstrap_servers, make_producer, position_of
from driftline.notify.config import SinkConfig
from driftline.notify.continuity import Continuity
from driftline.notify.sinks import DeliveryFailed, RateLimit, backoff, deliver
from driftline.offsets import OffsetRange
from driftline.settings import Settings

log = logging.getLogger(__name__)
DELIVERIES = Counter("driftline_notify_deliveries_total", "Alert deliveries by sink and outcome",
                     ["sink", "outcome"])  # delivered | duplicate_skipped | filtered | dead_lettered
SKIPPED_BY_STREAM = Counter("driftline_notify_settled_records_total",
                            "Alerts records faust skipped or dropped, read directly from Kafka")
WATCH_INTERVAL_S = 2.0
IDLE_BEFORE_WATCH_S = 5.0
ATTEMPTS = Counter("driftline_notify_failed_attempts_total", "Failed delivery attempts by sink", ["sink"])


def build_app(settings: Settings, sinks: list[SinkConfig], group: str = "notify") -> faust.App:
    """The faust app: one agent over ``alerts``, one changelogged table of deliveries."""
    alerts_topic = settings.topic("alerts")
    (settings.state_path / "notify").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.group(group), broker=[f"kafka://{b.strip()}" for b in bootstrap_servers(settings).split(",")],
        store="memory://", web_enabled=False,
        # faust makes a data directory even for an in-memory store: under the state dir, not the working dir
        datadir=str(settings.state_path / "notify" / settings.group(group)), topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor, consumer_auto_offset_reset="earliest",
        # No periodic offset commits: the table, not the offsets, is the state. A restart starts where a
        # graceful stop committed (or at the beginning) and the agent re-checks everything before that
        # against the table (driftline.notify.continuity): a lost alert seen after a SIGKILL was first
        # blamed on faust committing too far (faust-streaming#315, #606); it was records dropped unread.
        producer_acks=-1, broker_commit_every=1 << 40, broker_commit_interval=10.0 ** 9,
        table_cleanup_interval=3600.0,
        # a crashed notifier's partitions move to a live one within ~10 s (faust's default waits a minute)
        broker_session_timeout=10.0, broker_heartbeat_interval=3.0,
        key_serializer="raw", value_serializer="raw")
    source = app.topic(alerts_topic, key_serializer="raw", value_serializer="raw")
    delivered = app.Table("delivered", default=None, key_type=str, value_type=str, partitions=settings.partitions)
    limits = {s.name: RateLimit(s.rate_per_s, s.burst) for s in sinks}
    dead_producer = make_producer(settings)
    failures: list[str] = []

    def send(topic: str, key: bytes | None, value: bytes | None, headers: Any) -> None:
        def on_delivery(error: Any, _: Any) -> None:
            if error is not None:
                failures.append(str(error))

        dead_producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)

    dead = DeadLetterQueue(settings, send)

    async def dead_letter(**record: Any) -> None:
        """Dead-letter one alert and wait for Kafka's acknowledgement (an unacknowledged dead letter raises,
        so the alert is not marked done and a restart tries again)."""
        dead.send(**record)
        left = await asyncio.to_thread(dead_producer.flush, 30)
        if left or failures:
            raise DeliveryError(f"the dead-letter topic did not take the alert: {failures[-1:] or 'timed out'}")
    sessions: dict[str, aiohttp.ClientSession] = {}

    async def session() -> aiohttp.ClientSession:
        if "http" not in sessions:
            sessions["http"] = aiohttp.ClientSession()
        return sessions["http"]

    async def hand_over(sink: SinkConfig, event: dict[str, Any], raw: bytes, offset: tuple[str, int, int]) -> str:
        key = f"{sink.name}:{event.get('id')}"
        if delivered.get(key) is not None:
            log.info("sink %s: alert %s already %s (%s[%d]@%d)", sink.name, event.get("id"), delivered[key], *offset)
            return "duplicate_skipped"
        last = ""
        for attempt in range(1, sink.attempts + 1):
            await limits[sink.name].acquire()
            try:
                await deliver(sink, event, raw, await session())
            except DeliveryFailed as exc:
                last = str(exc)
                ATTEMPTS.labels(sink.name).inc()
                if attempt < sink.attempts:
                    log.warning("sink %s, alert %s: attempt %d failed (%s)", sink.name, event.get("id"), attempt, last)
                    await _sleep(backoff(attempt))
                continue
            delivered[key] = "delivered"
            await app.producer.flush()  # the changelog holds the delivery before anything else happens
            log.info("sink %s: alert %s delivered (%s[%d]@%d)", sink.name, event.get("id"), *offset)
            return "delivered"
        topic, partition, position = offset
        await dead_letter(value=raw, key=str(event.get("model", "")).encode(), source_topic=topic, partition=partition,
                          offset=position, error=f"sink {sink.name} failed {sink.attempts} times: {last}",
                          stage="notify")
        delivered[key] = "dead_lettered"
        await app.producer.flush()
        log.error("sink %s: alert %s dead-lettered after %d attempts: %s", sink.name, event.get("id"),
                  sink.attempts, last)
        return "dead_lettered"

    async def handle(raw: bytes, key: bytes | None, where: tuple[str, int, int]) -> None:
        """One record of ``alerts``: each matching sink gets it once; a record that is not an alert is
        dead-lettered, never dropped."""
        try:
            alert = json.loads(raw)
            if not isinstance(alert, dict) or "id" not in alert:
                raise ValueError("not a CloudEvent with an id")
        except ValueError as exc:
            topic, partition, position = where
            await dead_letter(value=raw, key=key, source_topic=topic, partition=partition, offset=position,
                              error=exc, stage="notify")
            return
        for sink in sinks:
            if not sink.wants(str(alert.get("model") or alert.get("subject", "")), str(alert.get("type", "")),
                              str(alert.get("severity", "info"))):
                DELIVERIES.labels(sink.name, "filtered").inc()
                continue
            DELIVERIES.labels(sink.name, await hand_over(sink, alert, raw, where)).inc()

    continuity = Continuity(settings, alerts_topic)
    one_at_a_time = asyncio.Lock()  # the agent and the watch never handle records concurrently
    last_event = [time.monotonic()]

    async def settle(owed: OffsetRange | None) -> None:
        """Handle the records of ``owed`` read directly from Kafka: those faust skipped or dropped."""
        if owed is None:
            return
        records, whole = await asyncio.to_thread(continuity.read, owed)
        SKIPPED_BY_STREAM.inc(len(records))
        log.warning("alerts[%d] offsets %d-%d were not handed to the agent; read %d record(s) directly",
                    owed.partition, owed.start_offset, owed.end_offset - 1, len(records))
        for record in records:
            topic, partition, position = position_of(record)
            await handle(record.value() or b"", record.key(), (topic, partition, position))
            continuity.handled(partition, position)
        if whole:
            continuity.passed(owed)

    @app.agent(source)
    async def notify(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            async with one_at_a_time:
                last_event[0] = time.monotonic()
                await settle(await asyncio.to_thread(continuity.owed, message.partition, message.offset))
                await handle(event.value, event.key, (message.topic, message.partition, message.offset))
                continuity.handled(message.partition, message.offset)
                last_event[0] = time.monotonic()

    @app.timer(interval=WATCH_INTERVAL_S)
    async def watch() -> None:
        """An idle agent behind its partitions' committed ends was dropped records: faust is sought back
        to the first of them, so the agent handles them (a table is written only inside stream iteration,
        which also keeps each delivery in the partition of its alert)."""
        recovered = app.tables.recovery.completed.is_set() and not app.rebalancing  # type: ignore[attr-defined]
        if not recovered or one_at_a_time.locked() or time.monotonic() - last_event[0] < IDLE_BEFORE_WATCH_S:
            return
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == alerts_topic}
        continuity.keep_only(owned)
        if not owned:
            return
        ends = await asyncio.to_thread(continuity.stable_ends, sorted(owned))
        for partition, end in ends.items():
            owed = await asyncio.to_thread(continuity.owed, partition, end)
            if owed is None:
                continue
            records, whole = await asyncio.to_thread(continuity.read, owed)
            if records:
                first = position_of(records[0])[2]
                SKIPPED_BY_STREAM.inc(len(records))
                log.warning("alerts[%d] offsets %d-%d (%d record(s)) were dropped before the agent; seeking back "
                            "to %d", partition, owed.start_offset, owed.end_offset - 1, len(records), first)
                await app.consumer.seek(TP(alerts_topic, partition), first)
                last_event[0] = time.monotonic()
            elif whole:
                continuity.passed(owed)  # transaction markers only

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_sessions(_: Any, **__: Any) -> None:
        for client in sessions.values():
            await client.close()

    return app


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
