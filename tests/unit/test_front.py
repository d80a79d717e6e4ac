"""The inference front: the two infer paths answered before Starlette, everything else passed on."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from serving.front import Body, InferFront, Reply, error_reply


def call(front: InferFront, method: str, path: str, chunks: list[bytes], headers=()) -> list[dict]:
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": list(headers)}
    asyncio.run(front(scope, receive, send))
    return sent


def passed_on():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    return app, seen


def test_both_infer_paths_reach_the_handler_with_name_version_and_body():
    calls = []

    async def handler(name, version, body: Body):
        calls.append((name, version, await body.read(100), body.header(b"x-a")))
        return Reply(200, b'{"ok":true}', version or "3")

    app, seen = passed_on()
    front = InferFront(app, handler, lambda: error_reply(405, "no"))
    sent = call(front, "POST", "/v2/models/loans/infer", [b"ab", b"cd"], [(b"x-a", b"1")])
    call(front, "POST", "/v2/models/loans/versions/7/infer", [b"{}"])
    assert calls == [("loans", None, b"abcd", "1"), ("loans", "7", b"{}", None)]
    start, body = sent
    assert start["status"] == 200 and (b"x-model-version", b"3") in start["headers"]
    assert (b"content-length", b"11") in start["headers"] and body["body"] == b'{"ok":true}'
    assert seen == []
    for path in ("/v2/models/loans", "/v2/models/loans/infer/x", "/v2/models/a/b/infer", "/metrics"):
        call(front, "POST", path, [b""])
    assert seen == ["/v2/models/loans", "/v2/models/loans/infer/x", "/v2/models/a/b/infer", "/metrics"]


def test_another_method_is_405_and_a_handler_defect_is_the_protocols_500(caplog):
    async def broken(name, version, body):
        raise KeyError("bug")

    app, _ = passed_on()
    front = InferFront(app, broken, lambda: error_reply(405, "method not allowed"))
    start, body = call(front, "GET", "/v2/models/loans/infer", [b""])
    assert start["status"] == 405 and orjson.loads(body["body"]) == {"error": "method not allowed"}
    start, body = call(front, "POST", "/v2/models/loans/infer", [b"{}"])
    assert start["status"] == 500 and orjson.loads(body["body"]) == {"error": "internal error"}
    assert "inference on /v2/models/loans/infer failed" in caplog.text


def test_the_background_work_runs_after_the_answer_is_sent():
    order = []

    async def later():
        order.append("background")

    async def handler(name, version, body):
        return Reply(200, b"{}", "1", background=later)

    app, _ = passed_on()
    front = InferFront(app, handler, lambda: error_reply(405, "no"))

    async def run():
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            order.append(message["type"])
        await front({"type": "http", "method": "POST", "path": "/v2/models/m/infer", "headers": []}, receive, send)
    asyncio.run(run())
    assert order == ["http.response.start", "http.response.body", "background"]


@pytest.mark.parametrize("chunks,limit,expected", [
    ([b"12345"], 5, b"12345"), ([b"123", b"456"], 5, None), ([b"12", b"34"], 10, b"1234")])
def test_the_body_is_read_up_to_a_limit_and_no_further(chunks, limit, expected):
    got = []

    async def handler(name, version, body):
        got.append(await body.read(limit))
        return Reply(200, b"{}")

    app, _ = passed_on()
    call(InferFront(app, handler, lambda: error_reply(405, "no")), "POST", "/v2/models/m/infer", chunks)
    assert got == [expected]
