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
import contextlib
import json
import logging
import os
import secrets
import signal
import time
from types import FrameType
from typing import Any

from driftline.broker import broker_up
from driftline.errors import ConfigError
from driftline.settings import Settings

DEFAULT_DEADLINE = 240.0
HARD_STOP_GRACE = 60.0  # after the deadline, how long a graceful stop may take before everything is killed


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run the whole loop (drift -> retrain -> swap) on a local broker")
    parser.add_argument("--window", type=float, default=10.0, help="monitor window in seconds (10)")
    parser.add_argument("--stable-seconds", type=float, default=25.0,
                        help="seconds of traffic before the change (25)")
    parser.add_argument("--after-swap", type=float, default=15.0,
                        help="seconds of traffic on the new model before the summary (15)")
    parser.add_argument("--rate", type=float, default=150.0, help="requests per second (150)")
    parser.add_argument("--nodes", type=int, default=2, help="serving nodes (2)")
    parser.add_argument("--scenario", choices=["default", "bad-candidate"], default="default",
                        help="default: the world changes and the retrained model is rolled out; bad-candidate: "
                             "a candidate that passes offline validation is worse live and is rolled back")
    parser.add_argument("--rollout", choices=["replace", "shadow", "canary"], default="canary",
                        help="how the retrained model reaches traffic (canary: half of the requests, then the "
                             "rollout controller decides)")
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE,
                        help=f"seconds after which the demo stops whatever happened and fails ({DEFAULT_DEADLINE:g})")
    parser.add_argument("--json-file", help="write the summary to this file as one JSON object")
    parser.add_argument("--hold", type=float, default=0.0,
                        help="keep every service running this many seconds after the summary")
    parser.set_defaults(handler=run)


def say(tag: str, text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} [{tag:<8}] {text}", flush=True)


class Interrupted(Exception):
    """A signal or the deadline ended the demo outside its traffic phase."""


class StopControl:
    """Ctrl-C, SIGTERM and the deadline turned into one graceful stop; a second signal kills at once.

    During the traffic phase a stop is a request the loop honours within a
    quarter second, so the summary is still written; during set-up an
    :class:`Interrupted` raised in the main thread unwinds to the ``finally``
    that stops every service; while services are being stopped nothing is
    raised. The deadline is ``SIGALRM``; if the graceful stop it asks for has
    not finished ``HARD_STOP_GRACE`` seconds later, the next alarm kills
    every service and exits.
    """

    def __init__(self, loop: Any, deadline_s: float) -> None:
        self.loop = loop
        self.signals = 0
        self.stopping = False
        self._deadline_s = deadline_s
        self._deadline_passed = False
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        self._previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_alarm)
        signal.setitimer(signal.ITIMER_REAL, deadline_s)

    def _stop(self, reason: str) -> None:
        self.loop.request_stop(reason)
        if not self.loop.in_traffic and not self.stopping:
            raise Interrupted(reason)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals > 1:
            say("stop", f"second {name}: killing every service now")
            self.loop.kill_services()
            os._exit(130)
        say("stop", f"{name}: stopping gracefully (again to kill at once)")
        self._stop(f"interrupted by {name}")

    def _on_alarm(self, _signum: int, _frame: FrameType | None) -> None:
        if self._deadline_passed:
            say("stop", "the graceful stop took too long: killing every service")
            self.loop.kill_services()
            os._exit(1)
        self._deadline_passed = True
        signal.setitimer(signal.ITIMER_REAL, HARD_STOP_GRACE)
        self._stop(f"the demo's deadline of {self._deadline_s:g} s passed")

    def close(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from driftline.demo.loop import Loop, Scenario, print_summary
    from driftline.demo.simulator import Traffic

    if min(args.window, args.stable_seconds, args.after_swap, args.rate) <= 0 or args.nodes < 1:
        raise ConfigError("--window, --stable-seconds, --after-swap and --rate must be positive, --nodes >= 1")
    if args.hold < 0 or args.deadline <= 0:
        raise ConfigError("--hold must be 0 or more seconds and --deadline more than 0")
    started = time.time()
    deadline_at = started + args.deadline
    choice = broker_up(settings)
    settings = settings.replace(bootstrap_servers=choice.bootstrap,
                                topic_prefix=f"{settings.topic_prefix}demo{int(time.time())}.",
                                window_seconds=args.window, grace_seconds=max(0.5, args.window / 10),
                                signing_key=settings.signing_key or secrets.token_hex(16))
    say("broker", f"{choice.kind} Kafka at {choice.bootstrap}; topics under {settings.topic_prefix}")
    scenario = Scenario(window=args.window, stable=args.stable_seconds, after_swap=args.after_swap,
                        nodes=args.nodes, traffic=Traffic(rate=args.rate), name=args.scenario, rollout=args.rollout)
    loop = Loop(settings, scenario, say)
    control = StopControl(loop, max(1.0, deadline_at - time.time()))
    summary: dict[str, Any]
    try:
        try:
            loop.prepare()
            loop.start_services()
            say("traffic", f"{args.rate:g} requests/s over HTTP, labels {scenario.traffic.label_delay:g}s later; "
                           f"the world changes in {args.stable_seconds:g}s; deadline {args.deadline:g}s")
            summary = loop.run(deadline_at)
        except Interrupted as exc:
            summary = loop.unfinished_summary(str(exc))
        except Exception as exc:  # the summary says what broke; the services still stop below
            logging.getLogger(__name__).exception("the demo failed")
            summary = loop.unfinished_summary(f"{type(exc).__name__}: {exc}")
        summary["elapsed_s"] = round(time.time() - started, 1)
        if "accuracy_stale" in summary:
            print_summary(summary, say)
        else:
            say("summary", f"loop closed  NO: {summary['reason']}")
        if args.json_file:
            with open(args.json_file, "w") as out:
                json.dump(summary, out, indent=2)
            say("summary", f"written to {args.json_file}")
        if args.hold and summary["ok"]:
            signal.setitimer(signal.ITIMER_REAL, 0)  # the hold is bounded by itself
            say("hold", f"services stay up for {args.hold:g}s: open {loop.console_url}, or try  "
                        f"curl {loop.urls[0]}/v2/models/loans  or  "
                        f"DRIFTLINE_TOPIC_PREFIX={settings.topic_prefix} driftline models list")
            with contextlib.suppress(Interrupted):
                time.sleep(args.hold)
    finally:
        control.stopping = True
        codes = loop.stop_services()
        control.close()
        say("stop", ", ".join(f"{name} exit {code}" for name, code in codes.items()))
    return 0 if summary["ok"] else 1
