"""``driftline ui``'s web server: one read-only page, its JSON, and alerts as server-sent events.

The page polls ``/api/state`` (every 2 s) and ``/api/alerts?after=N`` (every
second); ``/api/events`` streams the same alerts as server-sent events for
scripts and dashboards that would rather hold a connection open.

Read-only by construction: every route is a GET over :class:`ConsoleState`,
which only consumes. It binds to 127.0.0.1 unless told otherwise, and any
other address needs a token (``Authorization: Bearer …`` or ``?token=`` on
the page's URL, which the page passes on to its own requests): a console
that shows model quality is not for the whole network by accident.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from driftline.console.state import ConsoleState

# The page (page.html): inline styles and script, no framework, nothing fetched but its own JSON. It polls
# /api/state every 2 s and listens to /api/events (server-sent alerts); every value from the topics
# goes in through textContent or SVG attributes, never as markup (model and feature names are data).
PAGE = (Path(__file__).with_name("page.html")).read_text(encoding="utf-8")

HEARTBEAT_S = 10.0


class TokenGate(BaseHTTPMiddleware):
    """Every route but /healthz needs the token, when one is set."""

    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.url.path != "/healthz":
            given = request.query_params.get("token") or request.headers.get("authorization", "").removeprefix(
                "Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return JSONResponse({"error": "a token is required: ?token=… or Authorization: Bearer …"},
                                    status_code=401)
        return await call_next(request)


def console_app(state: ConsoleState, token: str | None = None, errors: list[str] | None = None) -> Starlette:
    """The app over a state some thread keeps current (``errors``: the latest broker problems)."""
    problems = errors if errors is not None else []

    async def page(_: Request) -> HTMLResponse:
        return HTMLResponse(PAGE, headers={"Cache-Control": "no-store",
                                           "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
                                                                      "script-src 'unsafe-inline'; img-src data:"})

    async def snapshot(_: Request) -> JSONResponse:
        data = await asyncio.to_thread(state.snapshot)
        data["problems"] = problems[-3:]
        return JSONResponse(data)

    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            sequence = int(request.query_params.get("after", "0") or 0)
            waited = 0.0
            yield b"retry: 2000\n\n"
            while not await request.is_disconnected():
                fresh = state.alerts_after(sequence)
                for alert in fresh:
                    sequence = alert["sequence"]
                    yield f"id: {sequence}\nevent: alert\ndata: {json.dumps(alert)}\n\n".encode()
                if not fresh and waited >= HEARTBEAT_S:
                    yield b": heartbeat\n\n"
                    waited = 0.0
                await asyncio.sleep(0.5)
                waited += 0.5

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def alerts(request: Request) -> JSONResponse:
        return JSONResponse(state.alerts_after(int(request.query_params.get("after", "0") or 0)))

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"caught_up": state.caught_up, "problems": problems[-1:]})

    app = Starlette(routes=[Route("/", page), Route("/api/state", snapshot), Route("/api/alerts", alerts),
                            Route("/api/events", events),
                            Route("/healthz", health)])
    if token:
        app.add_middleware(TokenGate, token=token)
    return app
