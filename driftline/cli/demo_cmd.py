"""``driftline demo``: the whole loop on this machine, in about two minutes.

It starts the local broker, creates a fresh set of topics, publishes a
reference profile and a first model (river's Agrawal loan applications),
starts a monitor, a trainer and two serving nodes as separate processes,
then plays an application that asks the nodes for predictions over HTTP
and sends labels two seconds later. At an announced time the world changes
(a concept drift and a covariate shift); the terminal shows the loop react:
alerts, the retraining run, the new version, the swap on every node and the
accuracy coming back. It exits 0 only if the loop closed.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time

from driftline.broker import broker_up
from driftline.errors import ConfigError
from driftline.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run the whole loop (drift -> retrain -> swap) on a local broker")
    parser.add_argument("--window", type=float, default=10.0, help="monitor window in seconds (10)")
    parser.add_argument("--stable-seconds", type=float, default=25.0,
                        help="seconds of traffic before the change (25)")
    parser.add_argument("--after-swap", type=float, default=15.0,
                        help="seconds of traffic on the new model before the summary (15)")
    parser.add_argument("--rate", type=float, default=150.0, help="requests per second (150)")
    parser.add_argument("--nodes", type=int, default=2, help="serving nodes (2)")
    parser.add_argument("--json-file", help="write the summary to this file as one JSON object")
    parser.add_argument("--hold", type=float, default=0.0,
                        help="keep every service running this many seconds after the summary")
    parser.set_defaults(handler=run)


def say(tag: str, text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} [{tag:<8}] {text}", flush=True)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from driftline.demo.loop import Loop, Scenario, print_summary
    from driftline.demo.simulator import Traffic

    if min(args.window, args.stable_seconds, args.after_swap, args.rate) <= 0 or args.nodes < 1:
        raise ConfigError("--window, --stable-seconds, --after-swap and --rate must be positive, --nodes >= 1")
    if args.hold < 0:
        raise ConfigError("--hold must be 0 or more seconds")
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the story
    choice = broker_up(settings)
    settings = settings.replace(bootstrap_servers=choice.bootstrap,
                                topic_prefix=f"{settings.topic_prefix}demo{int(time.time())}.",
                                window_seconds=args.window, grace_seconds=max(0.5, args.window / 10),
                                signing_key=settings.signing_key or secrets.token_hex(16))
    say("broker", f"{choice.kind} Kafka at {choice.bootstrap}; topics under {settings.topic_prefix}")
    scenario = Scenario(window=args.window, stable=args.stable_seconds, after_swap=args.after_swap,
                        nodes=args.nodes, traffic=Traffic(rate=args.rate))
    loop = Loop(settings, scenario, say)
    try:
        loop.prepare()
        loop.start_services()
        say("traffic", f"{args.rate:g} requests/s over HTTP, labels {scenario.traffic.label_delay:g}s later; "
                       f"the world changes in {args.stable_seconds:g}s")
        summary = loop.run()
        print_summary(summary, say)
        if args.json_file:
            with open(args.json_file, "w") as out:
                json.dump(summary, out, indent=2)
            say("summary", f"written to {args.json_file}")
        if args.hold:
            say("hold", f"services stay up for {args.hold:g}s: try  curl {loop.urls[0]}/v2/models/loans  or  "
                        f"DRIFTLINE_TOPIC_PREFIX={settings.topic_prefix} driftline models list")
            time.sleep(args.hold)
    finally:
        codes = loop.stop_services()
        say("stop", ", ".join(f"{name} exit {code}" for name, code in codes.items()))
    return 0 if summary["ok"] else 1
