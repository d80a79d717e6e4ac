"""The serving node's ASGI app (Starlette): Open Inference Protocol v2 REST, /metrics, access logs.

Every inference takes the model *once* from the store at its start, so a
swap that lands meanwhile never changes the version answering a request
already in flight. Errors use the protocol's body, ``{"error": "..."}``:
400 for a request the model cannot take, 404 for an unknown model or
version, 503 while the node is not ready.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import orjson
from prometheus_client import Counter, Histogram
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from driftline import __version__
from driftline.alerts import Alert
from driftline.control import ControlPublisher
from driftline.errors import DeliveryError
from driftline.runtime import tune_gc
from driftline.settings import Settings, load_settings
from serving import metrics
from serving.binary import HEADER, binary_response, split_body, wants_binary
from serving.emitter import Emission, PredictionEmitter
from serving.front import Body, InferFront, Reply, error_reply
from serving.protocol import InferRequest, ProtocolError, infer_response, model_metadata, parse_infer
from serving.store import LoadedModel, ModelStore, Routed

access_log = logging.getLogger("driftline.serving.access")
HEADER_NAME = HEADER.encode()
log = logging.getLogger(__name__)


@dataclass
class NodeOptions:
    """A node's own options; :meth:`from_settings` reads them from the ``serve_*`` settings."""

    models: list[str] | None = None
    node_id: str = ""
    max_body_bytes: int = 4 * 1024 * 1024
    emit_mode: str = "async"
    emit_capacity: int = 10_000
    access_log: bool = True
    limit_concurrency: int = 512

    @classmethod
    def from_settings(cls, settings: Settings) -> NodeOptions:
        models = [m.strip() for m in settings.serve_models.split(",") if m.strip()]
        return cls(models=models or None, node_id=settings.serve_node_id,
                   max_body_bytes=settings.serve_max_body_bytes, emit_mode=settings.serve_emit,
                   emit_capacity=settings.serve_emit_capacity, access_log=settings.serve_access_log,
                   limit_concurrency=settings.serve_limit_concurrency)


class FastJSON(JSONResponse):
    """orjson: several times faster than the standard library on the request path."""

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


def error(status: int, message: str) -> JSONResponse:
    return FastJSON({"error": message}, status_code=status)


class RequestMetrics:
    """Metric children per (model, version, status), looked up once instead of per request."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, str], Counter] = {}
        self._timing: dict[tuple[str, str], tuple[Histogram, Counter]] = {}

    def count(self, model: str, version: str, status: int) -> None:
        key = (model, version, str(status))
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = metrics.REQUESTS.labels(*key)
        child.inc()

    def timing(self, model: str, version: str) -> tuple[Histogram, Counter]:
        children = self._timing.get((model, version))
        if children is None:
            children = self._timing[(model, version)] = (metrics.LATENCY.labels(model, version),
                                                          metrics.ROWS.labels(model, version))
        return children


class AccessLog:
    """One JSON line per request: method, path, status, duration, and the version that answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        version = ""

        async def capture(message: Message) -> None:
            nonlocal status, version
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message.get("headers", []):
                    if key == b"x-model-version":
                        version = value.decode()
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            access_log.info(json.dumps({
                "method": scope["method"], "path": scope["path"], "status": status,
                "ms": round((time.perf_counter() - started) * 1000, 3), "model_version": version,
                "client": scope["client"][0] if scope.get("client") else None}))


@dataclass
class NodeState:
    """What a node builds at start-up (lifespan) and its routes use."""

    store: ModelStore | None = None
    emitter: PredictionEmitter | None = None


def create_app(settings: Settings | None = None, options: NodeOptions | None = None) -> ASGIApp:
    settings = settings or load_settings()
    options = options or NodeOptions()
    node_id = options.node_id or f"{socket.gethostname()}-{os.getpid()}"
    state = NodeState()
    counters = RequestMetrics()

    def store() -> ModelStore:
        if state.store is None:
            raise RuntimeError("the model store is created when the app starts (lifespan)")
        return state.store

    def emitter() -> PredictionEmitter:
        if state.emitter is None:
            raise RuntimeError("the prediction emitter is created when the app starts (lifespan)")
        return state.emitter

    def load_failed(model: str, version: str, reason: str) -> None:
        alert = Alert.create("driftline.serving.load_failed", model, severity="critical",
                             source=f"/driftline/serving/{node_id}", identity=(version, node_id),
                             data={"model_version": version, "node": node_id, "features": [],
                                   "message": f"node {node_id} refused {model} v{version}: {reason}"})
        try:
            ControlPublisher(settings, timeout=10).publish_alert(alert)
        except DeliveryError as exc:  # the node keeps serving its current version either way
            log.error("the load-failure alert for %s v%s was not delivered: %s", model, version, exc)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        state.store = ModelStore(settings, options.models, on_load_failed=load_failed)
        state.emitter = PredictionEmitter(settings, capacity=options.emit_capacity, mode=options.emit_mode,
                                          node_id=node_id)
        store().start()
        emitter().start()
        tune_gc()
        log.info("serving node %s started (models: %s)", node_id, ", ".join(options.models or ["all deployed"]))
        try:
            yield
        finally:
            store().stop()
            await emitter().close()
            metrics.worker_exited(os.getpid())
            log.info("serving node %s stopped cleanly", node_id)

    async def server_metadata(_: Request) -> Response:
        return JSONResponse({"name": "driftline", "version": __version__, "extensions": ["binary_tensor_data"]})

    async def live(_: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(_: Request) -> Response:
        ok = store().ready
        return JSONResponse({"ready": ok}, status_code=200 if ok else 400)

    def lookup(request: Request) -> LoadedModel | Response:
        """:func:`find` for the Starlette routes: the model, or the error as a response."""
        found = find(request.path_params["name"], request.path_params.get("version"))
        if isinstance(found, Reply):
            return Response(found.content, status_code=found.status, media_type="application/json")
        return found

    async def model_meta(request: Request) -> Response:
        served = lookup(request)
        if isinstance(served, Response):
            return served
        return FastJSON(model_metadata(served.name, store().versions(served.name), served.spec, served.task,
                                           served.version), headers={"x-model-version": served.version})

    async def model_ready(request: Request) -> Response:
        loaded = not isinstance(lookup(request), Response)
        name = request.path_params["name"]
        if not loaded and not store().known(name):
            return error(404, f"unknown model {name!r}")
        return JSONResponse({"name": name, "ready": loaded}, status_code=200 if loaded else 400)

    in_flight = [0]  # this worker's requests being worked on (the event loop is single-threaded)

    async def shadow(model: LoadedModel, parsed: InferRequest, rollout_id: str) -> None:
        """The rollout's other version predicts the same rows; the event is marked shadow (the monitor skips
        it, the rollout controller pairs it). A failure is counted, never seen by the caller."""
        started = time.perf_counter()
        try:
            scores, classes = model.model.predict(parsed.rows)
            await emitter().emit(Emission(model.name, model.version, parsed.columns, scores, classes,
                                          parsed.request_ids, int(time.time() * 1000), "shadow", rollout_id))
        except Exception:
            metrics.SHADOW_FAILURES.labels(model.name, model.version).inc()
            log.exception("%s v%s failed to predict in the shadow", model.name, model.version)
        finally:
            metrics.SHADOW_SECONDS.labels(model.name, model.version).observe(time.perf_counter() - started)

    def find(name: str, version: str | None) -> LoadedModel | Reply:
        """The version a request names (or the deployed one), else the error reply that says why not."""
        served = store().get(name, version)
        if served is not None:
            return served
        if not store().known(name):
            return error_reply(404, f"unknown model {name!r}")
        if version is not None:
            return error_reply(404, f"version {version!r} of {name!r} is not loaded on this node "
                                    f"(loaded: {', '.join(store().versions(name)) or 'none'})")
        return error_reply(503, f"model {name!r} is not loaded yet")

    async def infer(name: str, version: str | None, request: Body) -> Reply:
        """One inference (the front, :mod:`serving.front`, calls it for both infer paths)."""
        started = time.perf_counter()
        served = find(name, version)
        if isinstance(served, Reply):
            counters.count(name, "", served.status)
            return served
        if in_flight[0] >= options.limit_concurrency:  # answer at once rather than queue without bound
            counters.count(served.name, served.version, 503)
            return error_reply(503, f"this node is at its limit of {options.limit_concurrency} requests "
                                    "in flight; retry")
        in_flight[0] += 1
        metrics.IN_FLIGHT.inc()
        status = 500  # unless a reply comes back: a defect is answered 500 by the front, and counted so
        try:
            reply, served = await answer_infer(served, version is not None, request)
            status = reply.status
            return reply
        finally:
            in_flight[0] -= 1
            metrics.IN_FLIGHT.dec()
            counters.count(served.name, served.version, status)
            counters.timing(served.name, served.version)[0].observe(time.perf_counter() - started)

    async def answer_infer(served: LoadedModel, pinned: bool, request: Body) -> tuple[Reply, LoadedModel]:
        """The reply, and the version that gave it (a rollout may route the request to its other one)."""
        limit = options.max_body_bytes
        declared = request.header(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return error_reply(413, f"the body is {declared} bytes; this node takes at most {limit}"), served
        body = await request.read(limit)
        if body is None:  # a chunked upload that kept going: stopped as soon as it passed the limit
            return error_reply(413, f"the body is larger than {limit} bytes"), served
        try:
            header_length = request.header(HEADER_NAME)
            payload = orjson.loads(body) if header_length is None else split_body(body, header_length)
            parsed = parse_infer(payload, served.spec)
        except orjson.JSONDecodeError as exc:
            return error_reply(400, f"the body is not JSON: {exc.msg} at position {exc.pos}"), served
        except (ProtocolError, UnicodeDecodeError) as exc:
            return error_reply(400, str(exc)), served
        routed = Routed(served, "", None, "")
        if not pinned:  # a request pinned to a version is outside any rollout
            routed = store().route(served.name, parsed.id or parsed.request_ids[0]) or routed
        answering = routed.answer
        try:
            scores, classes = answering.model.predict(parsed.rows)
        except Exception as exc:  # the model's own failure: a JSON 500, counted as one
            log.exception("%s v%s failed to predict", answering.name, answering.version)
            return error_reply(500, f"model {answering.name} v{answering.version} failed to predict: "
                                    f"{type(exc).__name__}"), answering
        try:
            answer = infer_response(answering.name, answering.version, parsed, answering.task, scores, classes)
        except ProtocolError as exc:
            return error_reply(400, str(exc)), answering
        if routed.rollout_id:
            answer["parameters"].update(role=routed.role, rollout_id=routed.rollout_id)
        stored = await emitter().emit(Emission(
            answering.name, answering.version, parsed.columns, scores, classes, parsed.request_ids,
            int(time.time() * 1000), routed.role, routed.rollout_id))
        if not stored:  # ack mode: no answer whose prediction event Kafka did not take
            return error_reply(503, "the prediction event was not stored in Kafka; retry"), answering
        background = None
        if routed.shadow is not None:  # after the answer is sent: off the request's critical path
            other, rollout_id = routed.shadow, routed.rollout_id
            background = functools.partial(shadow, other, parsed, rollout_id)
        counters.timing(answering.name, answering.version)[1].inc(len(parsed.rows))
        binary = wants_binary(payload)
        if binary:
            content, length = binary_response(answer, binary)
            return Reply(200, content, answering.version, b"application/octet-stream",
                         ((HEADER_NAME, str(length).encode()),), background), answering
        return Reply(200, orjson.dumps(answer), answering.version, background=background), answering

    async def prometheus(_: Request) -> Response:
        content, media_type = metrics.exposition()
        return Response(content, media_type=media_type)

    routes = [  # the inference paths are answered in front of Starlette (serving.front)
        Route("/v2", server_metadata),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2/models/{name}", model_meta),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/versions/{version}", model_meta),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready),
        Route("/metrics", prometheus),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)

    def unrouted(status: int, message: str) -> Callable[[Request, Exception], JSONResponse]:
        def answer(_request: Request, _exc: Exception) -> JSONResponse:
            counters.count("-", "", status)  # counted too: a scrape shows clients calling what is not there
            return error(status, message)
        return answer

    app.add_exception_handler(404, unrouted(404, "no such endpoint"))
    app.add_exception_handler(405, unrouted(405, "method not allowed"))

    def not_allowed() -> Reply:
        counters.count("-", "", 405)
        return error_reply(405, "method not allowed")

    front: ASGIApp = InferFront(app, infer, not_allowed)
    return AccessLog(front) if options.access_log else front


def app_from_env() -> ASGIApp:
    """Factory for ``uvicorn --factory`` and multi-worker runs: every option from the settings.

    ``driftline serve`` puts its flags in the environment (``DRIFTLINE_SERVE_*``,
    ordinary settings), which each worker process inherits and validates.
    """
    settings = load_settings()
    return create_app(settings, NodeOptions.from_settings(settings))
