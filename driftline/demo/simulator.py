"""The demo's application: asks the serving nodes for predictions over HTTP, sends labels later.

Its stream is river's Agrawal generator (loan applications). At the
announced time the world changes twice at once: the concept (the label
function switches from ``function`` to ``drift_function``: a concept
drift) and the inputs (salaries are reported ``salary_scale`` times higher:
a covariate shift). Labels follow each answered request after
``label_delay`` seconds, joined by the request id the node returned.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from driftline.client import Answer, LoadResult, generate_load, infer_body
from driftline.producer import Producer
from driftline.settings import Settings
from driftline.synthetic import agrawal

BLOCK = 2000


@dataclass
class Traffic:
    rate: float = 100.0  # requests per second, one row each
    label_delay: float = 2.0
    function: int = 0
    drift_function: int = 2
    salary_scale: float = 1.3
    seed: int = 2
    # keep-alive connections per node: the cap on requests in flight. A node starved of CPU for a moment
    # (a training run, the broker's JIT warming up, a collection) answers late; 64 absorb a 0.8 s stall
    # at 75 requests/s per node, and a busy node's requests go to the other one first.
    connections: int = 64


@dataclass
class Record:
    answer: Answer
    truth: bool
    drifted: bool


@dataclass
class Application:
    settings: Settings
    urls: list[str]
    traffic: Traffic
    model: str = "loans"
    drift_at: float | None = None  # wall time of the change (set by the scenario)
    records: list[Record] = field(default_factory=list)
    labels_sent: int = 0
    load: LoadResult = field(default_factory=LoadResult)  # filled in while the traffic runs
    # (node, version) -> first finish as the serving version (a canary's answers are not a swap)
    first_answers: dict[tuple[str, str], float] = field(default_factory=dict)
    _labels: deque = field(default_factory=deque)
    _blocks: dict = field(default_factory=dict)
    _truths: dict = field(default_factory=dict)  # request index -> (truth, drifted) while in flight

    def _rows(self, drifted: bool, index: int) -> tuple[dict[str, np.ndarray], bool]:
        key = (drifted, index // BLOCK)
        if key not in self._blocks:
            if len(self._blocks) > 4:
                self._blocks.clear()
            function = self.traffic.drift_function if drifted else self.traffic.function
            self._blocks[key] = agrawal(BLOCK, function=function, seed=self.traffic.seed * 1000 + index // BLOCK,
                                        salary_scale=self.traffic.salary_scale if drifted else 1.0)
        columns, labels = self._blocks[key]
        i = index % BLOCK
        return {k: v[i:i + 1] for k, v in columns.items()}, bool(labels[i])

    def _body(self, i: int) -> dict:
        drifted = self.drift_at is not None and time.time() >= self.drift_at
        columns, truth = self._rows(drifted, i)
        self._truths[i] = (truth, drifted)
        return infer_body(columns, request_id=uuid.uuid4().hex)

    def _answered(self, i: int, answer: Answer) -> None:
        truth, drifted = self._truths.pop(i)
        self.records.append(Record(answer, truth, drifted))
        if answer.status == 200:
            if answer.role != "challenger":
                self.first_answers.setdefault((answer.node, answer.version), answer.finished)
            self._labels.append((time.time() + self.traffic.label_delay, answer.request_ids[0], truth))

    async def run(self, until: float, stop: asyncio.Event) -> LoadResult:
        """Send ``rate`` requests/s round-robin over the nodes until ``until`` (wall time) or ``stop``."""
        producer = Producer(model=self.model, settings=self.settings)
        labeller = asyncio.create_task(self._send_labels(producer, stop))
        try:
            result = await generate_load(self.urls, self.model, self._body, rate=self.traffic.rate,
                                         duration=max(0.0, until - time.time()),
                                         connections=self.traffic.connections, on_answer=self._answered, stop=stop,
                                         result=self.load)
        finally:
            stop.set()
            await labeller
            producer.close()
        return result

    async def _send_labels(self, producer: Producer, stop: asyncio.Event) -> None:
        while not stop.is_set() or self._labels:
            now = time.time()
            ids, values = [], []
            while self._labels and (self._labels[0][0] <= now or stop.is_set()):
                _, request_id, truth = self._labels.popleft()
                ids.append(request_id)
                values.append(int(truth))
            if ids:  # labels are sent in one event per 0.2 s tick
                producer.labels(ids, values)
                self.labels_sent += len(ids)
            await asyncio.sleep(0.2)
        producer.flush(15)

    # ------------------------------------------------------------ what happened
    def accuracy(self, *, version: str | None = None, drifted: bool | None = None, since: float = 0.0) -> float:
        chosen = [r for r in self.records if r.answer.status == 200 and r.answer.started >= since
                  and (version is None or r.answer.version == version)
                  and (drifted is None or r.drifted == drifted)]
        if not chosen:
            return float("nan")
        return float(np.mean([(r.answer.classes[0] == "1") == r.truth for r in chosen]))

    def first_answer(self, url: str, version: str) -> float | None:
        return self.first_answers.get((url, version))
