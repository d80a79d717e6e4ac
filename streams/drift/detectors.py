"""Online change detectors (river) over each feature's sequence of window means.

Per-window tests compare one window with the reference; a slow drift that
stays under every window's threshold is caught by watching the *sequence* of
windows. Each numeric feature's window mean is standardised against the
reference, ``z = (mean - ref_mean) / (ref_std / sqrt(n))``, which is N(0, 1)
while nothing changes whatever the window size, and fed in window order to
river's ADWIN (change in the mean of a stream), Page-Hinkley (sustained
cumulative deviation) and KSWIN (change in the distribution of recent values).

The detectors' state is a pure function of the sequence of merged window
summaries, which the ``stats`` topic keeps, so a restarted worker rebuilds it
by replaying them (``replay=True``: no alerts re-raised).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from river import base as river_base
from river import drift

from streams.drift.profile import NumericReference, Profile
from streams.drift.summary import NumericSummary, WindowSummary

DETECTORS: dict[str, Callable[[], river_base.DriftDetector]] = {
    "adwin": lambda: drift.ADWIN(delta=0.002, min_window_length=5, grace_period=5),
    "page_hinkley": lambda: drift.PageHinkley(min_instances=5, delta=0.5, threshold=12.0),
    "kswin": lambda: drift.KSWIN(alpha=0.0001, window_size=60, stat_size=20, seed=1),
}


@dataclass(frozen=True)
class Detection:
    feature: str
    detector: str
    z: float


class WindowMeanDetectors:
    """ADWIN, Page-Hinkley and KSWIN per (model, feature), fed once per closed window."""

    def __init__(self, kinds: tuple[str, ...] = ("adwin", "page_hinkley", "kswin")) -> None:
        unknown = set(kinds) - set(DETECTORS)
        if unknown:
            raise ValueError(f"unknown detector(s) {sorted(unknown)}; use {sorted(DETECTORS)}")
        self.kinds = kinds
        self._detectors: dict[tuple[str, str, str], river_base.DriftDetector] = {}
        self._last_window: dict[str, int] = {}

    def update(self, summary: WindowSummary, profile: Profile) -> list[Detection]:
        """Feed one closed window (in window order); the detections it triggers."""
        if summary.window_start <= self._last_window.get(summary.model, -1):
            return []  # already seen (a replay overlap): the sequence stays in window order
        self._last_window[summary.model] = summary.window_start
        found = []
        for name, ref in profile.features.items():
            s = summary.features.get(name)
            if not isinstance(ref, NumericReference) or not isinstance(s, NumericSummary):
                continue
            if s.count < 2 or ref.std <= 0:
                continue
            z = (s.mean - ref.mean) / (ref.std / math.sqrt(s.count))
            for kind in self.kinds:
                key = (summary.model, name, kind)
                detector = self._detectors.get(key)
                if detector is None:
                    detector = self._detectors[key] = DETECTORS[kind]()
                detector.update(z)
                if detector.drift_detected:
                    found.append(Detection(name, kind, z))
        return found
