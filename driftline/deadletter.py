"""The dead-letter helper every consumer uses.

An event that cannot be decoded or validated is never dropped and never
crashes a worker: it is copied to the ``deadletter`` topic with its original
bytes and key, its original headers, and headers saying where it came from
and why it was refused. Works with any producer through a ``send`` callable
(a transactional stage's producer, the trainer's plain one).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import Message, Producer

from driftline.kafka_clients import KafkaHeaders, byte_headers, position_of
from driftline.settings import Settings

Headers = KafkaHeaders
SendFn = Callable[[str, bytes | None, bytes | None, Headers], None]

REASON = "driftline.dlq.reason"
ERROR_TYPE = "driftline.dlq.error_type"
SOURCE_TOPIC = "driftline.dlq.source_topic"
SOURCE_PARTITION = "driftline.dlq.source_partition"
SOURCE_OFFSET = "driftline.dlq.source_offset"
STAGE = "driftline.dlq.stage"
TIME = "driftline.dlq.time_ms"
MAX_REASON = 2000


@dataclass(frozen=True)
class DeadLetter:
    """A refused event as read back from the dead-letter topic."""

    value: bytes | None
    key: bytes | None
    reason: str
    error_type: str
    source_topic: str
    source_partition: int
    source_offset: int
    stage: str

    @classmethod
    def from_message(
        cls, value: bytes | None, key: bytes | None, headers: Sequence[tuple[str, bytes]] | None
    ) -> DeadLetter:
        h = {k: v.decode(errors="replace") for k, v in (headers or []) if k.startswith("driftline.dlq.")}
        return cls(
            value, key, h.get(REASON, ""), h.get(ERROR_TYPE, ""), h.get(SOURCE_TOPIC, ""),
            int(h.get(SOURCE_PARTITION, "-1")), int(h.get(SOURCE_OFFSET, "-1")), h.get(STAGE, ""),
        )


class DeadLetterQueue:
    """Sends refused events to ``<prefix>deadletter``.

    ``send(topic, key, value, headers)`` is how bytes reach Kafka; use
    :meth:`for_producer` with a confluent-kafka producer.
    """

    def __init__(self, settings: Settings, send: SendFn) -> None:
        self.topic = settings.topic("deadletter")
        self._send = send
        self.count = 0

    @classmethod
    def for_producer(cls, settings: Settings, producer: Producer,
                     before_send: Callable[[], None] | None = None) -> DeadLetterQueue:
        """``before_send``: called before each record (a transactional stage opens its batch's transaction)."""
        def send(topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
            if before_send is not None:
                before_send()
            producer.produce(topic, value=value, key=key, headers=headers)

        return cls(settings, send)

    def send_message(self, message: Message, error: BaseException | str, stage: str) -> None:
        """Dead-letter one consumed record, its key, value and headers intact."""
        topic, partition, offset = position_of(message)
        self.send(value=message.value(), key=message.key(), source_topic=topic, partition=partition, offset=offset,
                  error=error, stage=stage, original_headers=byte_headers(message))

    def send(
        self,
        *,
        value: bytes | None,
        key: bytes | None,
        source_topic: str,
        partition: int,
        offset: int,
        error: BaseException | str,
        stage: str,
        original_headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        reason = str(error)[:MAX_REASON]
        error_type = type(error).__name__ if isinstance(error, BaseException) else "Invalid"
        headers: Headers = [
            (k, v if isinstance(v, bytes) else str(v).encode())
            for k, v in (original_headers or [])
            if not k.startswith("driftline.dlq.")
        ]
        headers += [
            (REASON, reason.encode()),
            (ERROR_TYPE, error_type.encode()),
            (SOURCE_TOPIC, source_topic.encode()),
            (SOURCE_PARTITION, str(partition).encode()),
            (SOURCE_OFFSET, str(offset).encode()),
            (STAGE, stage.encode()),
            (TIME, str(time.time_ns() // 1_000_000).encode()),
        ]
        self._send(self.topic, key, value, headers)
        self.count += 1
