"""``driftline ui``: the live web console, one process reading the topics (read-only, localhost by default)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from driftline.errors import ConfigError
from driftline.settings import Settings

log = logging.getLogger(__name__)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def register(sub: argparse._SubParsersAction) -> None:
    ui = sub.add_parser("ui", help="serve the live web console (models, windows, alerts, runs, rollouts)")
    ui.add_argument("--port", type=int, default=8750, help="port (default 8750)")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need --token)")
    ui.add_argument("--token", default=os.environ.get("DRIFTLINE_UI_TOKEN"),
                    help="require this token (?token=… or a Bearer header); default $DRIFTLINE_UI_TOKEN")
    ui.add_argument("--history", type=float, default=3600.0,
                    help="seconds of windows, quality and alerts to read back at start (default 3600)")
    ui.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from driftline.broker.local import port_in_use
    from driftline.console.app import console_app
    from driftline.console.state import ConsoleState

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {args.port}")
    if args.host not in LOCAL_HOSTS and not args.token:
        raise ConfigError(f"--host {args.host} opens the console to the network: give --token (or "
                          f"DRIFTLINE_UI_TOKEN) so only people with it can read it")
    if args.history <= 0:
        raise ConfigError(f"--history must be positive, got {args.history}")
    if port_in_use(args.host, args.port):
        raise ConfigError(f"port {args.port} is in use on {args.host}: pick another with --port")
    state = ConsoleState(settings, history_s=args.history)
    problems: list[str] = []
    stop = threading.Event()
    reader = threading.Thread(target=state.run, args=(stop, lambda exc: problems.append(str(exc)[:200])),
                              name="driftline-console-reader", daemon=True)
    reader.start()
    shown = "localhost" if args.host in LOCAL_HOSTS else args.host
    print(f"driftline console on http://{shown}:{args.port}/{'?token=…' if args.token else ''} "
          f"(read-only; Ctrl-C stops it)", flush=True)
    server = uvicorn.Server(uvicorn.Config(console_app(state, args.token, problems), host=args.host,
                                           port=args.port, log_config=None, access_log=False,
                                           timeout_graceful_shutdown=2))
    # uvicorn stops on SIGTERM/SIGINT, then re-raises the signal to the handler it found: a no-op
    # handler makes a graceful stop exit 0 instead of dying of the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        server.run()
    finally:
        stop.set()
        reader.join(timeout=5)
        state.close()
    return 0
