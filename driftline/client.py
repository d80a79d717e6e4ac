"""An application's Open Inference Protocol (KServe v2) client, and a paced load generator that cannot stall.

Any v2 client works against a serving node (tritonclient is tested); this one
is what driftline's own demo, benches and tests use. It speaks HTTP/1.1 over
a fixed pool of raw asyncio keep-alive connections per node, because a
general client's per-request bookkeeping is what an application on two busy
cores cannot afford: an ``httpx.AsyncClient`` driven as an open loop spent a
whole core on its pool's queue scans and fell to a third of the rate asked.

The load generator is *bounded*: at most ``connections`` requests per node
are in flight; a request whose turn comes while every connection of its node
is busy is counted as ``behind_schedule`` and not sent, instead of queueing
without limit. So the achieved rate is honest and the backlog is zero by
construction.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np


def infer_body(columns: Mapping[str, Sequence[Any] | np.ndarray], request_ids: Sequence[str] | None = None,
               request_id: str | None = None) -> dict[str, Any]:
    """A v2 inference request: one tensor per feature column, ``parameters.request_ids`` when given."""
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
    """One request's outcome, as the caller saw it."""

    started: float  # time.time() when sent
    finished: float
    status: int  # HTTP status; 0 for a connection error or a time-out
    version: str
    request_ids: list[str]
    scores: list[float]
    classes: list[str]
    node: str
    error: str = ""
    role: str = ""  # in a rollout: champion or challenger (the version that answered)


def answer_from(node: str, started: float, finished: float, status: int, payload: bytes) -> Answer:
    """Read a v2 response body into an :class:`Answer` (a non-200 keeps the first 200 bytes as the error)."""
    if status != 200:
        return Answer(started, finished, status, "", [], [], [], node, payload[:200].decode(errors="replace"))
    try:
        body = json.loads(payload)
        outputs = {o["name"]: o["data"] for o in body["outputs"]}
        return Answer(started, finished, 200, body["model_version"], body["parameters"]["request_ids"],
                      outputs.get("score", outputs.get("prediction", [])), outputs.get("predicted_class", []), node,
                      role=body["parameters"].get("role", ""))
    except (ValueError, KeyError, TypeError) as exc:
        return Answer(started, finished, 0, "", [], [], [], node, f"unreadable answer: {exc}")


class ProtocolViolation(Exception):
    """The server's bytes were not an HTTP/1.1 response this client can read."""


class StaleConnection(Exception):
    """A reused keep-alive connection was closed by the server before it answered (safe to send again)."""


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects lazily after an error or a long idle.

    A server closes a keep-alive connection that idled past its own limit
    (uvicorn: 5 s), and a request written at that moment reads an empty
    stream. So a connection idle longer than ``expiry`` is reopened before
    use, and a reused one that reads nothing at all raises
    :class:`StaleConnection`, which the client retries once on a new one.
    """

    def __init__(self, host: str, port: int, expiry: float = 2.0) -> None:
        self.host = host
        self.port = port
        self.expiry = expiry
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._last_used = 0.0

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        if self._writer is not None and (self._writer.is_closing()
                                         or time.monotonic() - self._last_used > self.expiry):
            self.close()
        reused = self._writer is not None
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(head + body)
        try:
            raw = await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if reused and not exc.partial:
                self.close()
                raise StaleConnection from exc
            raise
        lines = raw.split(b"\r\n")
        try:
            status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError) as exc:
            raise ProtocolViolation(f"bad status line {lines[0][:60]!r}") from exc
        length, close = None, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            raise ProtocolViolation("the response has no Content-Length")
        payload = await self._reader.readexactly(length)
        self._last_used = time.monotonic()
        if close:
            self.close()
        return status, payload

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class InferenceClient:
    """A fixed pool of keep-alive connections to one node, for one model.

    :meth:`infer` waits for a free connection; :meth:`try_infer` returns
    ``None`` at once when all are busy (what a paced load generator needs).
    """

    def __init__(self, url: str, model: str, *, connections: int = 8, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"an inference URL is http://HOST:PORT, not {url!r}")
        self.url = url
        self.timeout = timeout
        self._path = f"/v2/models/{model}/infer"
        self._host = f"{parts.hostname}:{parts.port or 80}"
        # FIFO, so every connection is used in turn and none idles into the server's keep-alive limit
        self._idle: collections.deque[Connection] = collections.deque(
            Connection(parts.hostname, parts.port or 80) for _ in range(connections))
        self._freed = asyncio.Condition()

    @property
    def idle(self) -> int:
        return len(self._idle)

    def _head(self, length: int) -> bytes:
        return (f"POST {self._path} HTTP/1.1\r\nHost: {self._host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {length}\r\n\r\n").encode()

    async def _request(self, connection: Connection, body: bytes) -> tuple[int, bytes]:
        try:
            return await connection.request(self._head(len(body)), body)
        except StaleConnection:
            return await connection.request(self._head(len(body)), body)  # now on a new connection

    async def _send(self, connection: Connection, body: bytes) -> Answer:
        started = time.time()
        try:
            status, payload = await asyncio.wait_for(self._request(connection, body), self.timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ProtocolViolation, ValueError) as exc:
            connection.close()  # its stream is in an unknown state
            return Answer(started, time.time(), 0, "", [], [], [], self.url, f"{type(exc).__name__}: {exc}")
        return answer_from(self.url, started, time.time(), status, payload)

    async def _release(self, connection: Connection) -> None:
        self._idle.append(connection)
        async with self._freed:
            self._freed.notify()

    async def infer(self, body: dict[str, Any] | bytes) -> Answer:
        """Send one request, waiting for a free connection if every one is busy."""
        async with self._freed:
            await self._freed.wait_for(lambda: bool(self._idle))
            connection = self._idle.popleft()
        return await self._send_and_release(connection, body)

    async def _send_and_release(self, connection: Connection, body: dict[str, Any] | bytes) -> Answer:
        try:
            return await self._send(connection, body if isinstance(body, bytes) else json.dumps(body).encode())
        finally:
            await self._release(connection)

    def try_infer(self, body: dict[str, Any] | bytes) -> asyncio.Task[Answer] | None:
        """Start one request on a free connection now, or return ``None`` when every connection is busy."""
        if not self._idle:
            return None
        connection = self._idle.popleft()
        return asyncio.get_running_loop().create_task(self._send_and_release(connection, body))

    def close(self) -> None:
        for connection in self._idle:
            connection.close()


@dataclass
class LoadResult:
    """What a paced run did: every answer, and the requests it could not send on schedule."""

    answers: list[Answer] = field(default_factory=list)
    late: int = 0  # the generator itself ran more than a second late (starved of CPU)
    busy: int = 0  # every connection to the request's node was still waiting for an answer
    seconds: float = 0.0

    @property
    def behind_schedule(self) -> int:
        return self.late + self.busy

    @property
    def sent(self) -> int:
        return len(self.answers)

    @property
    def failed(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


async def generate_load(urls: Sequence[str], model: str, make_body: Callable[[int], dict[str, Any] | bytes], *,
                        rate: float, duration: float, connections: int = 8,
                        on_answer: Callable[[int, Answer], None] | None = None,
                        stop: asyncio.Event | None = None, timeout: float = 10.0,
                        result: LoadResult | None = None) -> LoadResult:
    """Send request ``i`` at ``start + i / rate`` to ``urls[i % len(urls)]`` for ``duration`` s (or until ``stop``).

    At most ``connections`` requests per node are in flight; when the chosen
    node has none free the request goes to the next node that has. A request
    no node can take at its time (``busy``), or whose time passed more than a
    second ago (``late``: the generator itself was starved of CPU), is
    counted behind schedule and skipped: late work is never queued. Pass
    ``result`` to watch the counts grow while it runs.
    """
    clients = [InferenceClient(url, model, connections=connections, timeout=timeout) for url in urls]
    result = result if result is not None else LoadResult()
    in_flight: set[asyncio.Task[Answer]] = set()

    def finished(i: int, task: asyncio.Task[Answer]) -> None:
        in_flight.discard(task)
        if task.cancelled():
            return
        answer = task.result()
        result.answers.append(answer)
        if on_answer is not None:
            on_answer(i, answer)

    start = time.perf_counter()
    total = int(rate * duration)
    try:
        for i in range(total):
            if stop is not None and stop.is_set():
                break
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:
                result.late += 1
                continue
            body = make_body(i)
            # Round robin, but a node whose connections are all busy passes the request to the next
            # one with a free connection, as a load balancer would: one slow node does not drop requests.
            task = None
            for k in range(len(clients)):
                task = clients[(i + k) % len(clients)].try_infer(body)
                if task is not None:
                    break
            if task is None:
                result.busy += 1
                continue
            in_flight.add(task)
            task.add_done_callback(functools.partial(finished, i))
        result.seconds = time.perf_counter() - start
        if in_flight:
            await asyncio.wait(list(in_flight), timeout=timeout + 1)
    finally:
        result.seconds = result.seconds or time.perf_counter() - start
        for task in list(in_flight):
            task.cancel()
        for client in clients:
            client.close()
    return result


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """A plain GET for health checks and /metrics scrapes: (status, text), status 0 when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""
