"""``driftline config show``: the effective settings, secrets masked."""

from __future__ import annotations

import argparse
import json

from driftline.kafka_clients import bootstrap_servers
from driftline.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="inspect settings")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the effective settings (secrets masked)")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(handler=show_settings)


def show_settings(args: argparse.Namespace, settings: Settings) -> int:
    values = settings.masked()
    values["effective_bootstrap"] = bootstrap_servers(settings)
    if args.json:
        print(json.dumps(values, indent=2, sort_keys=True))
        return 0
    width = max(len(k) for k in values)
    for key, value in values.items():
        print(f"{key:<{width}}  {value}")
    return 0
