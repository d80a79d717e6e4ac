"""Every served prediction back into the loop, off the request path, bounded, never dropped silently.

Handlers put one item per request on a bounded queue and return; a
background thread encodes items into Prediction events (the request's
columns, scores, model version and request ids) and produces them
(idempotent, acks=all). When the queue is full the handler *waits* for room
(backpressure, counted in ``driftline_serving_emit_backpressure_total``)
rather than drop the event. Delivery failures are counted and logged.

``mode="ack"`` makes each request wait until Kafka acknowledged its event:
slower, but a node killed with SIGKILL cannot have answered a request
whose prediction event is lost.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, Message

from driftline.kafka_clients import make_producer
from driftline.settings import Settings
from schemas import Codec, encode_columns
from schemas.columns import float_buffer
from serving import metrics

log = logging.getLogger(__name__)


@dataclass
class Emission:
    model: str
    version: str
    columns: dict[str, Any]
    scores: np.ndarray
    classes: np.ndarray | None
    request_ids: list[str]
    event_time: int
    done: tuple[asyncio.AbstractEventLoop, asyncio.Future] | None = None


class PredictionEmitter:
    def __init__(self, settings: Settings, *, capacity: int = 10_000, mode: str = "async") -> None:
        if mode not in ("async", "ack"):
            raise ValueError(f"emit mode must be async or ack, got {mode!r}")
        self.mode = mode
        self.topic = settings.topic("predictions")
        self.codec = Codec.default()
        self.producer = make_producer(settings, **{"linger.ms": 2})
        self.queue: queue.Queue[Emission | None] = queue.Queue(maxsize=capacity)
        self.emitted = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="prediction-emitter", daemon=True)
        self._thread.start()

    async def emit(self, item: Emission) -> None:
        if self.mode == "ack":
            loop = asyncio.get_running_loop()
            item.done = (loop, loop.create_future())
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            metrics.EMIT_BLOCKED.inc()
            await asyncio.to_thread(self.queue.put, item)  # backpressure: wait for room, never drop
        metrics.EMIT_QUEUE.set(self.queue.qsize())
        if item.done is not None:
            await item.done[1]

    def _delivered(self, item: Emission, error: KafkaError | None, _: Message) -> None:
        if error is None:
            self.emitted += 1
            metrics.EMITTED.inc()
        else:
            self.failed += 1
            metrics.EMIT_ERRORS.inc()
            log.error("prediction event for %s not delivered: %s", item.request_ids[0], error.str())
        if item.done is not None:
            loop, future = item.done
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(error is None))

    def _encode(self, item: Emission) -> bytes:
        record = {"model": item.model, "model_version": item.version, "event_time": item.event_time,
                  "request_ids": item.request_ids, "segment": None, "columns": encode_columns(item.columns),
                  "prediction": float_buffer(item.scores),
                  "predicted_class": item.classes.tolist() if item.classes is not None else None}
        return self.codec.encode("driftline.Prediction", record)

    def _run(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=0.05)
            except queue.Empty:
                self.producer.poll(0)
                continue
            if item is None:
                break
            try:
                value = self._encode(item)
            except Exception as exc:  # one bad item must not stop the others
                self.failed += 1
                metrics.EMIT_ERRORS.inc()
                log.error("could not encode the prediction event of %s: %s", item.request_ids[0], exc)
                if item.done is not None:
                    loop, future = item.done
                    loop.call_soon_threadsafe(lambda f=future: f.done() or f.set_result(False))
                continue
            while True:
                try:
                    self.producer.produce(self.topic, value=value, key=item.request_ids[0].encode(),
                                          on_delivery=lambda e, m, it=item: self._delivered(it, e, m))
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.producer.poll(0)
            metrics.EMIT_QUEUE.set(self.queue.qsize())

    def close(self, timeout: float = 30.0) -> None:
        """Produce what is queued and wait for Kafka to acknowledge it."""
        deadline = time.monotonic() + timeout
        self.queue.put(None)
        self._thread.join(timeout)
        remaining = self.producer.flush(max(0.0, deadline - time.monotonic()))
        if remaining:
            log.error("%d prediction events were not acknowledged before shutdown", remaining)
