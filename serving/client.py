"""A small Open Inference Protocol client and load generator (the demo's application, tests, bench).

Any v2 client works against a serving node; this one exists so driftline's
own tools do not need a heavy dependency, and it speaks only what the
protocol defines: one tensor per feature, ``parameters.request_ids``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np


def infer_body(columns: Mapping[str, Sequence[Any] | np.ndarray], request_ids: Sequence[str] | None = None,
               request_id: str | None = None) -> dict[str, Any]:
    inputs = []
    for name, values in columns.items():
        array = np.asarray(values)
        numeric = array.dtype.kind in "fiu"
        inputs.append({"name": name, "datatype": "FP64" if numeric else "BYTES", "shape": [len(array)],
                       "data": array.astype(np.float64).tolist() if numeric else [str(v) for v in array.tolist()]})
    body: dict[str, Any] = {"inputs": inputs}
    if request_ids is not None:
        body["parameters"] = {"request_ids": list(request_ids)}
    if request_id is not None:
        body["id"] = request_id
    return body


@dataclass
class Answer:
    started: float  # time.time() when sent
    finished: float
    status: int  # 0: connection error
    version: str
    request_ids: list[str]
    scores: list[float]
    classes: list[str]
    node: str
    error: str = ""


async def infer_once(client: httpx.AsyncClient, url: str, model: str, body: dict[str, Any]) -> Answer:
    started = time.time()
    try:
        response = await client.post(f"{url}/v2/models/{model}/infer", json=body)
    except httpx.HTTPError as exc:
        return Answer(started, time.time(), 0, "", [], [], [], url, f"{type(exc).__name__}: {exc}")
    finished = time.time()
    if response.status_code != 200:
        return Answer(started, finished, response.status_code, "", [], [], [], url, response.text[:200])
    payload = response.json()
    outputs = {o["name"]: o["data"] for o in payload["outputs"]}
    return Answer(started, finished, 200, payload["model_version"], payload["parameters"]["request_ids"],
                  outputs.get("score", outputs.get("prediction", [])), outputs.get("predicted_class", []), url)


async def generate_load(urls: Sequence[str], model: str, make_body: Callable[[int], dict[str, Any]], *,
                        rate: float, duration: float, concurrency: int = 16,
                        on_answer: Callable[[Answer], None] | None = None) -> list[Answer]:
    """Send ``rate`` requests/s for ``duration`` s, round-robin over ``urls`` (open loop, paced)."""
    answers: list[Answer] = []
    limits = httpx.Limits(max_connections=concurrency * len(urls), max_keepalive_connections=concurrency * len(urls))
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        async def one(i: int) -> None:
            async with gate:
                answer = await infer_once(client, urls[i % len(urls)], model, make_body(i))
            answers.append(answer)
            if on_answer is not None:
                on_answer(answer)

        tasks = []
        start = time.perf_counter()
        total = int(rate * duration)
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return answers
