"""``driftline topics create|list``."""

from __future__ import annotations

import argparse

from driftline.settings import Settings
from driftline.topics import create_topics, list_topics


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("topics", help="create or list driftline's topics")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create_parser = actions.add_parser("create", help="create every driftline topic (idempotent)")
    create_parser.set_defaults(handler=create)
    actions.add_parser("list", help="driftline topics with partition counts").set_defaults(handler=list_)


def create(args: argparse.Namespace, settings: Settings) -> int:
    for name, outcome in sorted(create_topics(settings).items()):
        print(f"{outcome:8} {name}")
    return 0


def list_(args: argparse.Namespace, settings: Settings) -> int:
    topics = list_topics(settings)
    if not topics:
        print(f"no topics under the prefix {settings.topic_prefix!r}; run 'driftline topics create'")
        return 1
    for name, partitions in topics.items():
        print(f"{name:32} {partitions} partition(s)")
    return 0
