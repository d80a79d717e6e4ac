"""Drift of what a model *says*: its prediction scores, window by window, through river's detectors.

A model's output distribution moves when its inputs or its world move, and
it can be watched before a single label arrives. Per model version, scores
are summed per tumbling window of prediction event time (numpy over each
event's rows); the first ``baseline_windows`` windows set the expected mean
and spread; every later window's mean is standardised,
``z = (mean - mu) / (sigma / sqrt(n))`` — N(0, 1) while nothing changes —
and fed to ADWIN and Page-Hinkley, as the per-feature window means are.

Like the estimated windows, an open window remembers the oldest input
offset it holds (:meth:`ScoreDrift.holding`): the stage's commits stay
behind it, so after a rebalance the windows are rebuilt from the topic
with every row once. Windows close in order, and a row of a window already
judged is left out, not judged a second time.

What the closed windows taught — each version's baseline, the last window
judged, the standardised means fed to the detectors — is state too: kept
only in memory, a restarted (or rebalanced) worker would take its first
windows after the restart as the new baseline, and a shift already under
way would become the expected. So each close that changes a version's state
yields it (:meth:`ScoreDrift.changed`) for the stage to write, in the
transaction that commits its offsets, to the compacted
``monitor.score-state`` topic, and a worker that is assigned partitions
starts from what is there (:meth:`ScoreDrift.restored`): the same baseline,
and detectors rebuilt by feeding them the same values again (the last
``Z_KEPT``; ADWIN and Page-Hinkley are deterministic).
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river import base as river_base

from driftline.alerts import Alert
from streams.drift.detectors import DETECTORS


@dataclass
class _Window:
    total: float = 0.0
    squares: float = 0.0
    rows: int = 0
    sources: dict[tuple[str, int], int] = field(default_factory=dict)  # input partition -> oldest offset


Z_KEPT = 512  # standardised window means kept per version to rebuild its detectors (windows, not rows)


@dataclass
class _Version:
    windows: dict[int, _Window] = field(default_factory=dict)
    judged_through: int = -(1 << 62)  # the start of the last window closed
    baseline: list[_Window] = field(default_factory=list)
    detectors: dict[str, river_base.DriftDetector] = field(default_factory=dict)
    fed: deque[float] = field(default_factory=lambda: deque(maxlen=Z_KEPT))  # what the detectors were given

    def to_json(self) -> bytes:
        """The closed windows' lessons, for the state topic (open windows are re-read, not saved)."""
        return json.dumps({"judged_through": self.judged_through,
                           "baseline": [[w.rows, w.total, w.squares] for w in self.baseline],
                           "fed": list(self.fed)}).encode()


class ScoreDrift:
    def __init__(self, window_ms: int, *, baseline_windows: int = 5, min_rows: int = 30,
                 kinds: tuple[str, ...] = ("adwin", "page_hinkley")) -> None:
        self.window_ms = window_ms
        self.baseline_windows = baseline_windows
        self.min_rows = min_rows
        self.kinds = kinds
        self.versions: dict[tuple[str, str], _Version] = {}
        self._changed: set[tuple[str, str]] = set()

    @classmethod
    def restored(cls, window_ms: int, states: Iterable[tuple[bytes, bytes]], **options: Any) -> ScoreDrift:
        """A ScoreDrift that starts from saved states ((key, value) of the state topic, see :meth:`changed`)."""
        drift = cls(window_ms, **options)
        for key, value in states:
            model, version = json.loads(key)
            saved = json.loads(value)
            state = drift.versions[(model, version)] = _Version(judged_through=int(saved["judged_through"]))
            state.baseline = [_Window(total=float(total), squares=float(squares), rows=int(rows))
                              for rows, total, squares in saved["baseline"]]
            for z in saved["fed"]:
                drift._feed(state, float(z))
        return drift

    def changed(self) -> list[tuple[bytes, bytes]]:
        """(key, value) of every version whose state a close changed since the last call, for the state topic."""
        out = [(json.dumps(list(key)).encode(), self.versions[key].to_json()) for key in sorted(self._changed)]
        self._changed.clear()
        return out

    def add(self, model: str, version: str, event_time: int, scores: np.ndarray,
            source: tuple[str, int] = ("", -1), offset: int = 0) -> None:
        """One event's scores, read at ``offset`` of ``source`` (the stage's input partition)."""
        finite = scores[np.isfinite(scores)]
        state = self.versions.setdefault((model, version), _Version())
        start = event_time // self.window_ms * self.window_ms
        if finite.size == 0 or start <= state.judged_through:
            return
        window = state.windows.setdefault(start, _Window())
        window.sources[source] = min(window.sources.get(source, offset), offset)
        window.total += float(finite.sum())
        window.squares += float(np.dot(finite, finite))
        window.rows += int(finite.size)

    def close(self, ready: Callable[[str, int], bool]) -> list[Alert]:
        """Judge every window ``ready(model, start)`` lets close; alerts for detections.

        When is the caller's to say, from every prediction partition's watermark: the newest score seen
        here is not it (a lagging partition's rows of the window would be left out).
        """
        alerts = []
        for (model, version), state in self.versions.items():
            for start in sorted(s for s in state.windows if ready(model, s)):
                window = state.windows.pop(start)
                state.judged_through = max(state.judged_through, start)
                self._changed.add((model, version))
                if window.rows < self.min_rows:
                    continue
                if len(state.baseline) < self.baseline_windows:
                    state.baseline.append(window)
                    continue
                alert = self._judge(model, version, start, window, state)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def holding(self) -> Iterator[tuple[tuple[str, int], int]]:
        """(partition, offset) of the oldest row of each open window: commits are held back to them."""
        return (item for state in self.versions.values() for window in state.windows.values()
                for item in window.sources.items())

    def _feed(self, state: _Version, z: float) -> list[str]:
        """One standardised window mean to the version's detectors; the kinds that fired."""
        state.fed.append(z)
        fired = []
        for kind in self.kinds:
            detector = state.detectors.get(kind)
            if detector is None:
                detector = state.detectors[kind] = DETECTORS[kind]()
            detector.update(z)
            if detector.drift_detected:
                fired.append(kind)
        return fired

    def _judge(self, model: str, version: str, start: int, window: _Window, state: _Version) -> Alert | None:
        rows = sum(w.rows for w in state.baseline)
        mu = sum(w.total for w in state.baseline) / rows
        variance = max(sum(w.squares for w in state.baseline) / rows - mu * mu, 0.0)
        mean = window.total / window.rows
        if variance <= 0:
            return None
        z = (mean - mu) / (math.sqrt(variance) / math.sqrt(window.rows))
        fired = self._feed(state, z)
        if not fired:
            return None
        return Alert.create(
            "driftline.drift", model, severity="warning", identity=(version, start, "prediction", *fired),
            data={"model_version": version, "window_start": start, "window_end": start + self.window_ms,
                  "sample_size": window.rows,
                  "message": f"{model} v{version}: its prediction scores moved (mean {mean:.3f} vs {mu:.3f}; "
                             f"{', '.join(fired)}; z={z:.1f})",
                  "features": [{"name": "prediction", "statistic": kind, "value": z, "threshold": None}
                               for kind in fired]})
