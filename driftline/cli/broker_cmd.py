"""``driftline broker jars|up|down|status``: the local Kafka broker."""

from __future__ import annotations

import argparse

from driftline.broker import LocalBroker, broker_down, broker_up
from driftline.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("broker", help="run a local single-node Kafka (KRaft) broker")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("jars", help="resolve Kafka's jars through Maven (cached)").set_defaults(handler=jars)
    up_parser = actions.add_parser("up", help="start the broker and wait until it answers")
    up_parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait (default 90)")
    up_parser.set_defaults(handler=up)
    actions.add_parser("down", help="stop the broker cleanly").set_defaults(handler=down)
    actions.add_parser("status", help="is the broker running, and where").set_defaults(handler=status)


def jars(args: argparse.Namespace, settings: Settings) -> int:
    path = LocalBroker(settings).ensure_jars()
    print(f"Kafka {settings.kafka_version} jars: {path}")
    return 0


def up(args: argparse.Namespace, settings: Settings) -> int:
    choice = broker_up(settings, timeout=args.timeout)
    print(f"Kafka broker ({choice.kind}) ready at {choice.bootstrap}")
    return 0


def down(args: argparse.Namespace, settings: Settings) -> int:
    print("Kafka broker stopped" if broker_down(settings) else "no broker was running")
    return 0


def status(args: argparse.Namespace, settings: Settings) -> int:
    if settings.bootstrap_servers:
        print(f"using the external cluster {settings.bootstrap_servers}")
        return 0
    state = LocalBroker(settings).status()
    if state.running:
        print(f"running (pid {state.pid}) at {state.bootstrap}; data {state.data_dir}; log {state.log_file}")
        return 0
    print(f"not running; data {state.data_dir}")
    return 1
