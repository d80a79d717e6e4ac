"""Drift decisions: which statistic decides, at what threshold, with what error control.

Test choice by kind and sample size (as Evidently does): a window of at most
``small_sample`` rows is judged by a p-value (KS for numbers, chi-square for
categories); a larger one by an effect size (Wasserstein in reference
standard deviations, Jensen-Shannon distance), because on large windows
p-values flag differences too small to matter. Any feature may override.

Thresholds are calibrated, not guessed. With F features per window, each
feature is tested at ``alpha = false_alarm_rate / F`` (Bonferroni), so the
chance that a stable window raises any drift alert is at most
``false_alarm_rate``. For effect sizes, the reference's chunk statistics
(see :mod:`streams.drift.profile`) give a mean and spread at a known sample size;
a gamma distribution fitted to them, rescaled to the window's size, gives the
threshold at ``alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

from streams.drift.profile import CategoricalReference, NumericReference, Profile, categorical_stats, numeric_stats
from streams.drift.skew import SkewFinding, skew_findings
from streams.drift.summary import CategoricalSummary, NumericSummary, WindowSummary, category_vector

NUMERIC_METHODS = ("ks", "psi", "js", "wasserstein")
CATEGORICAL_METHODS = ("chi2", "psi", "js")
P_VALUE_METHODS = {"ks": "ks_p", "chi2": "chi2_p"}
# How each statistic's null spread shrinks with sample size: ~1/n, or ~1/sqrt(n).
NOISE_POWER = {"psi": 1.0, "chi2": 1.0, "js": 0.5, "ks": 0.5, "wasserstein": 0.5}


@dataclass(frozen=True)
class DriftPolicy:
    """How drift and skew are decided. Plain values: a monitor config can set every one."""

    false_alarm_rate: float = 0.01
    small_sample: int = 1000
    min_rows: int = 30
    methods: dict[str, str] = field(default_factory=dict)
    drift_share: float = 0.5
    skew_rate: float = 0.01

    def method_for(self, name: str, kind: str, rows: int) -> str:
        chosen = self.methods.get(name)
        allowed = NUMERIC_METHODS if kind == "numeric" else CATEGORICAL_METHODS
        if chosen is not None:
            if chosen not in allowed:
                raise ValueError(f"method {chosen!r} for {kind} feature {name!r}: use one of {allowed}")
            return chosen
        if kind == "numeric":
            return "ks" if rows <= self.small_sample else "wasserstein"
        return "chi2" if rows <= self.small_sample else "js"


def calibrated_threshold(thresholds: dict[str, float], statistic: str, rows: int,
                         reference_rows: int, alpha: float) -> float | None:
    """Threshold of ``statistic`` for a window of ``rows`` at false-alarm probability ``alpha``."""
    mean = thresholds.get(f"{statistic}_mean")
    std = thresholds.get(f"{statistic}_std")
    chunk = thresholds.get("chunk_rows")
    rest = thresholds.get("rest_rows")
    if mean is None or std is None or not chunk or not rest or rows <= 0:
        return None
    if mean <= 0:
        base = 0.0
    elif std <= 0:
        base = mean
    else:
        shape = (mean / std) ** 2
        base = float(_scipy_stats.gamma.isf(alpha, shape, scale=std * std / mean))
    noise = (1 / rows + 1 / max(reference_rows, 1)) / (1 / chunk + 1 / rest)
    return base * noise ** NOISE_POWER[statistic]


@dataclass
class FeatureResult:
    name: str
    kind: str
    rows: int
    drift: bool
    method: str
    value: float | None
    threshold: float | None
    tests: dict[str, float]
    skew: list[SkewFinding]
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rows": self.rows, "drift": self.drift, "method": self.method,
                "value": self.value, "threshold": self.threshold, "tests": self.tests,
                "skew": [s.to_dict() for s in self.skew], **({"note": self.note} if self.note else {})}


@dataclass
class DriftReport:
    model: str
    reference_version: str
    rows: int
    window_start: int
    window_end: int
    features: dict[str, FeatureResult]
    drift_share: float
    dataset_drift: bool
    alpha: float

    @property
    def drift(self) -> bool:
        return any(f.drift for f in self.features.values())

    @property
    def skew(self) -> bool:
        return any(f.skew for f in self.features.values())

    def drifted(self) -> list[FeatureResult]:
        return [f for f in self.features.values() if f.drift]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "reference_version": self.reference_version, "rows": self.rows,
                "window_start": self.window_start, "window_end": self.window_end,
                "drift": self.drift, "skew": self.skew, "drift_share": self.drift_share,
                "dataset_drift": self.dataset_drift, "alpha_per_feature": self.alpha,
                "features": {n: f.to_dict() for n, f in self.features.items()}}


def compare(summary: WindowSummary, profile: Profile, policy: DriftPolicy | None = None) -> DriftReport:
    """Judge one (merged) window summary against the reference profile."""
    policy = policy or DriftPolicy()
    tested = [n for n in profile.features if n in summary.features]
    alpha = policy.false_alarm_rate / max(len(tested), 1)
    findings = skew_findings(summary, profile.spec, rate_threshold=policy.skew_rate)
    results: dict[str, FeatureResult] = {}
    for name in tested:
        ref = profile.features[name]
        s = summary.features[name]
        if isinstance(ref, NumericReference) and isinstance(s, NumericSummary):
            counts = s.histogram if s.histogram.size else np.zeros(ref.histogram.size)
            fine = s.fine_counts if s.fine_counts.size else np.zeros(ref.fine_counts.size)
            sums = s.fine_sums if s.fine_sums.size else np.zeros(ref.fine_sums.size)
            tests = numeric_stats(ref, counts, fine, sums, s.count)
        elif isinstance(ref, CategoricalReference) and isinstance(s, CategoricalSummary):
            tests = categorical_stats(ref, category_vector(s, ref))
        else:  # the feature arrived in the other block: all type mismatches, no distribution
            results[name] = FeatureResult(name, ref.kind, s.count, False, "", None, None, {},
                                          findings.get(name, []), "wrong type: no drift test")
            continue
        method = policy.method_for(name, ref.kind, s.count)
        note = ""
        threshold: float | None
        if method in P_VALUE_METHODS:
            value, threshold = tests[P_VALUE_METHODS[method]], alpha
            drift = value < threshold
        else:
            value = tests[method]
            threshold = calibrated_threshold(ref.thresholds, method, s.count, ref.count, alpha)
            drift = threshold is not None and value > threshold
        if s.count < policy.min_rows:
            drift, note = False, f"fewer than {policy.min_rows} values: not judged"
        results[name] = FeatureResult(name, ref.kind, s.count, drift, method, value, threshold,
                                      {k: float(v) for k, v in tests.items()},
                                      findings.get(name, []), note)
    for name, items in findings.items():
        if name not in results:
            s = summary.features[name]
            results[name] = FeatureResult(name, s.kind, s.count, False, "", None, None, {}, items,
                                          "not in the reference")
    share = sum(r.drift for r in results.values()) / max(len(tested), 1)
    return DriftReport(profile.model, profile.version, summary.rows, summary.window_start,
                       summary.window_end, results, share, share >= policy.drift_share, alpha)
