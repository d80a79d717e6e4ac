"""``driftline notify FILE``: deliver alerts to the sinks a notify file names (a faust-streaming worker)."""

from __future__ import annotations

import argparse
import os

from driftline.errors import ConfigError
from driftline.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    notify = sub.add_parser("notify", help="deliver alerts to webhooks, Slack or a command, once per alert id")
    notify.add_argument("notify_file", metavar="FILE",
                        help="notify file (YAML): sinks, filters, rates (see driftline.notify.config)")
    notify.add_argument("--group", default="notify",
                        help="consumer group and dedupe-table name (several notifiers with one group share the work)")
    notify.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (0: off)")
    notify.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from faust import Worker
    from prometheus_client import start_http_server

    from driftline.notify.app import build_app
    from driftline.notify.config import load_notify_config

    sinks = load_notify_config(args.notify_file)
    if settings.security_protocol.upper() != "PLAINTEXT":
        raise ConfigError("notify speaks PLAINTEXT to Kafka for now (faust's client); run it inside the "
                          "cluster's network or use 'driftline alerts tail' with a script")
    if args.metrics_port:
        start_http_server(args.metrics_port)
    app = build_app(settings, sinks, args.group)
    print(f"notify: {len(sinks)} sink(s) ({', '.join(s.name for s in sinks)}) on {settings.topic('alerts')}, "
          f"group {settings.group(args.group)}", flush=True)
    worker = Worker(app, loglevel=os.environ.get("DRIFTLINE_NOTIFY_LOG_LEVEL", "WARNING"), quiet=True,
                    redirect_stdouts=False)
    try:
        worker.execute_from_commandline()  # returns (or exits 0) when SIGTERM/SIGINT stop the worker
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
