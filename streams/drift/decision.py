"""Drift decisions: which test decides, at what level, with what error control.

The promise: a window in which nothing changed raises a drift alert with
probability at most ``false_alarm_rate``, whatever its size, the reference's
size, or the features' shapes. Each of the F features (times each judged
segment, see :mod:`streams.drift.segments`) is tested at
``alpha = false_alarm_rate / F`` (Bonferroni), and each test's p-value is
valid at the window's own size (:mod:`streams.drift.twosample`): chi-square
of homogeneity on the profile's bins by default, a permutation p-value where
the chi-square tail is unsure, and a permutation p-value for any statistic an
operator picks instead (``ks``, ``psi``, ``js``, ``wasserstein``). Nothing is
extrapolated from reference chunks of another size.

Effect sizes (PSI, Jensen-Shannon, KS, Wasserstein in reference standard
deviations) are reported beside every test, so an operator can rank alerts by
*how much* moved as well as by how sure the test is.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftline.estimation import Estimate
from streams.drift import twosample
from streams.drift.multivariate import DomainResult, MultivariateReference
from streams.drift.profile import (
    OTHER,
    CategoricalReference,
    NumericReference,
    Profile,
    categorical_stats,
    numeric_stats,
)
from streams.drift.segments import SEGMENT_SHARE
from streams.drift.skew import SkewFinding, skew_findings
from streams.drift.summary import CategoricalSummary, NumericSummary, WindowSummary, category_vector

NUMERIC_METHODS = ("chi2", "ks", "psi", "js", "wasserstein")
CATEGORICAL_METHODS = ("chi2", "psi", "js")


@dataclass(frozen=True)
class DriftPolicy:
    """How drift and skew are decided. Plain values: a monitor config can set every one."""

    false_alarm_rate: float = 0.01
    min_rows: int = 30
    methods: dict[str, str] = field(default_factory=dict)
    drift_share: float = 0.5
    skew_rate: float = 0.01

    def method_for(self, name: str, kind: str) -> str:
        chosen = self.methods.get(name, "chi2")
        allowed = NUMERIC_METHODS if kind == "numeric" else CATEGORICAL_METHODS
        if chosen not in allowed:
            raise ValueError(f"method {chosen!r} for {kind} feature {name!r}: use one of {allowed}")
        return chosen


def numeric_test(ref: NumericReference, s: NumericSummary, method: str, alpha: float) -> twosample.TestResult:
    """The calibrated test of one numeric feature's window against its reference."""
    counts = s.histogram if s.histogram.size else np.zeros(ref.histogram.size)
    if method == "chi2":
        return twosample.chi2_test(ref.histogram, counts, alpha, ordered=True)
    if method in ("psi", "js"):
        coarse: twosample.Statistic = twosample.psi_statistic if method == "psi" else twosample.js_statistic
        return twosample.permutation_test(ref.histogram, counts, coarse, alpha)
    fine = s.fine_counts if s.fine_counts.size else np.zeros(ref.fine_counts.size)
    sums = s.fine_sums if s.fine_sums.size else np.zeros(ref.fine_sums.size)
    occupied = (ref.fine_counts + fine) > 0
    if method == "ks":
        return twosample.permutation_test(ref.fine_counts[occupied], fine[occupied],
                                          twosample.ks_statistic, alpha)
    # Wasserstein: every bin's mass at the pooled mean of its values (fixed under the null).
    points = (ref.fine_sums + sums)[occupied] / (ref.fine_counts + fine)[occupied]
    statistic = twosample.wasserstein_statistic(points, ref.std if ref.std > 0 else 1.0)
    return twosample.permutation_test(ref.fine_counts[occupied], fine[occupied], statistic, alpha)


def level_cells(ref: CategoricalReference, s: CategoricalSummary) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reference and window counts with one cell per *level*, whichever sample saw it.

    The reference's category list comes from the reference's own rows, so
    lumping every level only the window has into one OTHER cell (where the
    reference has nothing by construction) makes a stable window look
    drifted: 3.9x the promised rate for a 200-level feature. Cells defined by
    level identity are the same whichever sample a row came from, which is
    what the permutation null needs. Levels beyond the summary's named ones
    (an overflow count, all absent from the reference by construction) are
    left out: as one lump they would be the same bias again.
    """
    index = ref.index
    cur = np.zeros(len(ref.categories) + 1)
    for level, count in s.categories.items():
        cur[index.get(level, len(ref.categories))] += count
    extra = sorted((level, count) for level, count in s.unseen.items() if level != OTHER)
    reference = np.concatenate([ref.counts, np.zeros(len(extra))])
    names = [*ref.categories, OTHER, *(level for level, _ in extra)]
    return reference, np.concatenate([cur, np.asarray([c for _, c in extra], dtype=float)]), names


def categorical_test(reference: np.ndarray, current: np.ndarray, names: list[str], method: str,
                     alpha: float) -> twosample.TestResult:
    if method == "chi2":
        return twosample.chi2_test(reference, current, alpha, ordered=False,
                                   tiebreak=twosample.name_order(names))
    statistic = twosample.psi_statistic if method == "psi" else twosample.js_statistic
    return twosample.permutation_test(reference, current, statistic, alpha)


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
    p_value: float | None = None
    alpha: float | None = None
    how: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rows": self.rows, "drift": self.drift, "method": self.method,
                "value": self.value, "threshold": self.threshold, "p_value": self.p_value,
                "alpha": self.alpha, "p_value_from": self.how, "tests": self.tests,
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
    segments: dict[str, dict[str, FeatureResult]] = field(default_factory=dict)
    segment_alpha: float | None = None
    multivariate: FeatureResult | None = None  # the PCA reconstruction error's test (joint drift)
    # Offline extras (driftline check): quality estimated without labels, realised when labels came
    # with the data, and the domain classifier's verdict when a reference sample was given.
    estimated: dict[str, Estimate] = field(default_factory=dict)
    realised: dict[str, float] = field(default_factory=dict)
    domain: DomainResult | None = None
    # feature -> {labels, reference, current}: the counts a report draws (the profile's cells, never rows)
    distributions: dict[str, dict[str, list]] = field(default_factory=dict)

    def to_html(self, *, title: str | None = None, quality: list[dict[str, Any]] | None = None) -> str:
        """One self-contained HTML page of this report (see :mod:`driftline.htmlreport`)."""
        from driftline.htmlreport import render

        return render(self.to_dict(), self.distributions, title=title, quality=quality or [])

    @property
    def drift(self) -> bool:
        return any(f.drift for f in self.features.values()) or bool(self.drifted_segments()) \
            or bool(self.multivariate and self.multivariate.drift) or bool(self.domain and self.domain.drift)

    def drifted_segments(self) -> dict[str, list[FeatureResult]]:
        """Per segment ("column=value"), its drifted features (segments without drift left out)."""
        out = {key: [f for f in results.values() if f.drift] for key, results in self.segments.items()}
        return {key: found for key, found in out.items() if found}

    @property
    def skew(self) -> bool:
        return any(f.skew for f in self.features.values())

    def drifted(self) -> list[FeatureResult]:
        """Drifted features, and the multivariate test (named ``MULTIVARIATE``) when it fired."""
        found = [f for f in self.features.values() if f.drift]
        return [*found, self.multivariate] if self.multivariate is not None and self.multivariate.drift else found

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "reference_version": self.reference_version, "rows": self.rows,
                "window_start": self.window_start, "window_end": self.window_end,
                "drift": self.drift, "skew": self.skew, "drift_share": self.drift_share,
                "dataset_drift": self.dataset_drift, "alpha_per_feature": self.alpha,
                "features": {n: f.to_dict() for n, f in self.features.items()},
                **({"multivariate": self.multivariate.to_dict()} if self.multivariate is not None else {}),
                **({"domain_classifier": self.domain.to_dict()} if self.domain is not None else {}),
                **({"performance": {"estimated": {k: {"value": e.value, "lower": e.lower, "upper": e.upper}
                                                  for k, e in self.estimated.items()},
                                    "realised": self.realised}} if self.estimated or self.realised else {}),
                **({"alpha_per_segment_feature": self.segment_alpha,
                    "segments": {key: {n: f.to_dict() for n, f in results.items()}
                                 for key, results in self.segments.items()}} if self.segments else {})}


def judge_feature(ref: NumericReference | CategoricalReference,
                  s: NumericSummary | CategoricalSummary, policy: DriftPolicy, alpha: float,
                  skew: list[SkewFinding]) -> FeatureResult:
    """One feature's verdict: its calibrated test, effect sizes beside it, and its skew findings."""
    name = ref.name
    if isinstance(ref, NumericReference) and isinstance(s, NumericSummary):
        counts = s.histogram if s.histogram.size else np.zeros(ref.histogram.size)
        fine = s.fine_counts if s.fine_counts.size else np.zeros(ref.fine_counts.size)
        sums = s.fine_sums if s.fine_sums.size else np.zeros(ref.fine_sums.size)
        effects = numeric_stats(ref, counts, fine, sums, s.count)
        method = policy.method_for(name, ref.kind)
        test = numeric_test(ref, s, method, alpha)
    elif isinstance(ref, CategoricalReference) and isinstance(s, CategoricalSummary):
        effects = categorical_stats(ref, category_vector(s, ref))
        method = policy.method_for(name, ref.kind)
        reference, current, names = level_cells(ref, s)
        test = categorical_test(reference, current, names, method, alpha)
    else:  # the feature arrived in the other block: all type mismatches, no distribution
        return FeatureResult(name, ref.kind, s.count, False, "", None, None, {}, skew,
                             "wrong type: no drift test")
    drift, note = test.p_value < alpha, ""
    if s.count < policy.min_rows:
        drift, note = False, f"fewer than {policy.min_rows} values: not judged"
    return FeatureResult(name, ref.kind, s.count, drift, method, test.statistic, test.critical,
                         {k: float(v) for k, v in effects.items()}, skew, note,
                         test.p_value, alpha, test.how)


MULTIVARIATE = "(multivariate)"


def distribution(ref: NumericReference | CategoricalReference,
                 s: NumericSummary | CategoricalSummary) -> dict[str, list] | None:
    """Reference and window counts on the profile's cells, labelled, for a report to draw."""
    if isinstance(ref, NumericReference) and isinstance(s, NumericSummary):
        edges = [float(e) for e in ref.edges]
        labels = [f"< {edges[0]:.4g}"] if edges else ["all"]
        labels += [f"{a:.4g} to {b:.4g}" for a, b in itertools.pairwise(edges)]
        labels += [f"≥ {edges[-1]:.4g}"] if edges else []
        counts = s.histogram if s.histogram.size else np.zeros(ref.histogram.size)
        if len(labels) != ref.histogram.size:  # edges hold the outer bounds too
            labels = [f"bin {i + 1}" for i in range(ref.histogram.size)]
        return {"labels": labels, "reference": ref.histogram.tolist(), "current": counts.tolist()}
    if isinstance(ref, CategoricalReference) and isinstance(s, CategoricalSummary):
        return {"labels": [*ref.categories, OTHER], "reference": ref.counts.tolist(),
                "current": category_vector(s, ref).tolist()}
    return None


def multivariate_result(ref: MultivariateReference, counts: np.ndarray, alpha: float,
                        policy: DriftPolicy) -> FeatureResult:
    """The window's PCA reconstruction errors against the reference's, by the features' own test."""
    counts = counts if counts.size else np.zeros(ref.histogram.size, dtype=np.int64)
    rows = int(counts.sum())
    test = twosample.chi2_test(ref.histogram, counts, alpha, ordered=True)
    # effect: the share of rows beyond the reference's top error bin (10 % of the reference's rows)
    tail = float(counts[-1] / rows) if rows else float("nan")
    effects = {"tail_share": tail, "reference_tail_share": float(ref.histogram[-1] / ref.histogram.sum()),
               "psi": float(np.ravel(twosample.psi_statistic(ref.histogram, counts))[0]),
               "components": float(len(ref.components)), "explained_variance": ref.explained}
    drift, note = test.p_value < alpha, f"PCA of {len(ref.features)} numeric features"
    if rows < policy.min_rows:
        drift, note = False, f"fewer than {policy.min_rows} rows: not judged"
    return FeatureResult(MULTIVARIATE, "multivariate", rows, drift, "pca_reconstruction", test.statistic,
                         test.critical, effects, [], note, test.p_value, alpha, test.how)


def compare(summary: WindowSummary, profile: Profile, policy: DriftPolicy | None = None,
            *, tests_per_window: int | None = None) -> DriftReport:
    """Judge one (merged) window summary against the reference profile, globally and per segment.

    ``tests_per_window`` overrides how many global feature tests share the
    global false-alarm budget (a bench judging one feature of a wider model).
    With segments, the global tests get ``1 - SEGMENT_SHARE`` of the budget
    and all segment x feature tests of the profile share the rest.
    """
    policy = policy or DriftPolicy()
    tested = [n for n in profile.features if n in summary.features]
    budget = policy.false_alarm_rate * (1 - SEGMENT_SHARE if profile.segments else 1.0)
    joint = profile.multivariate is not None and tests_per_window is None  # one more test shares the budget
    alpha = budget / max(tests_per_window or len(tested) + joint, 1)
    findings = skew_findings(summary, profile.spec, rate_threshold=policy.skew_rate)
    results: dict[str, FeatureResult] = {}
    distributions: dict[str, dict[str, list]] = {}
    for name in tested:
        results[name] = judge_feature(profile.features[name], summary.features[name], policy, alpha,
                                      findings.get(name, []))
        shape = distribution(profile.features[name], summary.features[name])
        if shape is not None:
            distributions[name] = shape
    for name, items in findings.items():
        if name not in results:
            s = summary.features[name]
            results[name] = FeatureResult(name, s.kind, s.count, False, "", None, None, {}, items,
                                          "not in the reference")
    share = sum(r.drift for r in results.values()) / max(len(tested), 1)
    report = DriftReport(profile.model, profile.version, summary.rows, summary.window_start,
                         summary.window_end, results, share, share >= policy.drift_share, alpha,
                         distributions=distributions)
    if joint and profile.multivariate is not None:
        report.multivariate = multivariate_result(profile.multivariate, summary.multivariate, alpha, policy)
    if profile.segments:
        # Every segment test the profile could run shares the budget, whether or not this window
        # has rows for it: the level cannot depend on the data it judges.
        segment_tests = sum(len(refs) for refs in profile.segments.values())
        report.segment_alpha = policy.false_alarm_rate * SEGMENT_SHARE / max(segment_tests, 1)
        coarse = DriftPolicy(policy.false_alarm_rate, policy.min_rows, {}, policy.drift_share, policy.skew_rate)
        for key, part in sorted(summary.segments.items()):
            refs = profile.segments.get(key)
            if refs is None:
                continue
            report.segments[key] = {name: judge_feature(refs[name], part.features[name], coarse,
                                                        report.segment_alpha, [])
                                    for name in refs if name in part.features}
    return report
