"""``driftline broker jars|up|down|status``: the local Kafka broker."""

from __future__ import annotations

import argparse

from driftline.broker import LocalBroker, LocalCluster, broker_down, broker_up
from driftline.broker.cluster import MAX_NODES, recorded_nodes
from driftline.errors import ConfigError
from driftline.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("broker", help="run a local Kafka (KRaft) broker, or a cluster of them")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("jars", help="resolve Kafka's jars through Maven (cached)").set_defaults(handler=jars)
    up_parser = actions.add_parser("up", help="start the broker and wait until it answers")
    up_parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait (default 90)")
    up_parser.add_argument("--brokers", type=int, default=0, metavar="N",
                           help=f"start a local cluster of N nodes (2..{MAX_NODES}; 3 survives one crash); "
                                "default: what was started here last, else 1")
    up_parser.set_defaults(handler=up)
    actions.add_parser("down", help="stop the broker cleanly").set_defaults(handler=down)
    actions.add_parser("status", help="is the broker running, and where").set_defaults(handler=status)


def jars(args: argparse.Namespace, settings: Settings) -> int:
    path = LocalBroker(settings).ensure_jars()
    print(f"Kafka {settings.kafka_version} jars: {path}")
    return 0


def up(args: argparse.Namespace, settings: Settings) -> int:
    if args.brokers < 0 or args.brokers > MAX_NODES:
        raise ConfigError(f"--brokers takes 1 to {MAX_NODES}, got {args.brokers}")
    choice = broker_up(settings, timeout=args.timeout, brokers=args.brokers)
    print(f"Kafka broker ({choice.kind}) ready at {choice.bootstrap}")
    wanted = min(args.brokers, 3)
    if args.brokers > 1 and settings.replication_factor < wanted:
        print(f"topics are replicated {settings.replication_factor}x by your settings; for {wanted}x "
              f"set DRIFTLINE_REPLICATION_FACTOR={wanted} before 'driftline topics'")
    return 0


def down(args: argparse.Namespace, settings: Settings) -> int:
    print("Kafka broker stopped" if broker_down(settings) else "no broker was running")
    return 0


def status(args: argparse.Namespace, settings: Settings) -> int:
    if settings.bootstrap_servers:
        print(f"using the external cluster {settings.bootstrap_servers}")
        return 0
    nodes = recorded_nodes(settings)
    if nodes > 1:
        states = LocalCluster(settings, nodes).status()
        for i, node in enumerate(states, start=1):
            running = f"running (pid {node.pid})" if node.running else "not running"
            print(f"node {i}: {running} at {node.bootstrap}; log {node.log_file}")
        return 0 if all(node.running for node in states) else 1
    state = LocalBroker(settings).status()
    if state.running:
        print(f"running (pid {state.pid}) at {state.bootstrap}; data {state.data_dir}; log {state.log_file}")
        return 0
    print(f"not running; data {state.data_dir}")
    return 1
