"""The v2 client and the paced load generator against a small in-process HTTP server (no Kafka)."""

from __future__ import annotations

import asyncio
import json

import pytest

from driftline.client import InferenceClient, generate_load, infer_body

ANSWER = json.dumps({"model_name": "m", "model_version": "3", "outputs": [
    {"name": "score", "datatype": "FP64", "shape": [1], "data": [0.25]},
    {"name": "predicted_class", "datatype": "BYTES", "shape": [1], "data": ["1"]}],
    "parameters": {"request_ids": ["r1"]}}).encode()


class Server:
    """HTTP/1.1 keep-alive that closes a connection idle for ``idle_close`` s, answering after ``delay`` s."""

    def __init__(self, delay: float = 0.0, idle_close: float = 10.0) -> None:
        self.delay = delay
        self.idle_close = idle_close
        self.in_flight = 0
        self.most_in_flight = 0
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_close)
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                await reader.readexactly(length)
                self.requests += 1
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                await asyncio.sleep(self.delay)
                self.in_flight -= 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def close(self) -> None:
        self._server.close()


def body(i: int) -> dict:
    return infer_body({"x": [float(i)]}, request_id=str(i))


def test_an_answer_is_read_into_version_ids_scores_and_classes():
    async def scenario():
        server = Server()
        client = InferenceClient(await server.start(), "m", connections=2)
        answer = await client.infer(body(0))
        client.close()
        server.close()
        return answer

    answer = asyncio.run(scenario())
    assert (answer.status, answer.version, answer.request_ids, answer.scores, answer.classes) == (
        200, "3", ["r1"], [0.25], ["1"])


def test_connections_the_server_closed_while_idle_are_reopened_without_a_failed_request():
    """The keep-alive race: the server drops idle connections (here after 0.15 s) faster than the client expires them."""
    async def scenario():
        server = Server(idle_close=0.15)
        url = await server.start()
        client = InferenceClient(url, "m", connections=4)
        for connection in client._idle:
            connection.expiry = 60.0  # trust idle connections, so every reuse after a pause meets a closed one
        answers = []
        for _ in range(6):
            answers += await asyncio.gather(*(client.infer(body(i)) for i in range(4)))
            await asyncio.sleep(0.3)
        client.close()
        server.close()
        return answers

    answers = asyncio.run(scenario())
    assert [a.error for a in answers if a.status != 200] == []
    assert len(answers) == 24


def test_a_slow_server_puts_requests_behind_schedule_instead_of_queueing_them():
    async def scenario():
        server = Server(delay=0.2)
        url = await server.start()
        result = await generate_load([url], "m", body, rate=50, duration=2, connections=2)
        server.close()
        return server, result

    server, result = asyncio.run(scenario())
    # two connections at 0.2 s each answer at most 10 requests/s: the other 40 a second are behind schedule
    assert server.most_in_flight <= 2
    assert result.sent + result.behind_schedule == 100
    assert 10 <= result.sent <= 30 and result.failed == []
    assert result.behind_schedule >= 70


def test_a_fast_server_gets_every_request_on_schedule():
    async def scenario():
        server = Server()
        url = await server.start()
        result = await generate_load([url, url], "m", body, rate=200, duration=1.5, connections=4)
        server.close()
        return result

    result = asyncio.run(scenario())
    assert result.sent + result.behind_schedule == 300 and result.failed == []
    assert result.sent >= 270
    assert result.rate == pytest.approx(200, rel=0.1)


def test_a_refused_connection_is_a_failed_answer_not_an_exception():
    async def scenario():
        client = InferenceClient("http://127.0.0.1:9", "m", connections=1, timeout=2)
        answer = await client.infer(body(0))
        client.close()
        return answer

    answer = asyncio.run(scenario())
    assert answer.status == 0 and answer.error


def test_a_busy_node_passes_its_request_to_a_node_with_a_free_connection():
    async def scenario():
        slow, fast = Server(delay=0.5), Server()
        urls = [await slow.start(), await fast.start()]
        result = await generate_load(urls, "m", body, rate=40, duration=1.5, connections=1)
        slow.close()
        fast.close()
        return slow, fast, result

    slow, fast, result = asyncio.run(scenario())
    assert result.failed == [] and result.sent + result.behind_schedule == 60
    assert slow.requests <= 4 and fast.requests >= 50, (slow.requests, fast.requests)
    assert result.busy <= 5
