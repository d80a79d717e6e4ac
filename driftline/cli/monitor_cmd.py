"""``driftline monitor``: run a stream monitor worker until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging

from driftline.cli.service import run_through_outages, serve_metrics, stop_event, wait_for_cluster
from driftline.errors import ConfigError
from driftline.runtime import single_threaded_blas, tune_gc
from driftline.settings import Settings

DEFAULT_METRICS_PORT = 9464
log = logging.getLogger("driftline.monitor")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("monitor", help="run a stream monitor worker (window statistics, skew, drift)")
    parser.add_argument("--window", type=float, help="window size in seconds (default: settings, 60)")
    parser.add_argument("--grace", type=float, help="grace for late events in seconds (default: settings, 5)")
    parser.add_argument("--instance", help="stable id of this worker among its group (default: host name)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help=f"port for /metrics (default {DEFAULT_METRICS_PORT}; 0 disables)")
    parser.add_argument("--idle", type=float, default=30.0,
                        help="seconds a partition must be read to its end with nothing new before it stops "
                             "holding windows open; one that cannot be read always holds them (default 30)")
    parser.add_argument("--rolling", type=int, default=10,
                        help="windows merged by the rolling view that catches slow drift (default 10)")
    parser.add_argument("--false-alarm-rate", type=float, default=0.01,
                        help="chance a stable window raises a drift alert (default 0.01)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.drift.decision import DriftPolicy
    from streams.stages.monitor import Monitor

    if args.window is not None or args.grace is not None:
        settings = settings.replace(window_seconds=args.window or settings.window_seconds,
                                    grace_seconds=settings.grace_seconds if args.grace is None else args.grace)
    if args.idle <= 0:
        raise ConfigError(f"--idle must be a positive number of seconds, got {args.idle:g}")
    if args.rolling < 2:
        raise ConfigError(f"--rolling must be at least 2 windows, got {args.rolling}")
    if not 0 < args.false_alarm_rate < 1:
        raise ConfigError(f"--false-alarm-rate must be between 0 and 1, got {args.false_alarm_rate}")
    port = args.metrics_port if args.metrics_port is not None else (settings.metrics_port or DEFAULT_METRICS_PORT)
    stopping = stop_event()
    wait_for_cluster(settings, stopping, "monitor")
    serve_metrics(port)
    tune_gc()
    single_threaded_blas()
    log.info("monitor started: windows of %ss, grace %ss, metrics on :%s",
             settings.window_seconds, settings.grace_seconds, port or "-")
    run_through_outages("monitor", lambda: Monitor(
        settings, instance=args.instance, policy=DriftPolicy(false_alarm_rate=args.false_alarm_rate),
        idle_seconds=args.idle, rolling_windows=args.rolling), stopping)
    log.info("monitor stopped cleanly")
    return 0
