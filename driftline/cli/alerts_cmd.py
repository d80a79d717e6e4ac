"""``driftline alerts tail``: print alerts readably, optionally following new ones."""

from __future__ import annotations

import argparse
import json
import time

from driftline.alerts import SEVERITIES, AlertSubscriber
from driftline.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("alerts", help="read alerts")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    tail_parser = actions.add_parser("tail", help="print alerts from the alerts topic")
    tail_parser.add_argument("--model", action="append", help="only this model (repeatable)")
    tail_parser.add_argument("--type", action="append", help="only this type, e.g. driftline.drift")
    tail_parser.add_argument("--severity", choices=SEVERITIES, help="minimum severity")
    tail_parser.add_argument("--follow", "-f", action="store_true", help="keep waiting for new alerts")
    tail_parser.add_argument("--json", action="store_true", help="print each alert as its CloudEvent JSON")
    tail_parser.set_defaults(handler=tail)


def tail(args: argparse.Namespace, settings: Settings) -> int:
    shown = 0
    with AlertSubscriber(settings, models=args.model, types=args.type,
                         min_severity=args.severity, poll_timeout=0.5) as subscriber:
        idle_since = time.monotonic()
        while True:
            alert = subscriber.poll()
            if alert is not None:
                shown += 1
                idle_since = time.monotonic()
                print(json.dumps(alert.to_cloudevent()) if args.json else alert.summary(), flush=True)
                continue
            if not args.follow and (subscriber.caught_up() or time.monotonic() - idle_since > 10):
                break
    if not args.json:
        print(f"-- {shown} alert(s)")
    return 0
