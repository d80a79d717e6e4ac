"""``driftline trainer`` (the retraining service) and ``driftline retrain`` (an operator's trigger)."""

from __future__ import annotations

import argparse
import logging
import uuid

from driftline.alerts import Alert
from driftline.cli.service import run_through_outages, serve_metrics, stop_event, wait_for_cluster
from driftline.control import ControlPublisher
from driftline.errors import ConfigError
from driftline.settings import Settings

DEFAULT_METRICS_PORT = 9465
log = logging.getLogger("driftline.trainer")


def register(sub: argparse._SubParsersAction) -> None:
    trainer = sub.add_parser("trainer", help="run the retraining service (alerts in, validated models out)")
    trainer.add_argument("model_files", nargs="+", metavar="MODEL_FILE", help="model files (YAML/TOML)")
    trainer.add_argument("--metrics-port", type=int, default=None,
                         help=f"port for /metrics (default {DEFAULT_METRICS_PORT}; 0 disables)")
    trainer.set_defaults(handler=run_trainer)

    retrain = sub.add_parser("retrain", help="ask the trainer to retrain a model now")
    retrain.add_argument("model")
    retrain.add_argument("--reason", default="operator request", help="recorded with the run")
    retrain.set_defaults(handler=request_retrain)


def run_trainer(args: argparse.Namespace, settings: Settings) -> int:
    from driftline.runtime import cap_malloc_arenas
    from trainers.modelfile import load_model_config
    from trainers.service import Trainer

    cap_malloc_arenas()  # before any client's threads: its memory then stays flat from run to run

    configs = [load_model_config(path) for path in args.model_files]
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError("two model files declare the same model name")
    if not (settings.signing_key or settings.signing_key_file):
        raise ConfigError("the trainer signs what it publishes: set DRIFTLINE_SIGNING_KEY_FILE (an Ed25519 "
                          "private key: 'driftline keys create DIR') or DRIFTLINE_SIGNING_KEY (an HMAC secret)")
    port = args.metrics_port if args.metrics_port is not None else (settings.metrics_port or DEFAULT_METRICS_PORT)
    stopping = stop_event()
    wait_for_cluster(settings, stopping, "trainer")
    serve_metrics(port)
    log.info("trainer started for %s, metrics on :%s", ", ".join(names), port or "-")
    run_through_outages("trainer", lambda: Trainer(settings, configs), stopping)
    log.info("trainer stopped cleanly")
    return 0


def request_retrain(args: argparse.Namespace, settings: Settings) -> int:
    from trainers.service import COMMAND_TYPE

    alert = Alert.create(COMMAND_TYPE, args.model, severity="info", source="/driftline/cli",
                         identity=(uuid.uuid4().hex,),
                         data={"message": f"operator asked to retrain {args.model}: {args.reason}",
                               "reason": args.reason})
    ControlPublisher(settings).publish_alert(alert)
    print(f"retrain of {args.model} requested (trigger {alert.id})")
    return 0
