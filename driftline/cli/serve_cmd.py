"""``driftline serve``: an Open Inference Protocol node (uvicorn) following the model topic."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import tempfile

from driftline.errors import ConfigError
from driftline.settings import Settings
from driftline.topics import create_topics

log = logging.getLogger("driftline.serve")


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="serve deployed models over the Open Inference Protocol (KServe v2)")
    serve.add_argument("--models", nargs="+", metavar="NAME", help="models to serve (default: every deployed one)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (each follows the topics)")
    serve.add_argument("--node-id", help="name of this node in alerts and logs (default host-pid)")
    serve.add_argument("--max-body-bytes", type=int, help="larger request bodies get 413 (default 4 MiB)")
    serve.add_argument("--limit-concurrency", type=int, metavar="N",
                       help="inference requests worked on at once per worker; more get a JSON 503 (default 512)")
    serve.add_argument("--emit", choices=("async", "ack"),
                       help="async: predictions are produced off the request path (default); "
                            "ack: a response waits until Kafka acknowledged its prediction event")
    serve.add_argument("--no-access-log", action="store_true", help="do not log one JSON line per request")
    serve.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {args.port}")
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    # Flags override the serve_* settings (file, DRIFTLINE_SERVE_* variables); Settings validates them.
    flags = {"serve_models": ",".join(args.models) if args.models else None, "serve_node_id": args.node_id,
             "serve_max_body_bytes": args.max_body_bytes, "serve_emit": args.emit,
             "serve_access_log": False if args.no_access_log else None,
             "serve_limit_concurrency": args.limit_concurrency}
    settings = settings.replace(**{k: v for k, v in flags.items() if v is not None})
    from driftline.broker.local import port_in_use

    if port_in_use(args.host, args.port):
        raise ConfigError(f"port {args.port} on {args.host} is already in use; pick another with --port")
    create_topics(settings)
    # Worker processes build their settings again (app_from_env): the serve_* settings travel as variables.
    os.environ.update({
        "DRIFTLINE_SERVE_MODELS": settings.serve_models,
        "DRIFTLINE_SERVE_NODE_ID": settings.serve_node_id,
        "DRIFTLINE_SERVE_MAX_BODY_BYTES": str(settings.serve_max_body_bytes),
        "DRIFTLINE_SERVE_EMIT": settings.serve_emit,
        "DRIFTLINE_SERVE_EMIT_CAPACITY": str(settings.serve_emit_capacity),
        "DRIFTLINE_SERVE_ACCESS_LOG": "1" if settings.serve_access_log else "0",
        "DRIFTLINE_SERVE_LIMIT_CONCURRENCY": str(settings.serve_limit_concurrency),
    })
    # Settings travel to worker processes through the environment they inherit.
    if getattr(args, "config", None):
        os.environ["DRIFTLINE_CONFIG"] = args.config
    if settings.bootstrap_servers:
        os.environ.setdefault("KAFKA_BOOTSTRAP_SERVERS", settings.bootstrap_servers)
    # uvicorn finishes in-flight requests on SIGTERM, then re-raises the signal to the handler it found:
    # a no-op handler makes a graceful stop exit 0 instead of dying of the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    shared_metrics = None
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # one /metrics for the node whichever worker answers the scrape (see serving.metrics)
        shared_metrics = tempfile.mkdtemp(prefix="driftline-serve-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared_metrics
    try:
        uvicorn.run("serving.app:app_from_env", factory=True, host=args.host, port=args.port,
                    workers=args.workers, loop="uvloop", http="httptools", access_log=False, log_config=None,
                    timeout_graceful_shutdown=30, lifespan="on")
    finally:
        if shared_metrics:
            shutil.rmtree(shared_metrics, ignore_errors=True)
    return 0
