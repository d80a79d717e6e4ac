"""Drift that no single feature shows: PCA reconstruction error, and a domain classifier (offline).

Two features can keep their marginals while their relationship changes
(a correlation flips, a pipeline swaps two columns of similar range); every
univariate test is blind to that. A PCA fitted on the standardised numeric
reference keeps the axes the data lives along (``variance`` of it, ~65 %
by default, or ``components`` axes); a row that breaks the reference's
correlations lies off those axes, so its reconstruction error grows.

**Calibrated like a feature.** The error is a number per row, so it is
tested like a numeric feature: the reference's errors are cut at their own
deciles, a window counts its rows' errors on those bins, and the chi-square
of homogeneity with its permutation p-value (:mod:`streams.drift.twosample`)
decides at the window's own size, with one share of the false-alarm budget.
The PCA is fitted on half of the reference rows and the bins are counted on
the other half, so reference and window errors are both out-of-sample:
exchangeable when nothing changed (in-sample errors would be too small and
every large window would alarm). Counts merge like any histogram, so the
monitor's partition merge and the stats topic carry them unchanged.

Numeric features only: nulls are imputed at the reference mean (zero after
standardising), categorical features are left to their own tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from streams.drift.bins import EdgeIndex

BINS = 10
VARIANCE = 0.65
MIN_ROWS = 100
ERROR_BLOCK_ROWS = 4096


@dataclass
class MultivariateReference:
    features: list[str]
    means: np.ndarray
    scales: np.ndarray
    components: np.ndarray  # k x features, orthonormal rows
    explained: float
    edges: np.ndarray  # inner bin edges of the held-out reference errors
    histogram: np.ndarray
    mean_error: float

    @classmethod
    def fit(cls, columns: Mapping[str, np.ndarray], *, variance: float = VARIANCE,
            components: int | None = None) -> MultivariateReference | None:
        """Fit on the numeric reference columns; None when there is nothing multivariate to watch."""
        names = sorted(columns)
        if len(names) < 2:
            return None
        matrix = np.column_stack([np.asarray(columns[n], dtype=float) for n in names])
        matrix[~np.isfinite(matrix)] = np.nan
        if len(matrix) < MIN_ROWS:
            return None
        fit_rows, held_out = matrix[0::2], matrix[1::2]  # out-of-sample errors for the bins
        means = np.nan_to_num(np.nanmean(fit_rows, axis=0))
        scales = np.nan_to_num(np.nanstd(fit_rows, axis=0))
        scales[scales <= 0] = 1.0
        standard = np.nan_to_num((fit_rows - means) / scales)
        _, singular, axes = np.linalg.svd(standard - standard.mean(axis=0), full_matrices=False)
        share = np.cumsum(singular**2) / max(float(np.sum(singular**2)), 1e-300)
        keep = components if components is not None else int(np.searchsorted(share, variance) + 1)
        keep = max(1, min(keep, len(names) - 1))  # at least one axis left out, or nothing can be off-axis
        reference = cls(names, means, scales, axes[:keep], float(share[keep - 1]), np.zeros(0), np.zeros(0), 0.0)
        errors = reference.errors_of(held_out)
        reference.edges = np.unique(np.quantile(errors, np.linspace(0, 1, BINS + 1)[1:-1]))
        reference.histogram = reference.counts(errors).astype(float)
        reference.mean_error = float(errors.mean())
        return reference

    def errors_of(self, matrix: np.ndarray) -> np.ndarray:
        """Squared reconstruction error of each row (columns in ``features`` order, NaN = missing).

        In blocks of ``ERROR_BLOCK_ROWS``: a window's matrix is large (200,000 rows of 16 features is
        25 MB), and whole-matrix temporaries (the standardised copy, its projection) were fresh pages
        every time, written once and read once from memory; a block's stay in the cache.
        """
        return self._errors_in_blocks(matrix, None)

    def _errors_in_blocks(self, matrix: np.ndarray, columns: list[int] | None, finite: bool = False) -> np.ndarray:
        """Errors of ``matrix`` (its ``columns``, in ``features`` order, gathered a block at a time);
        ``finite``: the caller knows every value is (no pass to look for a missing one)."""
        errors = np.empty(len(matrix))
        for start in range(0, len(matrix), ERROR_BLOCK_ROWS):
            stop = start + ERROR_BLOCK_ROWS
            block = matrix[start:stop]
            errors[start:stop] = self._block_errors(block if columns is None else block[:, columns], finite)
        return errors

    def _block_errors(self, block: np.ndarray, finite: bool = False) -> np.ndarray:
        standard = block - self.means
        standard /= self.scales
        if not finite:
            present = np.isfinite(standard)
            if not present.all():
                standard[~present] = 0.0
        projected = standard @ self.components.T
        # the axes are orthonormal: |x - x_hat|^2 = |x|^2 - |projection|^2
        return np.maximum(np.einsum("ij,ij->i", standard, standard) - np.einsum("ij,ij->i", projected, projected), 0.0)

    def errors(self, numeric: np.ndarray, names: Sequence[str], finite: bool = False) -> np.ndarray:
        """Errors of a batch's numeric matrix whose columns are ``names`` (absent features: missing);
        ``finite``: the caller knows every value of the features' columns is (a summary does)."""
        index = {n: j for j, n in enumerate(names)}
        columns = [index.get(name, -1) for name in self.features]
        if min(columns, default=0) >= 0:  # every feature present: gathered per block (none when in order)
            return self._errors_in_blocks(numeric, None if columns == list(range(numeric.shape[1])) else columns,
                                          finite)
        matrix = np.full((len(numeric), len(self.features)), np.nan)
        for j, column in enumerate(columns):
            if column >= 0:
                matrix[:, j] = numeric[:, column]
        return self.errors_of(matrix)

    def counts(self, errors: np.ndarray) -> np.ndarray:
        """The errors' counts in the reference's bins (by its lookup table, :mod:`streams.drift.bins`). A
        row's error is NaN when its squares overflow (a legal value of 1e200): it goes in the last bin, as
        far off the axes as a row gets (the table takes no NaN)."""
        return self.bins.counts(np.nan_to_num(errors, nan=np.inf)).astype(np.int64)

    @cached_property
    def bins(self) -> EdgeIndex:
        return EdgeIndex(self.edges)

    def to_avro(self) -> dict[str, Any]:
        return {"features": self.features, "means": self.means.tolist(), "scales": self.scales.tolist(),
                "components": self.components.ravel().tolist(), "explained": self.explained,
                "bin_edges": self.edges.tolist(), "histogram": self.histogram.tolist(),
                "mean_error": self.mean_error}

    @classmethod
    def from_avro(cls, record: Mapping[str, Any] | None) -> MultivariateReference | None:
        if not record:
            return None
        width = len(record["features"])
        return cls(list(record["features"]), np.asarray(record["means"]), np.asarray(record["scales"]),
                   np.asarray(record["components"]).reshape(-1, width), record["explained"],
                   np.asarray(record["bin_edges"]), np.asarray(record["histogram"]), record["mean_error"])


# ---------------------------------------------------------------- the domain classifier (offline)

MAX_CLASSIFIER_ROWS = 20_000
MAX_LEVELS = 20


@dataclass(frozen=True)
class DomainResult:
    """Can a classifier tell the current rows from the reference's? Held-out ROC AUC and its p-value."""

    auc: float
    p_value: float
    alpha: float
    rows: int

    @property
    def drift(self) -> bool:
        return self.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        return {"method": "domain_classifier", "auc": self.auc, "p_value": self.p_value, "alpha": self.alpha,
                "rows": self.rows, "drift": self.drift}


def _design(columns: Mapping[str, np.ndarray], numeric: Sequence[str], levels: Mapping[str, Sequence[str]],
            means: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Standardised numbers, their squares and pairwise products (a linear classifier then sees changed
    spreads and correlations), and one-hot categories."""
    rows = len(next(iter(columns.values()))) if columns else 0
    x = np.column_stack([np.asarray(columns[n], dtype=float) for n in numeric]) if numeric else np.zeros((rows, 0))
    x = np.nan_to_num((x - means) / scales, nan=0.0, posinf=0.0, neginf=0.0)
    upper = np.triu_indices(x.shape[1])
    parts = [np.ones((rows, 1)), x, x[:, upper[0]] * x[:, upper[1]]]
    for name, kept in levels.items():
        values = np.asarray(columns[name], dtype=object).astype(str)
        parts.append((values[:, None] == np.asarray(kept, dtype=str)[None, :]).astype(float))
    return np.hstack(parts)


def _logistic(design: np.ndarray, target: np.ndarray, ridge: float = 1.0, steps: int = 25) -> np.ndarray:
    """Ridge logistic regression by Newton's method (a few hundred columns: closed-form steps are cheap)."""
    weights = np.zeros(design.shape[1])
    penalty = ridge * np.eye(design.shape[1])
    penalty[0, 0] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ weights, -30, 30)))
        gradient = design.T @ (p - target) + penalty @ weights
        hessian = (design * (p * (1 - p))[:, None]).T @ design + penalty
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if float(np.max(np.abs(step))) < 1e-6:
            break
    return weights


def domain_classifier(reference: Mapping[str, np.ndarray], current: Mapping[str, np.ndarray],
                      numeric: Sequence[str], categorical: Sequence[str], *, alpha: float = 0.01,
                      seed: int = 0) -> DomainResult:
    """Train on half of each sample, score the other half: under no drift the held-out scores of the
    two samples are exchangeable, so the one-sided Mann-Whitney test of their AUC is exact in level
    (no permutation needed, nothing fitted on the rows that are judged)."""
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(seed)

    def sample(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = len(next(iter(columns.values())))
        chosen = np.sort(rng.choice(rows, min(rows, MAX_CLASSIFIER_ROWS), replace=False))
        return {n: np.asarray(columns[n])[chosen] for n in [*numeric, *categorical]}

    ref, cur = sample(reference), sample(current)
    numbers = np.column_stack([np.asarray(ref[n], dtype=float) for n in numeric]) if numeric else np.zeros((1, 0))
    numbers[~np.isfinite(numbers)] = np.nan
    means = np.nan_to_num(np.nanmean(numbers, axis=0)) if numeric else np.zeros(0)
    scales = np.nan_to_num(np.nanstd(numbers, axis=0)) if numeric else np.zeros(0)
    scales[scales <= 0] = 1.0
    levels = {}
    for name in categorical:
        values, counts = np.unique(np.asarray(ref[name], dtype=object).astype(str), return_counts=True)
        levels[name] = values[np.argsort(-counts)][:MAX_LEVELS].tolist()
    x_ref, x_cur = (_design(c, numeric, levels, means, scales) for c in (ref, cur))
    train_ref = rng.random(len(x_ref)) < 0.5
    train_cur = rng.random(len(x_cur)) < 0.5
    design = np.vstack([x_ref[train_ref], x_cur[train_cur]])
    target = np.r_[np.zeros(int(train_ref.sum())), np.ones(int(train_cur.sum()))]
    weights = _logistic(design, target)
    held_ref, held_cur = x_ref[~train_ref] @ weights, x_cur[~train_cur] @ weights
    if len(held_ref) == 0 or len(held_cur) == 0:
        return DomainResult(math.nan, 1.0, alpha, len(x_ref) + len(x_cur))
    test = mannwhitneyu(held_cur, held_ref, alternative="greater")
    auc = float(test.statistic) / (len(held_cur) * len(held_ref))
    return DomainResult(auc, float(test.pvalue), alpha, len(x_ref) + len(x_cur))
