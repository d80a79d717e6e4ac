"""Model decay: judge each closed quality window against the model's expected quality.

The expectation (baseline) comes, in order of preference, from the model
version's ModelRecord (its validation metrics on the trainer's holdout), from
the reference profile's ``metrics``, or from the first windows the version
served (so a model registered outside driftline is still watched).

A window is decayed when a metric is worse than the baseline by more than a
tolerance *and*, for accuracy, the drop is significant for the window's size
(a one-sided z test on a proportion), so small windows do not page anyone.
DDM runs over the row-level error stream to catch a steady rise in errors
that no single window shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from driftline.alerts import Alert
from driftline.quality import (
    HIGHER_IS_BETTER,
    classification_metrics,
    predicted_classes,
    regression_metrics,
    worse_by,
)
from streams.decay.ddm import DDM
from streams.decay.join import Pairs


@dataclass(frozen=True)
class DecayPolicy:
    """How much worse than expected a window may be before a decay alert."""

    absolute_tolerance: float = 0.05  # accuracy, F1, ROC AUC: points below the baseline
    relative_tolerance: float = 0.2  # log loss, MAE, RMSE: fraction above the baseline
    log_loss_tolerance: float = 0.1  # and at least this much worse (a perfect model's baseline is 0)
    min_rows: int = 100  # smaller windows are summarised, never judged
    z: float = 3.0  # significance of an accuracy drop
    baseline_windows: int = 3  # windows that set the baseline when nothing else gives one

    def threshold(self, metric: str, baseline: float) -> float:
        if metric in HIGHER_IS_BETTER:
            return self.absolute_tolerance
        floor = self.log_loss_tolerance if metric == "log_loss" else 0.0
        return max(self.relative_tolerance * abs(baseline), floor)


@dataclass
class QualityWindow:
    """One closed window's quality, ready to publish and judge."""

    model: str
    model_version: str
    window_start: int
    window_end: int
    task: str
    rows: int
    metrics: dict[str, float]
    errors: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    baseline: dict[str, float] = field(default_factory=dict)
    baseline_source: str = ""

    def to_avro(self) -> dict:
        return {"model": self.model, "model_version": self.model_version, "window_start": self.window_start,
                "window_end": self.window_end, "task": self.task, "rows": self.rows,
                "metrics": self.metrics, "baseline": self.baseline, "baseline_source": self.baseline_source}


def infer_task(truth_numeric: np.ndarray) -> str:
    """Regression when labels are numbers that are not all whole, else classification."""
    finite = truth_numeric[np.isfinite(truth_numeric)]
    if finite.size and not np.all(np.mod(finite, 1) == 0):
        return "regression"
    return "classification"


def measure(model: str, version: str, start: int, window_ms: int, pairs: Pairs, task: str | None) -> QualityWindow:
    truth, truth_numeric, scores, classes = pairs.arrays()
    task = task or infer_task(truth_numeric)
    if task == "regression":
        metrics = regression_metrics(truth_numeric, scores)
        errors = np.abs(scores - truth_numeric)
    else:
        metrics = classification_metrics(truth, scores, classes)
        errors = (predicted_classes(scores, classes) != truth).astype(np.float64)
    return QualityWindow(model, version, start, start + window_ms, task, len(truth), metrics, errors)


@dataclass
class Verdict:
    metric: str
    value: float
    baseline: float
    threshold: float
    z: float | None = None


class DecayJudge:
    """Baselines and DDM state per (model, version); turns closed windows into decay alerts."""

    def __init__(self, policy: DecayPolicy | None = None) -> None:
        self.policy = policy or DecayPolicy()
        self._warmup: dict[tuple[str, str], list[dict[str, float]]] = {}
        self._ddm: dict[tuple[str, str], DDM] = {}

    def baseline(self, window: QualityWindow, record_metrics: dict[str, float] | None,
                 profile_metrics: dict[str, float] | None) -> tuple[dict[str, float], str]:
        for source, given in (("model-record", record_metrics), ("profile", profile_metrics)):
            usable = {k: v for k, v in (given or {}).items() if k in window.metrics and math.isfinite(v)}
            if usable:
                return usable, source
        key = (window.model, window.model_version)
        seen = self._warmup.setdefault(key, [])
        if len(seen) >= self.policy.baseline_windows:
            names = set.intersection(*(set(m) for m in seen))
            return {n: float(np.mean([m[n] for m in seen])) for n in names}, "first-windows"
        if window.rows >= self.policy.min_rows:
            seen.append(window.metrics)
        return {}, ""

    def judge(self, window: QualityWindow) -> list[Verdict]:
        """Metrics worse than their baseline beyond tolerance (and significance, for accuracy)."""
        if window.rows < self.policy.min_rows:
            return []
        found = []
        for metric, baseline in sorted(window.baseline.items()):
            value = window.metrics.get(metric)
            if value is None or not math.isfinite(value):
                continue
            worse = worse_by(metric, value, baseline)
            threshold = self.policy.threshold(metric, baseline)
            if worse <= threshold:
                continue
            z = None
            if metric == "accuracy":
                spread = math.sqrt(max(baseline * (1 - baseline), 1e-6) / window.rows)
                z = worse / spread
                if z < self.policy.z:
                    continue
            found.append(Verdict(metric, value, baseline, threshold, z))
        return found

    def error_stream(self, window: QualityWindow) -> str | None:
        """DDM over the classification error stream of a model version, in window order."""
        if window.task != "classification" or window.errors.size == 0:
            return None
        ddm = self._ddm.setdefault((window.model, window.model_version), DDM())
        return ddm.update(window.errors)

    def alerts(self, window: QualityWindow) -> list[Alert]:
        verdicts = self.judge(window)
        ddm = self.error_stream(window)
        common = {"model_version": window.model_version, "window_start": window.window_start,
                  "window_end": window.window_end, "sample_size": window.rows, "task": window.task,
                  "metrics": window.metrics, "baseline_source": window.baseline_source}
        alerts = []
        if verdicts:
            alerts.append(Alert.create(
                "driftline.decay", window.model,
                severity="critical" if any(v.metric in ("accuracy", "rmse") for v in verdicts) else "warning",
                identity=(window.model_version, window.window_start, "decay", *(v.metric for v in verdicts)),
                data={**common,
                      "message": f"{window.model} v{window.model_version} quality dropped: " + ", ".join(
                          f"{v.metric} {v.value:.3f} vs expected {v.baseline:.3f}" for v in verdicts),
                      "metrics_failed": [{"statistic": v.metric, "value": v.value, "baseline": v.baseline,
                                          "threshold": v.threshold, "z": v.z} for v in verdicts],
                      "features": []}))
        if ddm == "drift":
            alerts.append(Alert.create(
                "driftline.decay", window.model, severity="warning",
                identity=(window.model_version, window.window_start, "ddm"),
                data={**common, "features": [],
                      "message": f"{window.model} v{window.model_version}: the error rate rose (DDM), "
                                 f"accuracy {window.metrics.get('accuracy', math.nan):.3f} in this window",
                      "metrics_failed": [{"statistic": "ddm", "value": 1 - window.metrics.get("accuracy", 0.0),
                                          "baseline": None, "threshold": None, "z": None}]}))
        return alerts
