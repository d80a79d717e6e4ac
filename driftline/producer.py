"""The application SDK: send feature, prediction and label events to driftline.

>>> from driftline import Producer                                # doctest: +SKIP
>>> with Producer(model="churn") as p:                            # doctest: +SKIP
...     p.prediction(features={"age": 42, "plan": "pro"}, prediction=0.83, request_id="r1")
...     p.label(request_id="r1", label=1)

Delivery is durable (idempotent producer, ``acks=all``) and loud: a delivery
failure is raised from ``flush()``/``close()`` as a DeliveryError, never
swallowed. High volume goes through the batch methods, which put many rows in
one event (like an Open Inference Protocol request) and accept numpy columns.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, Message

from driftline.contract import EventCodec, codec_for
from driftline.errors import DeliveryError
from driftline.kafka_clients import make_producer
from driftline.settings import Settings, load_settings
from schemas import EncodeError, FeatureFrame, FeatureSpec, encode_columns, encode_rows
from schemas.columns import float_buffer
from schemas.compiled import RowWriter, avro_string, features_body, prediction_body

Rows = Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any] | np.ndarray]

# Kafka header naming the serving node that answered (prediction events a node emits; the console reads it)
NODE_HEADER = "driftline.node"
# A rollout's prediction events say who made them: role "champion" or "challenger" (the version that
# answered) or "shadow" (predicted beside it, never returned: the monitor skips these), and the rollout id.
ROLE_HEADER = "driftline.role"
ROLLOUT_HEADER = "driftline.rollout"
SHADOW_ROLE = b"shadow"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_epoch_ms(value: datetime | int | None) -> int:
    """Event time as epoch milliseconds: ``None`` is now, a datetime is converted, an int is kept."""
    if value is None:
        return now_ms()
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    raise EncodeError(f"event_time must be a datetime or epoch milliseconds, got {value!r}")


class RequestIds:
    """Unique request ids at the cost of a counter: 20 random hex digits per producer, then a count.

    As long as ``uuid4().hex`` (32 hex digits) and as unique in practice (80
    random bits per producer), at a tenth of its cost on the single-row path.
    A forked child must not repeat its parent's ids: it draws a new prefix
    when it starts (``os.register_at_fork``), not by asking for its pid on
    every call — ``getpid`` is a system call, 7 % of a serving node's time.
    """

    def __init__(self) -> None:
        self._reseed()
        _LIVE_IDS.add(self)

    def _reseed(self) -> None:
        self._prefix = os.urandom(10).hex()
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):012x}"


_LIVE_IDS: weakref.WeakSet[RequestIds] = weakref.WeakSet()  # reseeded in a forked child, never kept alive


def _reseed_after_fork() -> None:
    for ids in list(_LIVE_IDS):
        ids._reseed()


os.register_at_fork(after_in_child=_reseed_after_fork)


class Producer:
    """Produces one model's events to the features, predictions and labels topics.

    Parameters
    ----------
    model
        The model these events belong to; monitors and trainers group by it.
    settings
        Kafka and topic settings; read from the environment when omitted.
    spec
        The model's feature spec. With it, each feature goes in the block its
        declared type says and mismatching values are kept for skew checks.
    validate
        Check every event against ``spec`` before sending and raise
        :class:`~schemas.SpecViolation` instead of producing a bad event.
    model_version
        Default version stamped on predictions.
    """

    def __init__(
        self,
        model: str,
        *,
        settings: Settings | None = None,
        spec: FeatureSpec | None = None,
        validate: bool = False,
        model_version: str = "",
        codec: EventCodec | None = None,
        **kafka_config: Any,
    ) -> None:
        if not model:
            raise EncodeError("Producer needs a model name")
        if validate and spec is None:
            raise EncodeError("validate=True needs the model's feature spec (spec=...)")
        self.model = model
        self.settings = settings or load_settings()
        self.spec = spec
        self.validate = validate
        self.model_version = model_version
        self.codec = codec or codec_for(self.settings)
        self._topics = {kind: self.settings.topic(kind) for kind in ("features", "predictions", "labels")}
        # Only failed deliveries are reported back (``delivery.report.only.error``): a callback per
        # acknowledged event would cost more than encoding it. ``delivered`` counts from the queue.
        self._producer = make_producer(self.settings, **{"delivery.report.only.error": True, **kafka_config})
        self._errors: list[str] = []
        self._sent = 0
        self._failed = 0
        self._closed = False
        self._request_ids = RequestIds()
        # the one-row path: rows of a known plain shape are written from prepared bytes
        self._rows = RowWriter(spec)
        self._heads: dict[tuple[str, str], bytes] = {}

    # ----------------------------------------------------------- plumbing
    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:  # only failures are reported (delivery.report.only.error)
            self._failed += 1
            self._errors.append(f"{message.topic()}: {error.str()}")

    def _send(self, kind: str, key: str, value: bytes) -> None:
        if self._closed:
            raise DeliveryError("this Producer is closed")
        while True:
            try:
                self._producer.produce(self._topics[kind], value, key.encode(), on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: let librdkafka drain it, then retry
                self._producer.poll(0.1)
        self._sent += 1
        self._producer.poll(0)
        if self._errors:
            self._raise_errors()

    def _head(self, kind: str, model_version: str) -> bytes:
        """The fixed start of this producer's one-row events: codec header, model (and version)."""
        key = (kind, model_version)
        head = self._heads.get(key)
        if head is None:
            name = "driftline.Prediction" if kind == "predictions" else "driftline.Features"
            head = self.codec.header(name) + avro_string(self.model)
            if kind == "predictions":
                head += avro_string(model_version)
            if len(self._heads) > 64:
                self._heads.clear()
            self._heads[key] = head
        return head

    def _raise_errors(self) -> None:
        errors, self._errors = self._errors, []
        raise DeliveryError(
            f"{len(errors)} event(s) were not delivered; first: {errors[0]}"
        )

    def _columns(self, rows: Rows) -> tuple[dict[str, Any], int]:
        if isinstance(rows, Mapping):
            columns = encode_columns(rows, self.spec)
            count = len(next(iter(rows.values()))) if rows else 0
        else:
            columns = encode_rows(rows, self.spec)
            count = len(rows)
        if self.validate:
            assert self.spec is not None
            self.spec.validate(FeatureFrame.from_record(columns, count))
        return columns, count

    def _ids(self, given: Sequence[str] | None, count: int) -> list[str]:
        if given is None:
            return [self._request_ids() for _ in range(count)]
        ids = [str(r) for r in given]
        if len(ids) != count:
            raise EncodeError(f"{len(ids)} request ids for {count} rows")
        return ids

    # ------------------------------------------------------------ events
    def prediction(
        self,
        features: Mapping[str, Any],
        prediction: float | int | str | bool,
        request_id: str | None = None,
        *,
        score: float | None = None,
        model_version: str | None = None,
        segment: str | None = None,
        event_time: datetime | int | None = None,
    ) -> str:
        """Record one served prediction; returns its request id (to join the label later).

        ``prediction`` is a number (a score or a regression value) or a class
        label (str/bool), in which case ``score`` may carry its probability.
        """
        kind = type(prediction)
        if (kind is float or kind is int) and score is None and not self.validate:
            columns = self._rows.columns(features) if isinstance(features, dict) else None
            if columns is not None:  # a plain row of a known shape: written directly
                rid = self._request_ids() if request_id is None else str(request_id)
                version = self.model_version if model_version is None else model_version
                try:
                    value = prediction_body(self._head("predictions", version), to_epoch_ms(event_time),
                                            rid, segment, columns, prediction)  # type: ignore[arg-type]
                except OverflowError:  # an int beyond float64: the general path says so
                    value = None
                if value is not None:
                    self._send("predictions", rid, value)
                    return rid
        return self.predictions(
            [features], [prediction],
            None if request_id is None else [request_id],
            scores=None if score is None else [score],
            model_version=model_version, segment=segment, event_time=event_time,
        )[0]

    def predictions(
        self,
        rows: Rows,
        predictions: Sequence[Any] | np.ndarray,
        request_ids: Sequence[str] | None = None,
        *,
        scores: Sequence[float] | np.ndarray | None = None,
        model_version: str | None = None,
        segment: str | None = None,
        event_time: datetime | int | None = None,
    ) -> list[str]:
        """Record a batch of predictions as one event (rows as dicts, or columns)."""
        columns, count = self._columns(rows)
        if len(predictions) != count:
            raise EncodeError(f"{len(predictions)} predictions for {count} rows")
        ids = self._ids(request_ids, count)
        predicted_class = None
        if isinstance(predictions, np.ndarray) and predictions.dtype.kind in "fiu":
            values = predictions
        elif all(isinstance(p, (int, float, np.number)) and not isinstance(p, bool) for p in predictions):
            values = np.asarray(predictions, dtype=np.float64)
        else:
            predicted_class = [("true" if p else "false") if isinstance(p, bool) else str(p)
                               for p in predictions]
            values = np.full(count, np.nan) if scores is None else np.asarray(scores, dtype=float)
        record = {
            "model": self.model,
            "model_version": self.model_version if model_version is None else model_version,
            "event_time": to_epoch_ms(event_time),
            "request_ids": ids,
            "segment": segment,
            "columns": columns,
            "prediction": float_buffer(values),
            "predicted_class": predicted_class,
        }
        self._send("predictions", ids[0], self.codec.encode("driftline.Prediction", record))
        return ids

    def features(
        self,
        features: Mapping[str, Any],
        request_id: str | None = None,
        *,
        segment: str | None = None,
        event_time: datetime | int | None = None,
    ) -> str:
        """Record one row of features without a prediction (reference or training data)."""
        if not self.validate and isinstance(features, dict):
            columns = self._rows.columns(features)
            if columns is not None:
                rid = self._request_ids() if request_id is None else str(request_id)
                self._send("features", rid, features_body(
                    self._head("features", ""), to_epoch_ms(event_time), rid, segment, columns))
                return rid
        return self.features_batch(
            [features], None if request_id is None else [request_id],
            segment=segment, event_time=event_time,
        )[0]

    def features_batch(
        self,
        rows: Rows,
        request_ids: Sequence[str] | None = None,
        *,
        segment: str | None = None,
        event_time: datetime | int | None = None,
    ) -> list[str]:
        """Record many rows of features as one event (rows as dicts, or columns)."""
        columns, count = self._columns(rows)
        ids = self._ids(request_ids, count)
        record = {
            "model": self.model,
            "event_time": to_epoch_ms(event_time),
            "request_ids": ids,
            "segment": segment,
            "columns": columns,
        }
        self._send("features", ids[0], self.codec.encode("driftline.Features", record))
        return ids

    def label(self, request_id: str, label: Any, *, event_time: datetime | int | None = None) -> None:
        """Record the ground truth of an earlier prediction."""
        self.labels([request_id], [label], event_time=event_time)

    def labels(
        self,
        request_ids: Sequence[str],
        labels: Sequence[Any],
        *,
        event_time: datetime | int | None = None,
    ) -> None:
        """Record many labels in one event."""
        if len(request_ids) != len(labels) or not labels:
            raise EncodeError(f"{len(request_ids)} request ids for {len(labels)} labels")
        values = [v.item() if isinstance(v, np.generic) else v for v in labels]
        record = {
            "model": self.model,
            "event_time": to_epoch_ms(event_time),
            "request_ids": [str(r) for r in request_ids],
            "labels": values,
        }
        self._send("labels", str(request_ids[0]), self.codec.encode("driftline.Label", record))

    # --------------------------------------------------------- lifecycle
    @property
    def delivered(self) -> int:
        """Events the broker has acknowledged so far (sent, less those queued or in flight, less failures)."""
        return self._sent - len(self._producer) - self._failed

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every event is acknowledged; raise DeliveryError for any that failed."""
        remaining = self._producer.flush(timeout)
        if self._errors:
            self._raise_errors()
        if remaining:
            raise DeliveryError(f"{remaining} event(s) still unacknowledged after {timeout:.0f}s")

    def close(self, timeout: float = 60.0) -> None:
        if self._closed:
            return
        try:
            self.flush(timeout)
        finally:
            self._closed = True

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # keep the original error; still try to deliver what was queued
            with contextlib.suppress(DeliveryError):
                self.close()
