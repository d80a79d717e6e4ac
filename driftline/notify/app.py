"""``driftline notify``: a faust-streaming agent over the alerts topic, delivering each alert to its sinks once.

The guarantee is **at-least-once processing plus idempotent delivery by
alert id**, the right one for notifications: a crash replays alerts, and a
changelogged faust table of (sink, alert id) pairs already delivered turns
the replay into a skip. Offsets are committed only by a graceful stop: the
table, not the offsets, is the state (see ``build_app``). The table lives in Kafka (its changelog topic), so it survives
restarts and moves with the partitions when several notifiers share the
work; the changelog write is flushed right after each delivery, so the
window in which a crash can repeat a delivery is the few milliseconds
between a sink's answer and that flush (and every delivery carries the
alert id for receivers that want to be strict).

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
from typing import Any

import aiohttp
import faust
from prometheus_client import Counter

from driftline.deadletter import DeadLetterQueue
from driftline.errors import DeliveryError
from driftline.kafka_clients import bootstrap_servers, make_producer
from driftline.notify.config import SinkConfig
from driftline.notify.sinks import DeliveryFailed, RateLimit, backoff, deliver
from driftline.settings import Settings

log = logging.getLogger(__name__)
DELIVERIES = Counter("driftline_notify_deliveries_total", "Alert deliveries by sink and outcome",
                     ["sink", "outcome"])  # delivered | duplicate_skipped | filtered | dead_lettered
ATTEMPTS = Counter("driftline_notify_failed_attempts_total", "Failed delivery attempts by sink", ["sink"])


def build_app(settings: Settings, sinks: list[SinkConfig], group: str = "notify") -> faust.App:
    """The faust app: one agent over ``alerts``, one changelogged table of deliveries."""
    alerts_topic = settings.topic("alerts")
    app = faust.App(
        settings.group(group), broker=[f"kafka://{b.strip()}" for b in bootstrap_servers(settings).split(",")],
        store="memory://", web_enabled=False, topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor, consumer_auto_offset_reset="earliest",
        # No periodic offset commits: faust has committed past an event still being processed when the
        # worker was killed (faust-streaming#315, #606; seen here as a lost alert after SIGKILL). Without
        # them a restart replays the retained alerts and the delivery table skips what was delivered: the
        # table, not the offsets, is the state (a graceful stop still commits what it finished).
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

    @app.agent(source)
    async def notify(stream: Any) -> None:
        async for event in stream.events():
            raw = event.value
            try:
                alert = json.loads(raw)
                if not isinstance(alert, dict) or "id" not in alert:
                    raise ValueError("not a CloudEvent with an id")
            except ValueError as exc:  # a record that is not an alert: dead-lettered, never dropped
                await dead_letter(value=raw, key=event.key, source_topic=event.message.topic,
                                  partition=event.message.partition, offset=event.message.offset, error=exc,
                                  stage="notify")
                continue
            where = (event.message.topic, event.message.partition, event.message.offset)
            for sink in sinks:
                if not sink.wants(str(alert.get("model") or alert.get("subject", "")), str(alert.get("type", "")),
                                  str(alert.get("severity", "info"))):
                    DELIVERIES.labels(sink.name, "filtered").inc()
                    continue
                DELIVERIES.labels(sink.name, await hand_over(sink, alert, raw, where)).inc()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_sessions(_: Any, **__: Any) -> None:
        for client in sessions.values():
            await client.close()

    return app


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
