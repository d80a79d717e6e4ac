"""Each drift statistic against an independent computation (scipy / direct numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from streams.drift import statistics as st
from streams.drift.profile import (
    bin_counts,
    bin_sums,
    factorize,
    quantile_edges,
    sorted_bin_counts,
    sorted_bin_sums,
)

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


@pytest.mark.parametrize("shift, scale", [(0.25, 1.0), (1.0, 1.0), (0.0, 2.0), (2.0, 0.5)])
def test_wasserstein_from_the_sketch_is_within_2_percent_of_scipy(shift, scale):
    reference = rng.normal(size=20_000)
    current = rng.normal(shift, scale, size=5_000)
    edges = quantile_edges(reference, 200)
    value = st.wasserstein_from_sketches(bin_counts(reference, edges), bin_sums(reference, edges),
                                         bin_counts(current, edges), bin_sums(current, edges))
    assert value == pytest.approx(stats.wasserstein_distance(reference, current), rel=0.02)


def test_weighted_w1_equals_scipy_on_weighted_points():
    for _ in range(20):
        u, v = rng.normal(size=rng.integers(1, 50)), rng.normal(0.3, 2, size=rng.integers(1, 50))
        u_w, v_w = rng.uniform(0.1, 5, u.size), rng.uniform(0.1, 5, v.size)
        assert st.weighted_w1(u, v, u_w, v_w) == pytest.approx(stats.wasserstein_distance(u, v, u_w, v_w), rel=1e-9)


def test_bins_of_sorted_values_equal_a_search_per_value():
    """The window summaries bin sorted values (a search per edge); the profile's per-value search is the
    independent computation, ties on edges and repeated edges included."""
    rng = np.random.default_rng(5)
    for trial in range(3000):
        values = rng.normal(size=rng.integers(0, 60)) if trial % 2 else \
            rng.integers(-3, 3, size=rng.integers(0, 60)).astype(float)
        edges = np.sort(rng.normal(size=rng.integers(1, 9)) if trial % 3 else
                        rng.integers(-3, 3, size=rng.integers(1, 9)).astype(float))
        ordered = np.sort(values)
        assert np.array_equal(sorted_bin_counts(ordered, edges), bin_counts(values, edges))
        np.testing.assert_allclose(sorted_bin_sums(ordered, edges), bin_sums(values, edges), rtol=1e-12, atol=1e-12)


def test_the_bins_lookup_table_answers_as_a_search_per_value():
    """streams.drift.bins.EdgeIndex against np.searchsorted: quantile edges of light and heavy tails (a
    crowded middle makes the table finer), values on, between, below and above the edges, the next float
    either side of each edge, repeated and single edges, and huge and tiny magnitudes."""
    from streams.drift.bins import EdgeIndex, coarse_and_fine, native_counts_sums
    from tests.native import built

    built(native_counts_sums, "streams.drift._column")  # CI: not built is a failure
    rng = np.random.default_rng(11)
    shapes = [rng.normal, rng.standard_cauchy, lambda size: rng.lognormal(0, 3, size),
              lambda size: rng.integers(-3, 3, size).astype(float), lambda size: rng.normal(size=size) * 1e-300,
              lambda size: rng.standard_cauchy(size) * 1e300]
    tables = 0
    for trial in range(600):
        draw = shapes[trial % len(shapes)]
        if trial % 5 == 0:
            edges = np.sort(draw(size=int(rng.integers(0, 6))))
        else:
            edges = quantile_edges(draw(size=2000), int(rng.choice([2, 10, 200])))
        near = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])
        values = np.concatenate([draw(size=500), near, [-np.inf, np.inf, np.finfo(float).max, -np.finfo(float).max]])
        binned = EdgeIndex(edges)
        tables += binned._table
        want = np.searchsorted(edges, values, side="right")
        assert np.array_equal(binned(values), want), (trial, edges)
        # another index on this one's cells (a reference's coarse bins on its fine bins' grid): still exact,
        # for edges inside, across or outside the grid's range
        other = np.sort(np.concatenate([rng.choice(edges, min(3, edges.size)), draw(size=2)])) if edges.size else edges
        on_grid = EdgeIndex(other, grid=binned)
        assert on_grid.shares_cells(binned) == (binned._table and other.size > 0)
        assert np.array_equal(on_grid(values), np.searchsorted(other, values, side="right")), (trial, other)
        finite_values = values[np.isfinite(values)]
        both = coarse_and_fine(on_grid, binned, finite_values)
        assert np.array_equal(both[0], bin_counts(finite_values, other))
        assert np.array_equal(both[1], bin_counts(finite_values, edges))
        counts, sums = binned.counts_sums(values[np.isfinite(values)])
        finite = values[np.isfinite(values)]
        assert np.array_equal(counts, bin_counts(finite, edges))
        with np.errstate(over="ignore", invalid="ignore"):
            np.testing.assert_allclose(sums, bin_sums(finite, edges), rtol=1e-12)
            # the C loop (streams.drift._column) and numpy's passes: the same counts and the very same sums
            in_numpy = binned.counts_sums(finite, native=False)
            column = np.repeat(finite, 3)[1::3]  # a column of a row-major block: strided
            for found in (counts, sums), binned.counts_sums(column):
                assert np.array_equal(found[0], in_numpy[0]), trial
                assert np.array_equal(found[1], in_numpy[1], equal_nan=True), trial
    assert tables > 350, "most trials go through the table, not the search it falls back to"


def test_coarse_counts_added_up_from_the_fine_ones_equal_a_search_of_the_coarse_edges():
    """A profile's deciles are among its 200 fine quantiles (``i / bins``), so a summary adds its coarse
    counts up from its fine ones (streams.drift.bins.nested_bins): equal to np.searchsorted on the coarse
    edges, for light and heavy tails, ties (collapsed edges), values on and either side of every edge and
    outside them all. Edges that cut a fine bin (linspace's 0.30000000000000004) are refused."""
    from streams.drift.bins import EdgeIndex, coarse_and_fine, nested_bins

    rng = np.random.default_rng(12)
    shapes = [rng.normal, rng.standard_cauchy, lambda size: rng.lognormal(0, 3, size),
              lambda size: rng.integers(-3, 3, size).astype(float), lambda size: rng.poisson(2.0, size).astype(float),
              lambda size: np.round(rng.normal(size=size), 1)]
    for trial in range(120):
        draw = shapes[trial % len(shapes)]
        reference = np.sort(draw(size=int(rng.integers(50, 5000))))
        coarse, fine = quantile_edges(reference, 10), quantile_edges(reference, 200)
        mapping = nested_bins(coarse, fine)
        assert mapping is not None, (trial, coarse)
        near = np.concatenate([fine, np.nextafter(fine, -np.inf), np.nextafter(fine, np.inf)])
        values = np.concatenate([draw(size=700), near, [reference[0] - 1.0, reference[-1] + 1.0]])
        values = values[np.isfinite(values)]
        counts = coarse_and_fine(EdgeIndex(coarse), EdgeIndex(fine), values, mapping)
        assert np.array_equal(counts[0], bin_counts(values, coarse)), trial
        assert np.array_equal(counts[1], bin_counts(values, fine)), trial
    reference = np.sort(rng.normal(size=20_000))
    cutting = np.unique(np.quantile(reference, np.linspace(0, 1, 11)[1:-1]))
    assert nested_bins(cutting, quantile_edges(reference, 200)) is None


@pytest.mark.parametrize("size", [0, 7, 300, 20_000])
def test_factorize_gives_first_seen_levels_and_their_codes(size):
    values = np.array([f"level{int(v)}" for v in rng.zipf(1.5, size) % 50], dtype=object)
    distinct, codes = factorize(values)
    expected: list[str] = []
    for value in values.tolist():  # first-seen order, the slow obvious way
        if value not in expected:
            expected.append(value)
    assert distinct == expected
    assert [distinct[c] for c in codes.tolist()] == values.tolist()
