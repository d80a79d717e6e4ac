"""The whole loop on one machine: broker, topics, reference, v1, monitor, trainer, serving nodes, traffic.

``run_loop`` is what ``driftline demo`` runs, what ``bench/loop.py``
measures and what the end-to-end and chaos tests assert on. The services are
real child processes started with the one CLI; the application talks to
the nodes over HTTP (Open Inference Protocol) and sends labels after a
delay. The loop *closes* when the change is detected, a retrained model is
validated, published and served by every node, and its accuracy on the
changed stream beats the stale model's.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from driftline.client import http_get
from driftline.control import publish_once
from driftline.demo.observer import Observer
from driftline.demo.services import Service
from driftline.demo.simulator import Application, Traffic
from driftline.settings import Settings
from driftline.synthetic import agrawal
from driftline.topics import create_topics

MODEL = "loans"


def distinct_ports(count: int) -> list[int]:
    """``count`` free ports, all different: each is held open until all are chosen (asking the OS one
    at a time can hand the same port back twice, and one service then fails to bind)."""
    import socket

    held = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


@dataclass
class Scenario:
    window: float = 10.0
    stable: float = 25.0  # seconds of traffic before the change
    after_swap: float = 15.0  # seconds of traffic on the new model before the summary
    deadline: float = 120.0  # seconds after the change by which the loop must have closed
    rate_tolerance: float = 0.05  # the application must hold its rate within this fraction
    nodes: int = 2
    traffic: Traffic = field(default_factory=Traffic)
    emit: str = "async"  # the nodes' prediction-event mode ("ack" for the chaos test)
    chaos: bool = False  # SIGKILL the monitor and one node after the change, then restart them
    reference_rows: int = 4000
    rollout: str = "canary"  # how a retrained model reaches traffic: replace | shadow | canary
    rollout_share: float = 0.5
    # "bad-candidate": the world does not change; a candidate trained by an offline pipeline that fills
    # age in months (the live one sends years) passes offline validation and is worse live
    name: str = "default"

    @property
    def bad_candidate(self) -> bool:
        return self.name == "bad-candidate"


def model_file(path: Path, scenario: Scenario) -> Path:
    """The demo model: what a team would declare (YAML-compatible JSON)."""
    label_delay = scenario.traffic.label_delay
    path.write_text(json.dumps({
        "name": MODEL, "pipeline": "adaptive_random_forest", "params": {"n_models": 10},
        "label_delay": f"{label_delay}s", "training_window": f"{scenario.window * 2:g}s",
        "train_since_change": True,
        "holdout_fraction": 0.25, "promotion": "auto",
        "validation": {"floors": {"accuracy": 0.6}, "max_regression": 0.0, "max_latency_p99_ms": 50,
                       "min_holdout_rows": 100},
        "trigger": {"on": ["drift", "decay"], "debounce": f"{scenario.window:g}s", "cooldown": "60s",
                    "min_new_labels": 500},
        # a challenger decided on ~150 labelled pairs when it is clearly better or worse; 60 s at most
        "rollout": {"strategy": scenario.rollout, "share": scenario.rollout_share, "margin": 0.02,
                    "min_pairs": 150, "max_pairs": 4000, "timeout": "60s"}}, indent=2))
    return path


def months_pipeline(rows: int, seed: int) -> Any:
    """The bad candidate's training data: Agrawal rows whose age an offline pipeline wrote in months."""
    from schemas import Table

    columns, labels = agrawal(rows, function=0, seed=seed)
    columns = {**columns, "age": columns["age"] * 12.0}
    return Table({**columns, "label": labels.astype(np.int64)}, {**{n: "float" for n in columns}, "label": "int"})


def rollout_decision(observer: Observer, since: float | None) -> tuple[float, dict[str, Any]] | None:
    """The first rollout decision (promote or rollback record) seen after ``since``, with when it was seen."""
    for at, deployment in observer.deployments():
        rollout = deployment.get("rollout")
        if since is not None and at >= since and rollout and rollout["state"] != "running":
            return at, deployment
    return None


def scrape(url: str, metric: str) -> float:
    """Sum of a Prometheus counter on a /metrics page (0 when absent or unreachable)."""
    status, text = http_get(url, timeout=2)
    if status != 200:
        return math.nan
    return sum(float(m.group(1)) for m in re.finditer(rf"^{metric}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M))


class Loop:
    def __init__(self, settings: Settings, scenario: Scenario, say: Callable[[str, str], None]) -> None:
        self.settings = settings
        self.scenario = scenario
        self.say = say
        if scenario.bad_candidate:  # the world does not change: only the candidate is wrong
            scenario.traffic = dataclasses.replace(scenario.traffic, drift_function=scenario.traffic.function,
                                                   salary_scale=1.0)
        self.dir = Path(settings.state_dir) / "demo" / settings.topic_prefix.strip(".")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.services: dict[str, Service] = {}
        *self.ports, self.metrics_port, console_port = distinct_ports(scenario.nodes + 2)
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.console_url = f"http://localhost:{console_port}/"
        self.stop_reason: str | None = None  # why the run was asked to end early (a signal, the deadline)
        self.in_traffic = False
        self.app: Application | None = None
        self.observer: Observer | None = None

    def request_stop(self, reason: str) -> None:
        """End the run early and gracefully: traffic stops, the summary says why (safe from any thread)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    # ------------------------------------------------------------ set-up
    def prepare(self) -> None:
        from schemas import Table
        from streams.drift.profile import Profile
        from trainers.dataset import from_table
        from trainers.job import TrainingJob, Trigger
        from trainers.modelfile import load_model_config

        create_topics(self.settings)
        columns, labels = agrawal(self.scenario.reference_rows, function=self.scenario.traffic.function, seed=1)
        table = Table(dict(columns), {n: "float" for n in columns})
        config = load_model_config(model_file(self.dir / "loans.model.json", self.scenario))
        labelled = Table({**columns, "label": labels.astype(np.int64)}, {**table.types, "label": "int"})
        run = TrainingJob(self.settings, config).run(Trigger("demo-init", "init", "the demo's first model"),
                                                      dataset=from_table(labelled, "label"))
        if run["status"] != "published":
            raise RuntimeError(f"the first model was not published: {run['reason']}")
        accuracy = run["candidate_metrics"]["accuracy"]
        profile = Profile.build(table, MODEL, source="river Agrawal(seed=1)")
        profile.metrics = {"accuracy": accuracy}
        publish_once(self.settings, "profiles", MODEL.encode(), profile.to_bytes())
        self.say("setup", f"reference: {table.rows} rows of Agrawal(function {self.scenario.traffic.function}); "
                          f"profile and {MODEL} v1 published (holdout accuracy {accuracy:.3f})")

    def start_services(self) -> None:
        window, grace = self.scenario.window, max(0.5, self.scenario.window / 10)
        self.services["monitor"] = Service(
            "monitor", ["monitor", "--window", f"{window:g}", "--grace", f"{grace:g}", "--idle", "3",
                        "--instance", "demo", "--metrics-port", str(self.metrics_port)],
            self.settings, self.dir, health_url=f"http://127.0.0.1:{self.metrics_port}/metrics")
        self.services["trainer"] = Service("trainer", ["trainer", str(self.dir / "loans.model.json"),
                                                       "--metrics-port", "0"], self.settings, self.dir)
        self.services["rollout"] = Service("rollout", ["rollout", "--metrics-port", "0"], self.settings, self.dir)
        for i, port in enumerate(self.ports):
            self.services[f"node{i + 1}"] = Service(
                f"node{i + 1}", ["serve", "--port", str(port), "--node-id", f"node{i + 1}", "--emit",
                                 self.scenario.emit], self.settings, self.dir,
                health_url=f"http://127.0.0.1:{port}/v2/health/ready")
        console_port = self.console_url.rstrip("/").rsplit(":", 1)[1]
        self.services["console"] = Service("console", ["ui", "--port", console_port], self.settings, self.dir,
                                           health_url=f"http://127.0.0.1:{console_port}/healthz")
        for service in self.services.values():
            service.start()
        for service in self.services.values():
            service.wait_healthy()
        self.say("services", f"monitor (windows of {window:g}s), trainer, rollout controller "
                             f"({self.scenario.rollout}), {len(self.ports)} serving nodes at "
                             + ", ".join(self.urls) + f"; logs in {self.dir}")
        self.say("services", f"console: {self.console_url}  (open it in a browser: models, windows, alerts, runs)")

    def stop_services(self) -> dict[str, int | None]:
        return {name: service.stop() for name, service in self.services.items()}

    def kill_services(self) -> None:
        """SIGKILL every service's group at once (a second Ctrl-C: the user wants out now)."""
        for service in self.services.values():
            service.kill()

    def process_groups(self) -> list[int]:
        """Every process group any of this loop's services has had (for the no-orphans checks)."""
        return [pgid for service in self.services.values() for pgid in service.pgids]

    # ------------------------------------------------------------ the run
    async def _chaos(self, app: Application) -> None:
        assert app.drift_at is not None
        await asyncio.sleep(max(0.0, app.drift_at + 3 - time.time()))
        victims = [self.services["monitor"], self.services[f"node{len(self.ports)}"]]
        for service in victims:
            service.kill()
        self.say("chaos", "SIGKILL: monitor and " + victims[1].name)
        await asyncio.sleep(3)
        for service in victims:
            service.start()
        self.say("chaos", "restarted monitor and " + victims[1].name)

    async def _traffic(self, app: Application, observer: Observer, deadline_at: float) -> dict[str, Any]:
        stop = asyncio.Event()
        started = time.time()
        app.drift_at = started + self.scenario.stable
        hard_end = min(app.drift_at + self.scenario.deadline, deadline_at)
        runner = asyncio.create_task(app.run(hard_end, stop))
        chaos = asyncio.create_task(self._chaos(app)) if self.scenario.chaos else None
        announced = False
        candidate: asyncio.Task | None = None
        swapped_at: float | None = None
        next_status = time.time() + 5
        while not runner.done():
            await asyncio.sleep(0.25)
            now = time.time()
            if self.stop_reason is not None:
                stop.set()
            if not announced and now >= app.drift_at:
                announced = True
                if self.scenario.bad_candidate:
                    self.say("change", "an offline pipeline trains a candidate with age in months (live: years)")
                    candidate = asyncio.create_task(asyncio.to_thread(self._publish_bad_candidate))
                else:
                    self.say("change", f"concept: Agrawal function {app.traffic.function} -> "
                                       f"{app.traffic.drift_function}; covariates: salary "
                                       f"x{app.traffic.salary_scale}")
            decision = rollout_decision(observer, app.drift_at)
            if self.scenario.bad_candidate and decision is not None and now >= decision[0] + 4:
                stop.set()
            version = self._new_version(observer)
            firsts = [app.first_answer(u, version) for u in self.urls] if version else []
            answered = [t for t in firsts if t is not None]
            if swapped_at is None and answered and len(answered) == len(self.urls):
                swapped_at = max(answered)
                self.say("swap", f"every node answers with v{version} "
                                 f"({swapped_at - app.drift_at:.1f}s after the change)")
            if swapped_at is not None and now >= swapped_at + self.scenario.after_swap:
                stop.set()
            if now >= next_status:
                next_status = now + 5
                self._status(app, observer, started)
        await runner
        if chaos is not None:
            chaos.cancel()
        if candidate is not None:
            await candidate
        closed = rollout_decision(observer, app.drift_at) if self.scenario.bad_candidate else swapped_at
        if closed is None and self.stop_reason is None:
            self.request_stop(f"the loop did not close within {hard_end - app.drift_at:.0f} s of the change")
        return {"swapped_at": swapped_at}

    def _publish_bad_candidate(self) -> None:
        """What the trainer would do with an offline pipeline's data: validate (it passes: on the offline
        holdout the champion is the one that looks wrong) and release it through the model file's rollout."""
        from trainers.dataset import from_table
        from trainers.job import TrainingJob, Trigger
        from trainers.modelfile import load_model_config

        table = months_pipeline(2000, seed=7)
        config = load_model_config(self.dir / "loans.model.json")
        run = TrainingJob(self.settings, config).run(
            Trigger("demo-bad-candidate", "operator", "an offline pipeline's candidate (age in months)"),
            dataset=from_table(table, "label"))
        self.say("candidate", f"offline candidate {run['status']}"
                              + (f" as v{run['candidate_version']}" if run["candidate_version"] else "")
                              + f": {run['reason']}")

    @staticmethod
    def _new_version(observer: Observer) -> str | None:
        published = [run for _, run in observer.published() if run["trigger_type"] != "init"]
        return published[0]["candidate_version"] if published else None

    def _status(self, app: Application, observer: Observer, started: float) -> None:
        answered = [r for r in app.records if r.answer.status == 200]
        recent = [r for r in answered[-int(app.traffic.rate * 12):] if r.answer.finished >= time.time() - 10]
        accuracy = np.mean([(r.answer.classes[0] == "1") == r.truth for r in recent]) if recent else math.nan
        versions = sorted({r.answer.version for r in recent})
        failed = len(app.records) - len(answered)
        self.say("status", f"+{time.time() - started:5.1f}s  {len(app.records)} requests ({failed} failed, "
                           f"{app.load.busy}+{app.load.late} behind schedule), "
                           f"{app.labels_sent} labels, {observer.windows} windows closed, "
                           f"accuracy (last 10 s) {accuracy:.3f} from v{'/v'.join(versions) or '-'}")

    def run(self, deadline_at: float = math.inf) -> dict[str, Any]:
        """Play the application until the loop closed and settled, ``deadline_at`` (wall time) or a stop."""
        observer = Observer(self.settings, self.say)
        observer.start()
        app = Application(self.settings, self.urls, self.scenario.traffic)
        self.app, self.observer = app, observer
        self.in_traffic = True
        try:
            outcome = asyncio.run(self._traffic(app, observer, deadline_at))
            time.sleep(1.0)  # the last alerts and records reach the observer
        finally:
            self.in_traffic = False
            observer.stop()
        return self.summary(app, observer, outcome["swapped_at"])

    def unfinished_summary(self, reason: str) -> dict[str, Any]:
        """The summary of a run that ended before its traffic did (set-up failed, interrupted, deadline)."""
        if self.app is not None and self.observer is not None:
            summary = self.summary(self.app, self.observer, None)
        else:
            summary = {"ok": False, "requests": 0, "failed_requests": 0, "topic_prefix": self.settings.topic_prefix}
        summary["ok"] = False
        summary["reason"] = reason
        return summary

    def summary(self, app: Application, observer: Observer, swapped_at: float | None) -> dict[str, Any]:
        drift_at = app.drift_at or 0.0
        alerts = [(t, a) for t, a in observer.alerts() if t >= drift_at and a.type != "driftline.command.retrain"]
        published = [(t, r) for t, r in observer.published() if r["trigger_type"] != "init"]
        version = published[0][1]["candidate_version"] if published else None
        stale = app.accuracy(version="1", drifted=True)
        after = app.accuracy(version=version, drifted=True) if version else math.nan
        answered = [r for r in app.records if r.answer.status == 200]
        monitored = scrape(f"http://127.0.0.1:{self.metrics_port}/metrics", "driftline_monitor_rows_total")
        dead = scrape(f"http://127.0.0.1:{self.metrics_port}/metrics", "driftline_monitor_dead_lettered_total")
        versions = sorted({r.answer.version for r in answered}, key=lambda v: (len(v), v))
        asked = app.traffic.rate
        summary: dict[str, Any] = {
            "ok": False,
            "drift_injected_at": round(drift_at, 3),
            "first_alert_s": round(alerts[0][0] - drift_at, 2) if alerts else None,
            "first_alert": alerts[0][1].message if alerts else None,
            "alert_types": sorted({a.type for _, a in alerts}),
            "drifted_features": sorted({f for _, a in alerts for f in a.features}),
            "published_s": round(published[0][0] - drift_at, 2) if published else None,
            "swapped_all_nodes_s": round(swapped_at - drift_at, 2) if swapped_at else None,
            "accuracy_stale": round(stale, 4),
            "accuracy_after": round(after, 4),
            "requests": len(app.records),
            "failed_requests": len(app.records) - len(answered),
            "failures": dict(collections.Counter(f"{r.answer.status} {r.answer.error[:120]}" for r in app.records
                                                 if r.answer.status != 200).most_common(3)),
            "rate_asked": asked,
            "rate_held": round(app.load.rate, 2),
            "behind_schedule": app.load.behind_schedule,
            "behind_schedule_busy": app.load.busy,
            "behind_schedule_late": app.load.late,
            "events_produced": len(answered) + app.labels_sent,
            "events_monitored": int(monitored) if not math.isnan(monitored) else None,
            "dead_lettered": int(dead) if not math.isnan(dead) else None,
            "serving_url": self.urls[0],
            "serving_urls": self.urls,
            "model_versions": versions,
            "topic_prefix": self.settings.topic_prefix,
            "run_id": published[0][1]["run_id"] if published else None,
        }
        decision = rollout_decision(observer, drift_at)
        promoted = decision if decision is not None and decision[1]["action"] == "promote" else None
        rolled_back = decision if decision is not None and decision[1]["action"] == "rollback" else None
        summary.update({
            "scenario": self.scenario.name,
            "rollout": self.scenario.rollout,
            "promoted_s": round(promoted[0] - drift_at, 2) if promoted else None,
            "rolled_back": rolled_back is not None,
            "rolled_back_s": round(rolled_back[0] - drift_at, 2) if rolled_back else None,
            "rollout_evidence": json.loads(decision[1]["rollout"]["evidence"] or "{}") if decision else None,
            "accuracy_champion_end": round(app.accuracy(version="1", since=time.time() - 5), 4),
        })
        reasons = []
        if self.stop_reason is not None:
            reasons.append(self.stop_reason)
        if self.scenario.bad_candidate:
            if not published:
                reasons.append("the offline candidate was not published")
            elif rolled_back is None:
                reasons.append("the bad candidate was not rolled back")
            late = [r for r in answered if r.answer.started >= (rolled_back[0] + 2 if rolled_back else math.inf)]
            if any(r.answer.version != "1" for r in late):
                reasons.append("a node still answered with the candidate after its rollback")
        else:
            if not alerts:
                reasons.append("no alert after the change")
            if not published:
                reasons.append("no retrained model was published")
            elif self.scenario.rollout != "replace" and promoted is None:
                reasons.append("the retrained model's rollout did not promote it")
            elif not swapped_at:
                reasons.append("the new model did not answer on every node")
            if published and not after > stale:
                reasons.append(f"the new model's accuracy {after:.3f} did not beat the stale one's {stale:.3f}")
        if summary["failed_requests"]:
            reasons.append(f"{summary['failed_requests']} request(s) failed")
        if abs(app.load.rate - asked) > self.scenario.rate_tolerance * asked:
            reasons.append(f"the application held {app.load.rate:.1f} requests/s, not {asked:g} "
                           f"(+/-{self.scenario.rate_tolerance:.0%})")
        summary["ok"] = not reasons
        summary["reason"] = "; ".join(reasons) or None
        return summary


def _rollout_line(summary: dict[str, Any]) -> str:
    evidence = summary.get("rollout_evidence") or {}
    pairs = f" on {evidence['pairs']} labelled pairs (v{evidence['challenger_version']} {evidence['challenger']:.3f} " \
            f"vs v{evidence['champion_version']} {evidence['champion']:.3f})" if evidence.get("pairs") else ""
    if summary.get("promoted_s") is not None:
        return f"{summary['rollout']}: promoted {summary['promoted_s']} s after the change{pairs}"
    if summary.get("rolled_back"):
        return f"{summary['rollout']}: rolled back {summary['rolled_back_s']} s after the change{pairs}"
    return f"{summary.get('rollout')}: no decision"


def print_summary(summary: dict[str, Any], say: Callable[[str, str], None]) -> None:
    if summary.get("scenario") == "bad-candidate":
        rows = [("candidate published", f"{summary['published_s']} s after the offline run started"),
                ("rollout", _rollout_line(summary).replace("after the change", "after the offline run started")),
                ("live accuracy", f"champion v1 {summary['accuracy_stale']:.3f}, candidate v2 "
                                  f"{summary['accuracy_after']:.3f} (on the requests it answered)"),
                ("answering at the end", f"v1 (accuracy {summary['accuracy_champion_end']:.3f}, last 5 s)")]
    else:
        rows = [("drift detected (first alert)", f"{summary['first_alert_s']} s after the change"),
                ("drifted features", ", ".join(summary["drifted_features"]) or "-"),
                ("new model published", f"{summary['published_s']} s after the change"),
                ("rollout", _rollout_line(summary)),
                ("served by every node", f"{summary['swapped_all_nodes_s']} s after the change"),
                ("accuracy on the changed stream", f"stale v1 {summary['accuracy_stale']:.3f} -> "
                                                   f"new {summary['accuracy_after']:.3f}"),
                ("events produced / monitored rows", f"{summary['events_produced']} / {summary['events_monitored']}"),
                ("dead-lettered", str(summary["dead_lettered"])),
                ("model versions answered", ", ".join(f"v{v}" for v in summary["model_versions"]))]
    rows += [("requests (failed)", f"{summary['requests']} ({summary['failed_requests']})"),
             ("rate held (behind schedule)", f"{summary['rate_held']} of {summary['rate_asked']:g} requests/s ("
                                             f"{summary['behind_schedule_busy']} busy, "
                                             f"{summary['behind_schedule_late']} late)"),
             ("loop closed", "yes" if summary["ok"] else f"NO: {summary['reason']}")]
    width = max(len(k) for k, _ in rows)
    say("summary", "-" * (width + 40))
    for key, value in rows:
        say("summary", f"{key:<{width}}  {value}")
