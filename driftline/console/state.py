"""What the console knows: the topics, followed by one thread, kept in bounded memory.

Control topics (profiles, models, deployments, runs) are read from their
beginning and kept as their latest record per key (artifacts dropped: the
console shows what a model is, it never loads one). Stream topics (merged
window summaries on ``stats``, ``quality``, ``alerts``, ``predictions``) are
read from ``history_s`` ago and kept in rings of fixed length, so a console
left open for a month holds as much as one opened a minute ago.

Each merged window is judged against the model's profile here, by the
monitor's own ``compare``: the console shows the statistics the monitor
decided on, not a second opinion. Prediction events say which version
answered, so "the version each node answers with" is read from what the
nodes emitted in the last minute.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Message

from driftline.errors import ConfigError
from driftline.follow import TopicFollower
from driftline.offsets import follow_from
from driftline.producer import NODE_HEADER
from driftline.settings import Settings
from schemas import Codec
from streams.drift.decision import compare
from streams.drift.profile import Profile
from streams.drift.summary import WindowSummary

log = logging.getLogger(__name__)
WINDOWS_KEPT = 60
QUALITY_KEPT = 240
ALERTS_KEPT = 200
RUNS_KEPT = 50
ANSWERED_WINDOW_S = 60.0


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


class _Stream:
    """A stream topic read from a point in time onwards, every partition, committing nothing."""

    def __init__(self, settings: Settings, short_topic: str, since_ms: int) -> None:
        topic = settings.topic(short_topic)
        # every partition from its first record at or after since_ms (a partition with none: its end)
        self.consumer: Consumer = follow_from(settings, [topic], since_ms, "console")[0]
        if not self.consumer.assignment():
            self.consumer.close()
            raise ConfigError(f"topic {topic} does not exist: create the topics ('driftline topics create') "
                              f"or point topic_prefix at the loop to watch")

    def poll(self, limit: int = 2000) -> list[tuple[bytes | None, bytes]]:
        return [(m.key(), v) for m, v in self.poll_messages(limit)]

    def poll_messages(self, limit: int = 2000) -> list[tuple[Message, bytes]]:
        out = []
        for message in self.consumer.consume(limit, 0.05):
            value = message.value()
            if message.error() is None and value is not None:
                out.append((message, value))
        return out

    def close(self) -> None:
        self.consumer.close()


def _model_summary(raw: bytes) -> dict[str, Any]:
    record = Codec.default().decode(raw, "driftline.ModelRecord")
    return {"model": record["model"], "version": record["version"], "created_at": record["created_at"],
            "task": record["task"], "status": record["status"], "parent_version": record["parent_version"],
            "run_id": record["run_id"], "metrics": {k: _finite(v) for k, v in record["metrics"].items()},
            "calibrated": record.get("calibration") is not None}


def place_window(ring: deque[dict[str, Any]], entry: dict[str, Any]) -> None:
    """A model's merged window into its ring, kept in order of window start (the newest last, the oldest
    dropped past ``maxlen``): a replayed window replaces itself, and one read out of order goes in its
    place. A model's windows are keyed by their start, so they sit on several partitions of the stats
    topic and arrive in no particular order (CI once saw the shifted window read before the others)."""
    if not ring or ring[-1]["window_start"] < entry["window_start"]:
        ring.append(entry)  # the common case: the newest window
        return
    kept = sorted([w for w in ring if w["window_start"] != entry["window_start"]] + [entry],
                  key=lambda w: w["window_start"])
    ring.clear()
    ring.extend(kept[-(ring.maxlen or len(kept)):])


class RecentAnswers:
    """Rows answered per (model, "version@node") in the last ``window_s`` seconds.

    Entries older than the window are dropped as new ones come, so memory is
    the window's traffic, not a ring's length: a ring of 100,000 entries
    (still the cap, for bursts) held eleven minutes of a 150-requests/s
    demo for a figure of the last minute, and the console's memory grew
    through all of them (133 → 145 MB over a 600-s bench).
    """

    def __init__(self, window_s: float, cap: int = 100_000) -> None:
        self.window_s = window_s
        self._entries: deque[tuple[float, str, str, int]] = deque(maxlen=cap)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, at: float, model: str, version: str, rows: int) -> None:
        self._entries.append((at, model, version, rows))
        self._forget(at)

    def counts(self, now: float) -> Counter[tuple[str, str]]:
        self._forget(now)
        out: Counter[tuple[str, str]] = Counter()
        for _, model, version, rows in self._entries:
            out[(model, version)] += rows
        return out

    def _forget(self, now: float) -> None:
        entries = self._entries
        while entries and now - entries[0][0] > self.window_s:
            entries.popleft()


class ConsoleState:
    """The console's picture of the loop, refreshed by :meth:`run` in a thread; :meth:`snapshot` reads it."""

    def __init__(self, settings: Settings, history_s: float = 3600.0) -> None:
        self.settings = settings
        self.codec = Codec.default()
        self.lock = threading.Lock()
        since = int((time.time() - history_s) * 1000)
        self.profiles: TopicFollower[Profile] = TopicFollower(settings, "profiles", Profile.from_bytes)
        self.models: TopicFollower[dict[str, Any]] = TopicFollower(settings, "models", _model_summary)
        self.deployments: TopicFollower[dict[str, Any]] = TopicFollower(
            settings, "deployments", lambda raw: self.codec.decode(raw, "driftline.Deployment"))
        self.runs: TopicFollower[dict[str, Any]] = TopicFollower(
            settings, "runs", lambda raw: self.codec.decode(raw, "driftline.TrainingRun"))
        self.streams = {name: _Stream(settings, name, since) for name in ("stats", "quality", "alerts")}
        self.predictions = _Stream(settings, "predictions", int((time.time() - ANSWERED_WINDOW_S) * 1000))
        self.windows: dict[str, deque[dict[str, Any]]] = {}
        self.quality: dict[str, deque[dict[str, Any]]] = {}
        self.alerts: deque[dict[str, Any]] = deque(maxlen=ALERTS_KEPT)
        self.alert_sequence = 0  # alerts seen so far: server-sent events send what is newer
        # (time, model, "version@node", rows): the node from the emitter's header, "SDK" for applications
        self.answered = RecentAnswers(ANSWERED_WINDOW_S)
        self.caught_up = False

    # ------------------------------------------------------------ reading
    def step(self) -> None:
        for follower in (self.profiles, self.models, self.deployments, self.runs):
            follower.poll(max_messages=500)
        for key, value in self.streams["stats"].poll():
            self._window(key, value)
        for _, value in self.streams["quality"].poll():
            self._quality(value)
        for _, value in self.streams["alerts"].poll():
            self._alert(value)
        now = time.time()
        for message, value in self.predictions.poll_messages(5000):
            try:
                record = self.codec.decode(value, "driftline.Prediction")
            except Exception:  # the monitor dead-letters bad events; the console just skips them
                continue
            raw_node = dict(message.headers() or []).get(NODE_HEADER)
            node = (raw_node.decode(errors="replace") if isinstance(raw_node, bytes) else raw_node) or "SDK"
            with self.lock:
                self.answered.add(now, record["model"], f"{record['model_version']}@{node}",
                                  len(record["request_ids"]))
        self.caught_up = all(f.caught_up for f in (self.profiles, self.models, self.deployments, self.runs))

    def _window(self, key: bytes | None, value: bytes) -> None:
        try:
            record = self.codec.decode(value, "driftline.WindowSummary")
        except Exception as exc:
            log.warning("skipping an unreadable stats record: %s", exc)
            return
        if record["stage"] != "merged":
            return
        summary = WindowSummary.from_avro(record)
        profile = self.profiles.latest.get(summary.model.encode())
        entry: dict[str, Any] = {"window_start": summary.window_start, "window_end": summary.window_end,
                                 "rows": summary.rows, "model_version": summary.model_version,
                                 "reference_version": summary.reference_version, "features": {}}
        if profile is not None and profile.version == summary.reference_version:
            report = compare(summary, profile)
            entry["drift"], entry["skew"] = report.drift, report.skew
            for name, f in report.features.items():
                entry["features"][name] = {"drift": f.drift, "p_value": _finite(f.p_value),
                                           "statistic": _finite(f.value), "method": f.method,
                                           "psi": _finite(f.tests.get("psi")), "skew": bool(f.skew)}
            if report.multivariate is not None:
                m = report.multivariate
                entry["features"][m.name] = {"drift": m.drift, "p_value": _finite(m.p_value),
                                             "statistic": _finite(m.value), "method": m.method,
                                             "psi": _finite(m.tests.get("psi")), "skew": False}
        with self.lock:
            place_window(self.windows.setdefault(summary.model, deque(maxlen=WINDOWS_KEPT)), entry)

    def _quality(self, value: bytes) -> None:
        try:
            record = self.codec.decode(value, "driftline.QualitySummary")
        except Exception as exc:
            log.warning("skipping an unreadable quality record: %s", exc)
            return
        entry = {"model_version": record["model_version"], "window_start": record["window_start"],
                 "rows": record["rows"], "estimated": record["estimated"],
                 "metrics": {k: _finite(v) for k, v in record["metrics"].items()},
                 "lower": {k: _finite(v) for k, v in record["lower"].items()},
                 "upper": {k: _finite(v) for k, v in record["upper"].items()}}
        with self.lock:
            self.quality.setdefault(record["model"], deque(maxlen=QUALITY_KEPT)).append(entry)

    def _alert(self, value: bytes) -> None:
        try:
            event = json.loads(value)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        data: dict[str, Any] = event["data"] if isinstance(event.get("data"), dict) else {}
        entry = {"id": event.get("id"), "type": event.get("type"), "time": event.get("time"),
                 "model": event.get("model") or data.get("model"), "severity": event.get("severity"),
                 "message": data.get("message", ""), "window_start": data.get("window_start")}
        with self.lock:
            self.alert_sequence += 1
            entry["sequence"] = self.alert_sequence
            self.alerts.appendleft(entry)

    def run(self, stop: threading.Event, on_error: Callable[[Exception], None] | None = None) -> None:
        """Follow the topics until ``stop``; a broker error is reported and retried, never fatal."""
        while not stop.is_set():
            try:
                self.step()
            except Exception as exc:  # the console stays up while Kafka is away, and says so
                log.warning("console could not read the topics: %s", exc)
                if on_error is not None:
                    on_error(exc)
                stop.wait(2.0)
            stop.wait(0.2)

    # ------------------------------------------------------------ reading out
    def alerts_after(self, sequence: int) -> list[dict[str, Any]]:
        with self.lock:
            return [a for a in reversed(self.alerts) if a["sequence"] > sequence]

    def snapshot(self) -> dict[str, Any]:
        """Everything the page draws, as JSON-ready data."""
        now = time.time()
        with self.lock:
            answered = self.answered.counts(now)
            windows = {m: list(ring) for m, ring in self.windows.items()}
            quality = {m: list(ring) for m, ring in self.quality.items()}
            alerts = list(self.alerts)
        names = sorted({p.model for p in self.profiles.latest.values()} | set(windows)
                       | {r["model"] for r in self.models.latest.values()}
                       | {d["model"] for d in self.deployments.latest.values()})
        deployments = {d["model"]: d for d in self.deployments.latest.values()}
        models = []
        for name in names:
            versions = sorted((r for r in self.models.latest.values() if r["model"] == name),
                              key=lambda r: r["created_at"])
            profile = self.profiles.latest.get(name.encode())
            kept = windows.get(name, [])
            models.append({
                "model": name, "deployed": deployments.get(name), "versions": versions,
                "answering": {v: rows for (m, v), rows in sorted(answered.items()) if m == name},
                "profile": {"version": profile.version, "rows": profile.rows, "features": list(profile.features),
                            "calibrated": profile.calibration is not None,
                            "multivariate": profile.multivariate is not None} if profile else None,
                "latest_window": kept[-1] if kept else None})
        runs = sorted(self.runs.latest.values(), key=lambda r: r["started_at"], reverse=True)[:RUNS_KEPT]
        return {"now": int(now * 1000), "caught_up": self.caught_up, "models": models, "windows": windows,
                "quality": quality, "alerts": alerts,
                "runs": [{k: r.get(k) for k in ("run_id", "model", "status", "trigger_type", "started_at",
                                                 "rows", "candidate_version", "champion_version", "reason")}
                         | {"checks": [{"name": c["name"], "passed": c["passed"], "detail": c.get("detail", "")}
                                       for c in r.get("checks", [])]} for r in runs],
                "deployments": sorted(deployments.values(), key=lambda d: d["created_at"], reverse=True)}

    def close(self) -> None:
        parts: list[TopicFollower[Any] | _Stream] = [self.profiles, self.models, self.deployments, self.runs,
                                                     *self.streams.values(), self.predictions]
        for part in parts:
            try:
                part.close()
            except Exception as exc:  # closing the others matters more
                log.warning("error while closing the console's consumers: %s", exc)
