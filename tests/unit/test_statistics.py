"""Each drift statistic against an independent computation (scipy / direct numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from streams.drift import statistics as st
from streams.drift.profile import bin_counts, bin_sums, quantile_edges

rng = np.random.default_rng(42)


def test_psi_equals_direct_numpy_on_the_same_bins():
    ref, cur = rng.integers(1, 500, 10), rng.integers(1, 500, 10)
    p, q = ref / ref.sum(), cur / cur.sum()
    assert st.psi(ref, cur) == pytest.approx(np.sum((q - p) * np.log(q / p)), rel=1e-12)


def test_js_distance_equals_scipy_base_2():
    ref, cur = rng.integers(0, 500, 12), rng.integers(0, 500, 12)
    assert st.jensen_shannon(ref, cur) == pytest.approx(jensenshannon(ref, cur, base=2), abs=1e-12)


@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (0.25, 1.0), (1.0, 1.0), (0.0, 1.5), (0.5, 0.7)])
def test_ks_from_the_sketch_is_within_001_of_scipy(shift, scale):
    reference = rng.normal(size=20_000)
    current = rng.normal(shift, scale, size=3_000)
    edges = quantile_edges(reference, 200)
    statistic = st.ks_from_sketches(bin_counts(reference, edges), bin_counts(current, edges))
    exact = stats.ks_2samp(reference, current)
    assert abs(statistic - exact.statistic) <= 0.01
    p = st.ks_p_value(statistic, reference.size, current.size)
    if exact.pvalue > 1e-6:
        assert abs(p - stats.ks_2samp(reference, current, method="asymp").pvalue) < 0.1


def test_ks_p_value_is_scipys_asymptotic_p_for_the_same_statistic():
    n, m = 3000, 20000
    d = 0.031
    expected = stats.kstwo.sf(d, round(n * m / (n + m)))
    assert st.ks_p_value(d, m, n) == pytest.approx(expected)


@pytest.mark.parametrize("shift, scale", [(0.25, 1.0), (1.0, 1.0), (0.0, 2.0), (2.0, 0.5)])
def test_wasserstein_from_the_sketch_is_within_2_percent_of_scipy(shift, scale):
    reference = rng.normal(size=20_000)
    current = rng.normal(shift, scale, size=5_000)
    edges = quantile_edges(reference, 200)
    value = st.wasserstein_from_sketches(bin_counts(reference, edges), bin_sums(reference, edges),
                                         bin_counts(current, edges), bin_sums(current, edges))
    assert value == pytest.approx(stats.wasserstein_distance(reference, current), rel=0.02)


def test_chi2_p_equals_scipy_contingency_on_the_same_counts():
    ref, cur = np.array([500, 300, 150, 50]), np.array([90, 70, 30, 10])
    statistic, p = st.chi2_homogeneity(ref, cur)
    expected = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    assert statistic == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue)


def test_chi2_ignores_categories_empty_in_both():
    s1, p1 = st.chi2_homogeneity(np.array([50, 0, 50]), np.array([40, 0, 60]))
    s2, p2 = st.chi2_homogeneity(np.array([50, 50]), np.array([40, 60]))
    assert (s1, p1) == pytest.approx((s2, p2))
