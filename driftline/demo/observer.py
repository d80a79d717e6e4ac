"""What the demo shows: the loop's topics, followed as they change, printed as one line per event."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from driftline.alerts import Alert
from driftline.follow import TopicFollower
from driftline.settings import Settings
from schemas import Codec


@dataclass
class Seen:
    at: float  # wall time the observer saw it
    kind: str
    detail: dict[str, Any]


@dataclass
class Observer:
    settings: Settings
    say: Callable[[str, str], None]
    events: list[Seen] = field(default_factory=list)
    windows: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        codec = Codec.default()
        self._alerts = TopicFollower(self.settings, "alerts", Alert.from_json)
        self._runs = TopicFollower(self.settings, "runs", lambda raw: codec.decode(raw, "driftline.TrainingRun"))
        self._deployments = TopicFollower(self.settings, "deployments",
                                          lambda raw: codec.decode(raw, "driftline.Deployment"))
        self._stats = TopicFollower(self.settings, "stats", lambda raw: None)
        self._thread = threading.Thread(target=self._run, name="observer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            for alert in self._alerts.poll(0.05):
                self.events.append(Seen(now, "alert", {"alert": alert}))
                self.say("alert", f"{alert.type} ({alert.severity}) {alert.message[:150]}")
            for run in self._runs.poll(0.02):
                self.events.append(Seen(now, "run", run))
                if run["status"] == "started":
                    self.say("retrain", f"run {run['run_id']} started by a {run['trigger_type']} trigger")
                elif run["status"] == "skipped":
                    self.say("retrain", f"trigger {run['trigger_type']} skipped: {run['reason']}")
                else:
                    cand = run["candidate_metrics"].get("accuracy", float("nan"))
                    champ = run["champion_metrics"].get("accuracy", float("nan"))
                    self.say("retrain", f"run {run['run_id']} {run['status']}: {run['rows']} rows, holdout "
                                        f"accuracy candidate {cand:.3f} vs champion {champ:.3f}"
                                        + (f" -> v{run['candidate_version']}" if run["candidate_version"] else "")
                                        + ("" if run["status"] == "published" else f" ({run['reason']})"))
            for deployment in self._deployments.poll(0.02):
                self.events.append(Seen(now, "deployment", deployment))
                self.say("deploy", f"{deployment['model']} -> v{deployment['version']} ({deployment['action']})")
            self.windows += len(self._stats.poll(0.02, 500))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for follower in (self._alerts, self._runs, self._deployments, self._stats):
            follower.close()

    # ------------------------------------------------------------ queries
    def alerts(self) -> list[tuple[float, Alert]]:
        return [(e.at, e.detail["alert"]) for e in self.events if e.kind == "alert"]

    def published(self) -> list[tuple[float, dict]]:
        return [(e.at, e.detail) for e in self.events if e.kind == "run" and e.detail["status"] == "published"]

    def deployments(self) -> list[tuple[float, dict]]:
        return [(e.at, e.detail) for e in self.events if e.kind == "deployment"]
