"""Estimated quality per window of predictions, before any label (see :mod:`driftline.estimation`).

Per model version, prediction rows are kept per tumbling window of their
event time; when every live prediction partition of the model has passed a
window's end plus the grace period (stage 1's progress, read in order with
the rows), the window closes and its quality is estimated from the
calibrated scores: a ``QualitySummary`` marked ``estimated`` with a band,
published next to the realised windows (which wait for labels). The
calibration is the version's own (learned on the trainer's holdout and
carried by its ModelRecord), else the profile's.

**Estimated decay**: the window's band lies entirely below the expected
quality by more than the decay policy's tolerance (above it, for errors).
The band already holds the window's sampling error and the calibration's,
so a small or noisy window does not page anyone.

**Exact under restarts**: rows in open windows hold the committed offsets
back (like the label join's live blocks), and windows already on the
quality topic are known on assignment and not published twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from driftline.alerts import Alert
from driftline.estimation import Calibration, Estimate, estimate
from driftline.quality import HIGHER_IS_BETTER
from schemas.columns import FeatureFrame
from streams.decay.judge import DecayPolicy

ESTIMATED_DECAY = "driftline.decay.estimated"


def reads_features(tasks: Iterable[str], calibrations: Iterable[Calibration]) -> bool:
    """Whether a model's estimate may read its predictions' feature columns, from what is known of it: the
    tasks of its ModelRecords and every calibration it has (records', profile's).

    Only a regression's loss model reads them (:meth:`EstimatedQuality.add`); the label join and the score
    windows read ids, times and scores. A model known only as a classifier never needs them, so stage 1
    forwards its predictions without them (a 100-row event of 20 features is 18.6 KB with them, 4.1 KB
    without). A regression, or a model of unknown task, keeps them: a record may bring a loss model later.
    """
    known = set(tasks) | {c.task for c in calibrations}
    return not known or "regression" in known


@dataclass
class _Window:
    scores: list[np.ndarray] = field(default_factory=list)
    classes: list[np.ndarray | None] = field(default_factory=list)
    columns: list[dict[str, np.ndarray]] = field(default_factory=list)
    sources: dict[tuple[str, int], int] = field(default_factory=dict)  # partition -> oldest offset

    @property
    def rows(self) -> int:
        return sum(len(s) for s in self.scores)


@dataclass
class EstimatedWindow:
    model: str
    version: str
    start: int
    end: int
    task: str
    rows: int
    estimates: dict[str, Estimate]
    baseline: dict[str, float]
    baseline_source: str

    def to_avro(self) -> dict:
        return {"model": self.model, "model_version": self.version, "window_start": self.start,
                "window_end": self.end, "task": self.task, "rows": self.rows,
                "metrics": {k: e.value for k, e in self.estimates.items()},
                "baseline": self.baseline, "baseline_source": self.baseline_source, "estimated": True,
                "lower": {k: e.lower for k, e in self.estimates.items()},
                "upper": {k: e.upper for k, e in self.estimates.items()}}

    @property
    def key(self) -> bytes:
        return f"{self.model}:{self.version}:{self.start}:estimated".encode()


Calibrations = Callable[[str, str], tuple[Calibration | None, dict[str, float], str]]


class EstimatedQuality:
    """Windows of prediction rows per model version, estimated at close."""

    def __init__(self, window_ms: int, calibrations: Calibrations, policy: DecayPolicy | None = None) -> None:
        self.window_ms = window_ms
        self.calibrations = calibrations  # (model, version) -> (calibration, expected quality, its source)
        self.policy = policy or DecayPolicy()
        self.windows: dict[tuple[str, str, int], _Window] = {}
        self.published: set[tuple[str, str, int]] = set()

    def add(self, model: str, version: str, event_time: int, scores: np.ndarray, classes: np.ndarray | None,
            source: tuple[str, int], offset: int, events: list[dict]) -> None:
        """One coalesced run of prediction events (``events``: the records, whose columns a regression
        needs) of one version and window."""
        calibration, _, _ = self.calibrations(model, version)
        if calibration is None:
            return  # nothing to estimate with (a version without one is watched by labels alone)
        start = event_time // self.window_ms * self.window_ms
        key = (model, version, start)
        if key in self.published:
            return
        window = self.windows.setdefault(key, _Window())
        window.scores.append(scores)
        window.classes.append(classes)
        if calibration.task == "regression" and calibration.loss is not None:
            parts = [_loss_columns(FeatureFrame.from_record(e["columns"], len(e["request_ids"])), calibration)
                     for e in events]
            window.columns.append({n: np.concatenate([p[n] for p in parts]) for n in parts[0]})
        window.sources[source] = min(window.sources.get(source, offset), offset)

    def closable(self, ready: Callable[[str, int], bool]) -> list[tuple[str, str, int]]:
        """The windows ``ready(model, start)`` lets close (the stage's rule: every live prediction partition
        of the model has passed the window's end plus grace)."""
        return sorted(key for key in self.windows if ready(key[0], key[2]))

    def close(self, key: tuple[str, str, int]) -> tuple[EstimatedWindow | None, list[Alert]]:
        """Estimate one closed window (None when too small to say anything) and judge it."""
        window = self.windows.pop(key)
        self.published.add(key)
        model, version, start = key
        calibration, expected, source = self.calibrations(model, version)
        if calibration is None or window.rows < self.policy.min_rows:
            return None, []
        scores = np.concatenate(window.scores)
        given = [c for c in window.classes if c is not None]
        classes = np.concatenate(given) if given and len(given) == len(window.classes) else None
        columns = {name: np.concatenate([c[name] for c in window.columns]) for name in window.columns[0]} \
            if window.columns else None
        estimates = estimate(calibration, scores, classes, columns, seed=start & 0x7FFFFFFF)
        task = "regression" if calibration.task == "regression" else "classification"
        result = EstimatedWindow(model, version, start, start + self.window_ms, task, len(scores), estimates,
                                 {k: v for k, v in expected.items() if k in estimates}, source)
        return result, self._judge(result)

    def _judge(self, window: EstimatedWindow) -> list[Alert]:
        worse = {}
        for name, e in window.estimates.items():
            if name not in window.baseline:
                continue
            baseline = window.baseline[name]
            tolerance = self.policy.threshold(name, baseline)
            # the whole band is worse than the expectation by more than the tolerance
            gap = (baseline - e.upper) if name in HIGHER_IS_BETTER else (e.lower - baseline)
            if gap > tolerance:
                worse[name] = (e, baseline, tolerance)
        if not worse:
            return []
        text = ", ".join(f"{n} {e.value:.3f} [{e.lower:.3f}, {e.upper:.3f}] vs expected {b:.3f}"
                         for n, (e, b, _) in worse.items())
        return [Alert.create(
            ESTIMATED_DECAY, window.model, severity="warning",
            identity=(window.version, window.start, "estimated", *worse),
            data={"model_version": window.version, "window_start": window.start, "window_end": window.end,
                  "sample_size": window.rows, "task": window.task, "estimated": True,
                  "metrics": {k: e.value for k, e in window.estimates.items()},
                  "baseline_source": window.baseline_source, "features": [],
                  "message": f"{window.model} v{window.version} estimated quality dropped (no labels yet): {text}",
                  "metrics_failed": [{"statistic": n, "value": e.value, "lower": e.lower, "upper": e.upper,
                                      "baseline": b, "threshold": t} for n, (e, b, t) in worse.items()]})]

    def holding(self) -> Iterator[tuple[tuple[str, int], int]]:
        """(partition, offset) of the oldest row of each open window: commits are held back to them."""
        return (item for window in self.windows.values() for item in window.sources.items())


def _loss_columns(frame: FeatureFrame, calibration: Calibration) -> dict[str, np.ndarray]:
    """The features a regression's loss model reads, from one event's rows (absent: missing)."""
    loss = calibration.loss
    assert loss is not None
    out: dict[str, np.ndarray] = {}
    numeric = {n: j for j, n in enumerate(frame.numeric_names)}
    categorical = {n: j for j, n in enumerate(frame.categorical_names)}
    for name in loss.numeric:
        out[name] = frame.numeric[:, numeric[name]].astype(float) if name in numeric \
            else np.full(frame.rows, np.nan)
    for name in loss.categorical:
        out[name] = frame.categorical[:, categorical[name]] if name in categorical \
            else np.full(frame.rows, None, dtype=object)
    return out
