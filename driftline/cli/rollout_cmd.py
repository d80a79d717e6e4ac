"""``driftline rollout`` (the controller service) and ``driftline models rollout`` (start one)."""

from __future__ import annotations

import argparse
import logging

from driftline.cli.service import run_through_outages, serve_metrics, stop_event, wait_for_cluster
from driftline.settings import Settings

DEFAULT_METRICS_PORT = 9468
log = logging.getLogger("driftline.rollout")


def register(sub: argparse._SubParsersAction) -> None:
    controller = sub.add_parser("rollout", help="run the rollout controller (promotes or rolls back challengers "
                                               "by their live quality)")
    controller.add_argument("--metrics-port", type=int, default=None,
                            help=f"port for /metrics (default {DEFAULT_METRICS_PORT}; 0 disables)")
    controller.set_defaults(handler=run_controller)


def register_start(verbs: argparse._SubParsersAction) -> None:
    """``driftline models rollout MODEL VERSION``: a challenger beside the serving version."""
    start = verbs.add_parser("rollout", help="put a version beside the serving one on live traffic (shadow or "
                                             "canary) until the rollout controller decides")
    start.add_argument("model")
    start.add_argument("version")
    start.add_argument("--strategy", choices=["shadow", "canary"], default="canary")
    start.add_argument("--share", type=float, default=0.1,
                       help="canary: the share of requests it answers; shadow: the share it also predicts")
    start.add_argument("--margin", type=float, default=0.01,
                       help="tolerated loss (accuracy points; regression: fraction of the champion's MAE)")
    start.add_argument("--confidence", type=float, default=0.95)
    start.add_argument("--min-pairs", type=int, default=200, help="labelled pairs before any decision")
    start.add_argument("--max-pairs", type=int, default=5000, help="the evidence budget: no decision by then "
                                                                  "is a rollback")
    start.add_argument("--timeout", type=int, default=3600, help="seconds; no decision by then is a rollback")
    start.add_argument("--probation", type=int, default=0,
                       help="seconds after a promotion in which a decay alert rolls the version back")
    start.add_argument("--reason", default="rollout started by an operator")
    start.set_defaults(handler=start_rollout)


def start_rollout(args: argparse.Namespace, settings: Settings) -> int:
    from driftline.cli.models_cmd import actor
    from driftline.comparison import Policy
    from driftline.errors import ConfigError
    from driftline.registry import Registry

    try:
        policy = Policy.for_rollout(args.margin, args.confidence, args.min_pairs, args.max_pairs)
    except ValueError as exc:
        raise ConfigError(f"the rollout's policy cannot work: {exc}") from None
    with Registry(settings) as registry:
        record = registry.start_rollout(args.model, args.version, args.strategy, share=args.share, policy=policy,
                                        timeout_s=args.timeout, probation_s=args.probation, reason=args.reason,
                                        actor=actor())
    rollout = record["rollout"]
    print(f"{args.model}: rollout {rollout['id']} of v{args.version} against v{record['version']} "
          f"({args.strategy}, share {args.share:g}); 'driftline rollout' decides")
    return 0


def run_controller(args: argparse.Namespace, settings: Settings) -> int:
    from trainers.rollout import RolloutController

    port = args.metrics_port if args.metrics_port is not None else (settings.metrics_port or DEFAULT_METRICS_PORT)
    stopping = stop_event()
    wait_for_cluster(settings, stopping, "rollout")
    serve_metrics(port)
    log.info("rollout controller started, metrics on :%s", port or "-")
    run_through_outages("rollout", lambda: RolloutController(settings), stopping)
    log.info("rollout controller stopped cleanly")
    return 0
