"""The PCA reconstruction errors a window summary counts, against a direct numpy computation."""

from __future__ import annotations

import numpy as np

from streams.drift.multivariate import ERROR_BLOCK_ROWS, MultivariateReference


def direct_errors(reference: MultivariateReference, matrix: np.ndarray) -> np.ndarray:
    """|z - z C^T C|^2 for z the standardised rows (a missing value standardised to 0), the obvious way."""
    standard = np.nan_to_num((matrix - reference.means) / reference.scales, nan=0.0, posinf=0.0, neginf=0.0)
    rebuilt = standard @ reference.components.T @ reference.components
    return ((standard - rebuilt) ** 2).sum(axis=1)


def test_errors_and_their_counts_equal_a_direct_computation_with_and_without_missing_values():
    rng = np.random.default_rng(5)
    rows = 3 * ERROR_BLOCK_ROWS + 17  # several blocks and a short one
    base = rng.normal(size=(4000, 3))
    mixing = rng.normal(size=(3, 6))
    columns = {f"x{j}": (base @ mixing)[:, j] + 0.1 * rng.normal(size=4000) for j in range(6)}
    reference = MultivariateReference.fit(columns)
    assert reference is not None and 0 < len(reference.components) < 6
    names = list(reference.features)
    shuffled = names[::-1]  # the batch's columns in another order: gathered by name
    window = rng.normal(size=(rows, 3)) @ mixing + 0.1 * rng.normal(size=(rows, 6))
    window[:100] += rng.normal(scale=3.0, size=(100, 6))  # some rows off the reference's axes
    matrix = np.column_stack([window[:, names.index(n)] for n in shuffled])
    want = direct_errors(reference, window)
    for finite in (False, True):  # a summary says when every value is finite: no pass to look for missing ones
        np.testing.assert_allclose(reference.errors(matrix, shuffled, finite), want, rtol=1e-9, atol=1e-9)
    expected_counts = np.bincount(np.searchsorted(reference.edges, want, side="right"), minlength=len(reference.edges) + 1)
    np.testing.assert_array_equal(reference.counts(reference.errors(matrix, shuffled)), expected_counts)
    huge = matrix.copy()
    huge[7] = 1e200  # legal floats whose squares overflow: the row's error is NaN, counted in the last bin
    counted = reference.counts(reference.errors(huge, shuffled, True))
    assert counted[-1] == expected_counts[-1] + (want[7] < reference.edges[-1]) and counted.sum() == rows
    missing = matrix.copy()
    missing[rng.random(missing.shape) < 0.05] = np.nan
    back = np.column_stack([missing[:, shuffled.index(n)] for n in names])
    np.testing.assert_allclose(reference.errors(missing, shuffled), direct_errors(reference, back), rtol=1e-9, atol=1e-9)
    absent = reference.errors(matrix[:, 1:], shuffled[1:])  # a feature not sent at all: missing everywhere
    gone = window.copy()
    gone[:, names.index(shuffled[0])] = np.nan
    np.testing.assert_allclose(absent, direct_errors(reference, gone), rtol=1e-9, atol=1e-9)
