"""Alerts: CloudEvents 1.0 in structured JSON mode, and a subscriber for applications.

Alerts are driftline's integration surface, so they are plain JSON any
consumer can read (kcat included) and match ``schemas/alert.schema.json``.
Their ids are hashes of what the alert is about (model, window, check,
features), so re-processing a window re-emits the *same* alert and consumers
can de-duplicate by id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from driftline.errors import ConfigError
from driftline.kafka_clients import KafkaHeaders, make_consumer
from driftline.settings import Settings, load_settings

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
SEVERITIES = ("info", "warning", "critical")


class AlertFormatError(ValueError):
    """A record on the alerts topic that is not a driftline CloudEvent."""


def alert_id(*identity: Any) -> str:
    """Deterministic id from what an alert is about (order matters)."""
    text = "\x1f".join(str(part) for part in identity)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Alert:
    """One alert. ``data`` holds the details (features, statistics, window)."""

    id: str
    type: str
    source: str
    model: str
    severity: str
    time: str
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        type: str,
        model: str,
        *,
        severity: str,
        data: dict[str, Any],
        identity: Sequence[Any],
        source: str = "/driftline/monitor",
        time: datetime | None = None,
    ) -> Alert:
        if severity not in SEVERITIES:
            raise ValueError(f"severity {severity!r} is not one of {SEVERITIES}")
        when = (time or datetime.now(UTC)).astimezone(UTC).isoformat().replace("+00:00", "Z")
        return cls(alert_id(type, model, *identity), type, source, model, severity, when,
                   {"model": model, **data})

    @property
    def message(self) -> str:
        return str(self.data.get("message", ""))

    @property
    def features(self) -> list[str]:
        return [f["name"] for f in self.data.get("features", []) if "name" in f]

    def to_cloudevent(self) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
            "subject": self.model,
            "datacontenttype": "application/json",
            "model": self.model,
            "severity": self.severity,
            "data": self.data,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_cloudevent(), separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Alert:
        try:
            event = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AlertFormatError(f"alert is not JSON: {exc}") from None
        if not isinstance(event, dict) or event.get("specversion") != "1.0":
            raise AlertFormatError("alert is not a CloudEvents 1.0 object")
        try:
            return cls(
                str(event["id"]), str(event["type"]), str(event["source"]),
                str(event.get("model") or event.get("subject", "")),
                str(event.get("severity", "info")), str(event["time"]),
                dict(event.get("data") or {}),
            )
        except KeyError as exc:
            raise AlertFormatError(f"alert lacks the CloudEvents attribute {exc.args[0]!r}") from None

    def kafka_headers(self) -> KafkaHeaders:
        return [("content-type", CONTENT_TYPE.encode())]

    def summary(self) -> str:
        """One line for a terminal: time, severity, type, model, message."""
        return f"{self.time}  {self.severity.upper():8} {self.type:<32} {self.model:<16} {self.message}"


def alert_message(alert: Alert, settings: Settings) -> dict[str, Any]:
    """The one shape of an alert on Kafka: the ``produce`` arguments (topic, key = model, value, headers).

    Used as ``producer.produce(**alert_message(alert, settings))`` inside a
    monitor stage's transaction, and by :class:`driftline.control.ControlPublisher`.
    """
    return {"topic": settings.topic("alerts"), "key": alert.model.encode(), "value": alert.to_json(),
            "headers": alert.kafka_headers()}


class AlertSubscriber:
    """Iterate over alerts, filtered by model, type and minimum severity.

    With a ``group_id`` it is a consumer-group member: alerts are shared among
    the group's members and an alert's offset is committed once the caller
    asks for the next one (at-least-once: an alert being handled when the
    process dies is delivered again). Without one it reads every partition on
    its own and commits nothing (``driftline alerts tail``).

    >>> for alert in AlertSubscriber(models=["churn"], group_id="pager"):   # doctest: +SKIP
    ...     page(alert.summary())
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        group_id: str | None = None,
        models: Iterable[str] | None = None,
        types: Iterable[str] | None = None,
        min_severity: str | None = None,
        from_beginning: bool = True,
        poll_timeout: float = 1.0,
    ) -> None:
        self.settings = settings or load_settings()
        if min_severity is not None and min_severity not in SEVERITIES:
            raise ConfigError(f"min_severity {min_severity!r} is not one of {', '.join(SEVERITIES)}")
        self.models = frozenset(models) if models else None
        self.types = frozenset(types) if types else None
        self._min_rank = SEVERITIES.index(min_severity) if min_severity else 0
        self.topic = self.settings.topic("alerts")
        self.group_id = group_id
        self.poll_timeout = poll_timeout
        self.invalid = 0
        self._pending_commit: Any = None
        reset = "earliest" if from_beginning else "latest"
        self._consumer: Consumer = make_consumer(
            self.settings, group_id or f"driftline-tail-{uuid.uuid4().hex[:8]}",
            **{"auto.offset.reset": reset},
        )
        if group_id:
            self._consumer.subscribe([self.topic])
        else:
            metadata = self._consumer.list_topics(self.topic, timeout=10)
            partitions = metadata.topics[self.topic].partitions
            start = OFFSET_BEGINNING if from_beginning else OFFSET_END
            self._consumer.assign([TopicPartition(self.topic, p, start) for p in partitions])

    def matches(self, alert: Alert) -> bool:
        if self.models is not None and alert.model not in self.models:
            return False
        if self.types is not None and alert.type not in self.types:
            return False
        rank = SEVERITIES.index(alert.severity) if alert.severity in SEVERITIES else 0
        return rank >= self._min_rank

    def _commit_pending(self) -> None:
        if self.group_id and self._pending_commit is not None:
            self._consumer.commit(message=self._pending_commit, asynchronous=False)
            self._pending_commit = None

    def poll(self, timeout: float | None = None) -> Alert | None:
        """The next matching alert, or None when none arrives within ``timeout``."""
        self._commit_pending()
        message = self._consumer.poll(self.poll_timeout if timeout is None else timeout)
        while message is not None:
            if message.error():
                raise KafkaException(message.error())
            self._pending_commit = message
            try:
                alert = Alert.from_json(message.value() or b"")
            except AlertFormatError as exc:
                self.invalid += 1
                log.warning("skipping a record on %s [%d] @%d: %s", message.topic(),
                            message.partition(), message.offset(), exc)
            else:
                if self.matches(alert):
                    return alert
            self._commit_pending()
            message = self._consumer.poll(0)
        return None

    def caught_up(self) -> bool:
        """True when every assigned partition has been read to its end."""
        assignment = self._consumer.assignment()
        if not assignment:
            return False
        positions = self._consumer.position(assignment)
        for tp in positions:
            _, high = self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            offset = tp.offset if tp.offset >= 0 else 0
            if offset < high:
                return False
        return True

    def __iter__(self) -> Iterator[Alert]:
        while True:
            alert = self.poll()
            if alert is not None:
                yield alert

    def close(self) -> None:
        try:
            self._commit_pending()
        finally:
            self._consumer.close()

    def __enter__(self) -> AlertSubscriber:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
