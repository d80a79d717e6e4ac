"""Publishing control records (profiles, models, deployments, runs, alerts) with a checked delivery.

A control record is a decision others act on: a "published" run whose model
record the broker rejected would be a lie. So every such produce goes
through :class:`ControlPublisher`, which waits for the broker's delivery
report of *that* record and raises :class:`~driftline.errors.DeliveryError`
naming the topic when it failed or did not come in time. (Records produced
inside a monitor stage's transaction are checked by the transaction's
commit instead.)
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, Message

from driftline.alerts import Alert, alert_message
from driftline.errors import DeliveryError
from driftline.kafka_clients import KafkaHeaders, make_producer
from driftline.settings import Settings


class ControlPublisher:
    """One idempotent producer for control records; :meth:`publish` returns only once the broker has the record."""

    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._producer = make_producer(settings)

    def publish(self, short_topic: str, key: bytes, value: bytes | None,
                headers: KafkaHeaders | None = None) -> None:
        """Produce one record to ``settings.topic(short_topic)`` and wait for its delivery report."""
        self._send(self.settings.topic(short_topic), key, value, headers)

    def publish_alert(self, alert: Alert) -> None:
        self._send(**alert_message(alert, self.settings))

    def _send(self, topic: str, key: bytes, value: bytes | None, headers: KafkaHeaders | None) -> None:
        outcome: list[KafkaError | None] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            outcome.append(error)

        self._producer.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered)
        self._producer.flush(self.timeout)
        if not outcome:
            raise DeliveryError(f"Kafka did not acknowledge the record for {topic} within {self.timeout:g} s")
        if outcome[0] is not None:
            raise DeliveryError(f"Kafka refused the record for {topic}: {outcome[0].str()}")

    def close(self) -> None:
        self._producer.flush(self.timeout)


def publish_once(settings: Settings, short_topic: str, key: bytes, value: bytes | None,
                 **kwargs: Any) -> None:
    """A single checked control record (the CLI's one-shot commands)."""
    ControlPublisher(settings).publish(short_topic, key, value, **kwargs)
