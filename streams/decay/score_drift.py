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
(:meth:`ScoreDrift.reset`) with every row once. Windows close in order, and
a row of a window already judged is left out, not judged a second time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

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


@dataclass
class _Version:
    windows: dict[int, _Window] = field(default_factory=dict)
    judged_through: int = -(1 << 62)  # the start of the last window closed
    baseline: list[_Window] = field(default_factory=list)
    detectors: dict[str, river_base.DriftDetector] = field(default_factory=dict)


class ScoreDrift:
    def __init__(self, window_ms: int, *, baseline_windows: int = 5, min_rows: int = 30,
                 kinds: tuple[str, ...] = ("adwin", "page_hinkley")) -> None:
        self.window_ms = window_ms
        self.baseline_windows = baseline_windows
        self.min_rows = min_rows
        self.kinds = kinds
        self.versions: dict[tuple[str, str], _Version] = {}

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

    def reset(self) -> None:
        """Forget the open windows (their rows are read again from the committed offsets); the baselines,
        detectors and what was judged stay."""
        for state in self.versions.values():
            state.windows.clear()

    def _judge(self, model: str, version: str, start: int, window: _Window, state: _Version) -> Alert | None:
        rows = sum(w.rows for w in state.baseline)
        mu = sum(w.total for w in state.baseline) / rows
        variance = max(sum(w.squares for w in state.baseline) / rows - mu * mu, 0.0)
        mean = window.total / window.rows
        if variance <= 0:
            return None
        z = (mean - mu) / (math.sqrt(variance) / math.sqrt(window.rows))
        fired = []
        for kind in self.kinds:
            detector = state.detectors.get(kind)
            if detector is None:
                detector = state.detectors[kind] = DETECTORS[kind]()
            detector.update(z)
            if detector.drift_detected:
                fired.append(kind)
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
