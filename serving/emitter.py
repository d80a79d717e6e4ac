"""Every served prediction back into the loop, off the request path, bounded, never dropped silently.

Handlers put one item per request on a bounded queue and return; a task
on the server's event loop (no thread hand-off per request) takes whatever
is queued every few milliseconds, encodes the requests of one
model version into one Prediction event (their columns, scores, and one
request id per row: encoding cost is amortised over the batch) and
produces it (idempotent, acks=all). When the queue is full the handler *waits* for room
(backpressure, counted in ``driftline_serving_emit_backpressure_total``)
rather than drop the event. Delivery failures are counted and logged.

``mode="ack"`` makes each request wait until Kafka acknowledged its event:
slower, but a node killed with SIGKILL cannot have answered a request
whose prediction event is lost.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from dataclasses import dataclass

import numpy as np
from confluent_kafka import KafkaError, Message

from driftline.kafka_clients import make_producer
from driftline.producer import NODE_HEADER, ROLE_HEADER, ROLLOUT_HEADER
from driftline.settings import Settings
from schemas import Codec, encode_columns
from schemas.columns import float_buffer
from schemas.compiled import plain_columns, predictions_body
from serving import metrics

log = logging.getLogger(__name__)


@dataclass
class Emission:
    model: str
    version: str
    columns: dict[str, list]
    scores: np.ndarray
    classes: np.ndarray | None
    request_ids: list[str]
    event_time: int
    role: str = ""  # in a rollout: champion, challenger (answered) or shadow (predicted beside, not returned)
    rollout: str = ""
    done: tuple[asyncio.AbstractEventLoop, asyncio.Future] | None = None


class PredictionEmitter:
    def __init__(self, settings: Settings, *, capacity: int = 10_000, mode: str = "async",
                 interval: float = 0.002, node_id: str = "") -> None:
        if mode not in ("async", "ack"):
            raise ValueError(f"emit mode must be async or ack, got {mode!r}")
        self.mode = mode
        self.capacity = capacity
        self.interval = interval
        self.topic = settings.topic("predictions")
        # Which node answered rides in a header (the console shows each node's version), not the schema.
        self.headers: list[tuple[str, str | bytes | None]] | None = [(NODE_HEADER, node_id.encode())] \
            if node_id else None
        self.codec = Codec.default()
        self._header = self.codec.header("driftline.Prediction")
        self.producer = make_producer(settings, **{"linger.ms": 5})
        self.pending: deque[Emission] = deque()
        self.emitted = 0
        self.failed = 0
        self._room = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False

    def start(self) -> None:
        """Start pumping on the running event loop (the server's)."""
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def emit(self, item: Emission) -> bool:
        """Queue one request's prediction; in ack mode, wait for Kafka's verdict on it (True = stored)."""
        while len(self.pending) >= self.capacity:
            metrics.EMIT_BLOCKED.inc()  # backpressure: wait for room, never drop
            self._room.clear()
            await self._room.wait()
        if self.mode == "ack":
            loop = asyncio.get_running_loop()
            item.done = (loop, loop.create_future())
        self.pending.append(item)
        self._wake.set()
        if item.done is not None:
            return bool(await item.done[1])
        return True

    def _delivered(self, items: list[Emission], error: KafkaError | None, _: Message) -> None:
        rows = sum(len(item.request_ids) for item in items)
        if error is None:
            self.emitted += rows
            metrics.EMITTED.inc(rows)
        else:
            self.failed += rows
            metrics.EMIT_ERRORS.inc(rows)
            log.error("%d prediction rows (first request %s) not delivered: %s", rows, items[0].request_ids[0],
                      error.str())
        self._resolve(items, error is None)

    @staticmethod
    def _resolve(items: list[Emission], ok: bool) -> None:
        for item in items:
            if item.done is not None and not item.done[1].done():
                item.done[1].set_result(ok)

    def _encode(self, items: list[Emission]) -> bytes:
        """One Prediction event for requests of one model version with the same features.

        The common group (plain numbers and texts, no nulls) is written
        directly (:func:`~schemas.compiled.plain_columns`): encode_columns and
        fastavro cost it 20 µs per request, a tenth of the node's time.
        """
        first = items[0]
        if len(items) == 1:
            columns = first.columns
        else:
            columns = {name: [v for item in items for v in item.columns[name]] for name in first.columns}
        given = [item.classes for item in items if item.classes is not None]
        classes = [c for array in given for c in array.tolist()] if len(given) == len(items) else None
        request_ids = [r for item in items for r in item.request_ids]
        scores = float_buffer(np.concatenate([item.scores for item in items]))
        block = plain_columns(columns, len(request_ids))
        if block is not None:
            return self._header + predictions_body(first.model, first.version, items[-1].event_time,
                                                   request_ids, block, scores, classes)
        record = {"model": first.model, "model_version": first.version, "event_time": items[-1].event_time,
                  "request_ids": request_ids, "segment": None, "columns": encode_columns(columns),
                  "prediction": scores, "predicted_class": classes}
        return self.codec.encode("driftline.Prediction", record)

    def drain(self, limit: int = 1000) -> None:
        """Encode and produce what is pending: one event per model version and feature set."""
        groups: dict[tuple, list[Emission]] = {}
        for _ in range(min(limit, len(self.pending))):
            item = self.pending.popleft()
            groups.setdefault((item.model, item.version, item.role, item.rollout, tuple(item.columns)),
                              []).append(item)
        waiting = list(groups.values())
        while waiting and self._produce(waiting[0]):
            waiting.pop(0)
        for items in reversed(waiting):  # librdkafka's queue is full: back in front, retried next pass
            self.pending.extendleft(reversed(items))
        self.producer.poll(0)  # delivery callbacks run here, on the loop's thread
        metrics.EMIT_QUEUE.set(len(self.pending))
        self._room.set()

    async def _pump(self) -> None:
        while not self._closing or self.pending:
            if not self.pending:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 0.1)
                except TimeoutError:
                    self.producer.poll(0)
                    continue
            await asyncio.sleep(self.interval)  # let a few more requests join this event
            try:
                self.drain()  # never blocks: a full librdkafka queue leaves items pending for the next pass
            except Exception:  # the pump must survive anything one batch does
                log.exception("emitting prediction events failed")

    def _headers(self, item: Emission) -> list[tuple[str, str | bytes | None]] | None:
        if not item.rollout:
            return self.headers
        return [*(self.headers or []), (ROLE_HEADER, item.role.encode()), (ROLLOUT_HEADER, item.rollout.encode())]

    def _produce(self, items: list[Emission]) -> bool:
        """Produce one group's event; False when librdkafka's queue is full (never blocks the loop)."""
        try:
            value = self._encode(items)
        except Exception as exc:  # a bad group must not stop the others
            rows = sum(len(item.request_ids) for item in items)
            self.failed += rows
            metrics.EMIT_ERRORS.inc(rows)
            log.error("could not encode the prediction event of %s: %s", items[0].request_ids[0], exc)
            self._resolve(items, False)
            return True
        try:
            self.producer.produce(self.topic, value=value, key=items[0].request_ids[0].encode(),
                                  headers=self._headers(items[0]),
                                  on_delivery=functools.partial(self._delivered, items))
        except BufferError:
            metrics.EMIT_BLOCKED.inc()
            return False
        return True

    async def close(self, timeout: float = 30.0) -> None:
        """Produce what is pending and wait for Kafka to acknowledge it."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, timeout)
        while self.pending:
            self.drain()
            if self.pending:
                await asyncio.to_thread(self.producer.poll, 0.05)
        remaining = await asyncio.to_thread(self.producer.flush, timeout)
        self.producer.poll(0)
        if remaining:
            log.error("%d prediction events were not acknowledged before shutdown", remaining)
