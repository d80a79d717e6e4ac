"""The inference paths as a plain ASGI handler in front of the Starlette app.

Nearly every request a node takes is ``POST /v2/models/{name}[/versions/{v}]/infer``.
Starlette gives it a middleware stack (error and exception middleware, a
router that tries each route's regex), a ``Request`` and a ``Response``
object: measured, about a fifth of a one-row request's time on this
machine. This front matches the two paths with one regex and hands the
body to the node's handler (:func:`serving.app.create_app`'s ``infer``),
which answers with a :class:`Reply`; everything else goes on to Starlette.
What the stack gave is kept: an exception in the handler is logged and
answered with the protocol's JSON 500, another method gets a 405, and the
reply's background work (a rollout's shadow) runs after the answer is sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)
INFER_PATH = re.compile(r"/v2/models/([^/]+)/(?:versions/([^/]+)/)?infer")
_JSON = b"application/json"


@dataclass
class Reply:
    """An answer as bytes: status, body, media type, the version that answered, work for after."""

    status: int
    content: bytes
    version: str = ""
    media_type: bytes = _JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()
    background: Callable[[], Awaitable[None]] | None = None


def error_reply(status: int, message: str) -> Reply:
    """The protocol's error body, ``{"error": "..."}``."""
    return Reply(status, orjson.dumps({"error": message}))


class Body:
    """A request's headers and body as the handler needs them (header names lower-case, as ASGI gives)."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        self._receive = receive

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    async def read(self, limit: int) -> bytes | None:
        """The body, or None as soon as it passes ``limit`` bytes (never read whole first)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] != "http.request":  # the client went away
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


Handler = Callable[[str, str | None, Body], Awaitable[Reply]]


class InferFront:
    """Answers the inference paths itself (``handler``); passes every other request to ``app``."""

    def __init__(self, app: ASGIApp, handler: Handler, not_allowed: Callable[[], Reply]) -> None:
        self.app = app
        self.handler = handler
        self.not_allowed = not_allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = INFER_PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            reply = self.not_allowed()
        else:
            try:
                reply = await self.handler(match[1], match[2], Body(scope, receive))
            except Exception:  # a defect of ours: logged, and the caller gets the protocol's 500
                log.exception("inference on %s failed", scope["path"])
                reply = error_reply(500, "internal error")
        await send_reply(send, reply)
        if reply.background is not None:
            await reply.background()


async def send_reply(send: Send, reply: Reply) -> None:
    headers = [(b"content-length", str(len(reply.content)).encode()), (b"content-type", reply.media_type)]
    if reply.version:
        headers.append((b"x-model-version", reply.version.encode()))
    headers.extend(reply.headers)
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.content})
