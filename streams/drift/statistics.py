"""Drift statistics: pure functions over histograms and binned sketches.

Each compares a current distribution with a reference one. They work on
counts (histograms on the reference's bins, category counts), which is what
mergeable window summaries keep, so the same function serves one batch
offline and a window merged from many partitions online.

Which to use: PSI and Jensen-Shannon are bounded, sample-size-robust effect
sizes for binned numbers and categories; Kolmogorov-Smirnov is the classic
two-sample test for numbers (its p-value grows too eager on very large
windows); Wasserstein says *how far* values moved, in units of the reference
standard deviation; chi-square is the two-sample test for categories.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-4


def _proportions(counts: np.ndarray, epsilon: float = EPSILON) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    if total <= 0:
        return np.full(counts.shape, 1.0 / max(len(counts), 1))
    p = counts / total
    # Empty bins would make log terms infinite: floor them, then renormalise.
    p = np.maximum(p, epsilon)
    return p / p.sum()


def psi(reference: np.ndarray, current: np.ndarray, epsilon: float = EPSILON) -> float:
    """Population Stability Index: sum((q - p) * ln(q / p)) over bins.

    Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 large shift.

    >>> round(psi(np.array([50, 50]), np.array([50, 50])), 6)
    0.0
    >>> round(psi(np.array([50, 50]), np.array([80, 20])), 4)  # 0.3 ln 1.6 + 0.3 ln 2.5
    0.4159
    """
    p = _proportions(reference, epsilon)
    q = _proportions(current, epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def jensen_shannon(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon *distance* (square root of the divergence), base 2, in [0, 1].

    Symmetric and finite even where one distribution has empty bins.

    >>> round(jensen_shannon(np.array([1, 0]), np.array([0, 1])), 6)
    1.0
    """
    p = np.asarray(reference, dtype=float)
    q = np.asarray(current, dtype=float)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_pm = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_qm = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(np.sqrt(max(0.0, 0.5 * (kl_pm + kl_qm))))


def ks_from_sketches(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic from counts on shared fine bins.

    The empirical CDFs are compared at every bin edge; the error against the
    exact statistic is at most the largest probability mass of one bin.

    >>> ks_from_sketches(np.array([10, 10, 0]), np.array([0, 10, 10]))
    0.5
    """
    r = np.cumsum(reference_counts, dtype=float)
    c = np.cumsum(current_counts, dtype=float)
    if r[-1] <= 0 or c[-1] <= 0:
        return 0.0
    return float(np.max(np.abs(r / r[-1] - c / c[-1])))


def wasserstein_from_sketches(
    reference_counts: np.ndarray,
    reference_sums: np.ndarray,
    current_counts: np.ndarray,
    current_sums: np.ndarray,
) -> float:
    """First Wasserstein distance between two binned samples.

    Each bin's mass sits at the mean of the values that fell in it (the
    sketch keeps per-bin sums), and W1 is the integral of the absolute
    difference of the quantile functions of these two discrete
    distributions: exact when every value in a bin is equal, and close
    otherwise because the bins are fine.

    >>> wasserstein_from_sketches(np.array([1, 1]), np.array([0.0, 1.0]),
    ...                           np.array([1, 1]), np.array([1.0, 2.0]))
    1.0
    """
    r_counts = np.asarray(reference_counts, dtype=float)
    c_counts = np.asarray(current_counts, dtype=float)
    if r_counts.sum() <= 0 or c_counts.sum() <= 0:
        return 0.0
    r_mask, c_mask = r_counts > 0, c_counts > 0
    r_points = np.asarray(reference_sums)[r_mask] / r_counts[r_mask]
    c_points = np.asarray(current_sums)[c_mask] / c_counts[c_mask]
    return weighted_w1(r_points, c_points, r_counts[r_mask], c_counts[c_mask])


def weighted_w1(u: np.ndarray, v: np.ndarray, u_weights: np.ndarray, v_weights: np.ndarray) -> float:
    """W1 between two weighted point sets: the integral of |F_u - F_v| (what scipy's
    ``wasserstein_distance`` computes, without importing ``scipy.stats``, ~2 s of start-up
    that ``driftline check`` would pay on every call)."""
    u_order, v_order = np.argsort(u, kind="stable"), np.argsort(v, kind="stable")
    u_sorted, v_sorted = u[u_order], v[v_order]
    points = np.sort(np.concatenate([u_sorted, v_sorted]))
    deltas = np.diff(points)
    u_cum = np.concatenate([[0.0], np.cumsum(u_weights[u_order])])
    v_cum = np.concatenate([[0.0], np.cumsum(v_weights[v_order])])
    u_cdf = u_cum[np.searchsorted(u_sorted, points[:-1], side="right")] / u_cum[-1]
    v_cdf = v_cum[np.searchsorted(v_sorted, points[:-1], side="right")] / v_cum[-1]
    return float(np.sum(np.abs(u_cdf - v_cdf) * deltas))
