"""``driftline``: the one command operators use.

Each subcommand lives in its own module and registers itself here. Errors a
user can fix (:class:`~driftline.errors.DriftlineError`, contract errors) are
printed as one sentence and exit with status 2; usage errors too (argparse).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from confluent_kafka import KafkaException

from driftline.cli import (
    alerts_cmd,
    broker_cmd,
    config_cmd,
    demo_cmd,
    keys_cmd,
    models_cmd,
    monitor_cmd,
    notify_cmd,
    profile_cmd,
    report_cmd,
    rollout_cmd,
    runs_cmd,
    serve_cmd,
    topics_cmd,
    trainer_cmd,
    ui_cmd,
)
from driftline.errors import BrokerError, DriftlineError
from driftline.kafka_clients import forget_refusal, refusal
from driftline.processes import die_with_parent_from_env
from driftline.settings import load_settings
from schemas.errors import ContractError, RegistryUnavailable

COMMANDS = (broker_cmd, topics_cmd, config_cmd, profile_cmd, report_cmd, monitor_cmd, trainer_cmd, models_cmd, runs_cmd,
            rollout_cmd, serve_cmd, alerts_cmd, notify_cmd, demo_cmd, keys_cmd, ui_cmd)
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftline",
        description="Monitor, retrain and serve ML models on Apache Kafka.",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (default: ./driftline.toml)")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    die_with_parent_from_env()  # a service started by the demo or a test never outlives its owner
    parser = build_parser()
    args = parser.parse_args(argv)
    forget_refusal()  # a refusal of an earlier command in this process (a test's, a notebook's) is not this one's
    try:
        settings = load_settings(args.config, log_level=args.log_level)
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        return int(args.handler(args, settings) or 0)
    except (DriftlineError, ContractError) as exc:
        # Only a failure to reach the cluster is explained by a refusal of our credentials: a bad config
        # value or file is itself the error, whatever a client met before.
        blamed = refusal() if isinstance(exc, BrokerError) else None
        print(f"driftline: error: {blamed or exc}", file=sys.stderr)
        return EXIT_USAGE
    except RegistryUnavailable as exc:  # nothing was committed past it: a restart resumes where it stopped
        print(f"driftline: error: {exc}", file=sys.stderr)
        return 1
    except KafkaException as exc:
        print(f"driftline: error: {refusal() or 'Kafka said ' + exc.args[0].str()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`driftline check ... | head`): not an error of ours. Point stdout at
        # /dev/null so the interpreter's final flush does not raise a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
