"""Which bin of a reference's edges each value of a window falls in, by a lookup table.

A window summary counts every numeric feature's values in the reference's
bins (10 coarse ones for PSI, 200 fine ones for the KS and Wasserstein
sketches) and sums them per fine bin. Sorting each column and searching the
edges in it cost 40-85 ns a value here (the sort); a binary search per value
among 199 edges costs as much. The edges are fixed per profile, so a table
made once answers each value with a few array passes instead (6-12 ns a value
with both bin counts, measured on normal, lognormal and Cauchy columns):

* the range of the edges is cut into equal cells; ``cell(v)`` is
  ``floor((v - lo) * scale)``, clipped, a monotone function of ``v``;
* ``start[c]`` is the number of edges whose own cell is below ``c``: every
  such edge is below any value of cell ``c`` (monotonicity), so the answer
  for a value of cell ``c`` is at least ``start[c]`` and at most ``start[c]``
  plus the number of edges in cell ``c``;
* so ``steps`` (the most edges any cell holds) rounds of
  ``index += value >= edges[index]`` reach the answer exactly, with no
  floating-point margin to get wrong.

The cells are made finer (up to 64 per edge) while a cell holds more than
two edges: quantile edges of a skewed or heavy-tailed reference crowd part
of their range (lognormal: three steps at 4 cells an edge, 11 ns a value;
one step at 16, 7 ns).

Any monotone cells are exact, so a reference's coarse index is built on its
fine index's cells (``grid``): a summary finds each value's cell once for
both (:func:`coarse_and_fine`), and a cell is four passes over the values
(subtract, scale, clip, truncate). Summaries of 100-row events: 0.51-0.53 to
0.43-0.45 µs a row, 20 features.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

native_counts_sums: Callable[..., None] | None
native_moments: Callable[[np.ndarray], tuple[float, float, float, float] | None] | None
try:  # the table's answer, counts and sums in one pass per value; a column's moments (streams/drift/_column.c)
    from streams.drift._column import counts_sums as native_counts_sums
    from streams.drift._column import moments as native_moments
except ImportError:  # built without a C compiler: the numpy passes give the same
    native_counts_sums = native_moments = None

CELLS_PER_EDGE = 4
MAX_CELLS_PER_EDGE = 64
MAX_EDGES_PER_CELL = 2  # refine the table until no cell holds more (or it is MAX_CELLS_PER_EDGE per edge)


class EdgeIndex:
    """``np.searchsorted(edges, values, side="right")`` for many values and fixed sorted ``edges``: the bin
    of each value among ``(-inf, e0), [e0, e1), ..., [e_last, inf)``. Values must not be NaN."""

    _low: float  # the cells (when ``_table``): floor((v - _low) * _scale), clipped to 0 .. _cells + 1
    _scale: float
    _cells: int
    _start: np.ndarray  # per cell, the edges in the cells below it
    steps: int  # the most edges one cell holds: the rounds that settle a value

    def __init__(self, edges: np.ndarray, grid: EdgeIndex | None = None) -> None:
        """``grid``: another index whose cells this one uses (so one pass of :meth:`cells` serves both; the
        refinement rounds make any monotone cells exact, however many edges a cell holds)."""
        self.edges = np.asarray(edges, dtype=np.float64)
        self.bins = self.edges.size + 1
        self._padded = np.append(self.edges, np.nan)  # no value, not even +inf, is >= the last bin's "next edge"
        span = float(self.edges[-1] - self.edges[0]) if self.edges.size > 1 else 0.0
        # a table needs a finite, non-empty range of edges and a finite scale at its finest (else: the search)
        self._table = bool(np.isfinite(self.edges).all()) and 0.0 < span < np.inf and \
            MAX_CELLS_PER_EDGE * self.edges.size / span < np.inf
        if grid is not None and grid._table and self.edges.size:
            self._table = True  # the grid's cells, whatever this index's own edges are
            self._low, self._scale, self._cells = grid._low, grid._scale, grid._cells
            self._set_start(self.cells(self.edges))
            return
        if not self._table:
            return
        cells = CELLS_PER_EDGE * self.edges.size
        while True:
            self._cells = cells
            self._scale = cells / span
            # (v - low) * scale puts the first edge at 1: the cells below it and above the last are 0 and cells + 1
            self._low = float(self.edges[0]) - 1.0 / self._scale
            edge_cells = self.cells(self.edges)
            self._set_start(edge_cells)
            if self.steps <= MAX_EDGES_PER_CELL or cells >= MAX_CELLS_PER_EDGE * self.edges.size:
                break
            cells *= 4

    def _set_start(self, edge_cells: np.ndarray) -> None:
        self.steps = int(np.bincount(edge_cells, minlength=self._cells + 2).max())
        self._start = np.searchsorted(edge_cells, np.arange(self._cells + 2), side="left").astype(np.int64)

    def shares_cells(self, other: EdgeIndex) -> bool:
        """Whether :meth:`cells` of ``other`` are this index's cells too (one was built on the other's grid)."""
        return self._table and other._table and \
            (self._low, self._scale, self._cells) == (other._low, other._scale, other._cells)

    def cells(self, values: np.ndarray) -> np.ndarray:
        """Each value's cell, ``(v - low) * scale`` truncated and clipped to 0 .. cells + 1: monotone in the
        value (each float step rounds monotonically; a difference past the float range is an infinity, and so
        is its cell before the clip). Four passes over the values; only for an index with a table."""
        with np.errstate(over="ignore"):
            cell = values - self._low
            cell *= self._scale
        np.clip(cell, 0, self._cells + 1, out=cell)
        return cell.astype(np.intp)

    def at(self, values: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """Each value's bin from its cell (:meth:`cells`, of this index or one sharing its grid)."""
        index = self._start[cells]
        for _ in range(self.steps):
            index += values >= self._padded[index]
        return index

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Each value's bin (0 .. len(edges))."""
        if not self._table:
            return np.searchsorted(self.edges, values, side="right")
        return self.at(values, self.cells(values))

    def counts(self, values: np.ndarray) -> np.ndarray:
        """The number of values in each bin."""
        return np.bincount(self(values), minlength=self.bins)

    def counts_sums(self, values: np.ndarray, *, native: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The number of values in each bin and their sum (each bin summed on its own, in the values' order).

        ``native``: in C where it is built (:mod:`streams.drift._column`): the same cells, bins and sums."""
        if native and native_counts_sums is not None and self._table and values.dtype == np.float64 \
                and values.ndim == 1:
            counts, sums = np.zeros(self.bins, dtype=np.int64), np.zeros(self.bins)
            native_counts_sums(values, self._low, self._scale, self._cells, self._start, self._padded, self.steps,
                               counts, sums)
            return counts, sums
        index = self(values)
        return np.bincount(index, minlength=self.bins), np.bincount(index, weights=values, minlength=self.bins)


def nested_bins(coarse_edges: np.ndarray, fine_edges: np.ndarray) -> np.ndarray | None:
    """For each fine bin, the coarse bin that holds it whole; None when a coarse edge is not a fine edge
    (it would cut a fine bin in two).

    A value of fine bin ``i`` lies in ``[f[i-1], f[i])``, and a coarse edge ``c``
    that is a fine edge is at most the value exactly when it is at most
    ``f[i-1]``: so the value's coarse bin, the number of coarse edges at most
    the value, is that of ``f[i-1]`` (0 for fine bin 0).
    """
    if not np.isin(coarse_edges, fine_edges).all():
        return None
    return np.searchsorted(coarse_edges, np.concatenate(([-np.inf], fine_edges)), side="right")


def coarse_and_fine(coarse: EdgeIndex, fine: EdgeIndex, values: np.ndarray, fine_to_coarse: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The coarse bins' counts, the fine bins' counts and sums: added up from the fine counts when each
    fine bin lies in one coarse bin (``fine_to_coarse``, :func:`nested_bins`), else the cells found once
    when the coarse index was built on the fine one's grid (a reference's are:
    ``NumericReference.coarse_bins``)."""
    if fine_to_coarse is not None:
        fine_counts, fine_sums = fine.counts_sums(values)
        return (np.bincount(fine_to_coarse, weights=fine_counts, minlength=coarse.bins).astype(np.int64),
                fine_counts, fine_sums)
    if not coarse.shares_cells(fine):
        return (coarse.counts(values), *fine.counts_sums(values))
    cells = fine.cells(values)
    index = fine.at(values, cells)
    return (np.bincount(coarse.at(values, cells), minlength=coarse.bins),
            np.bincount(index, minlength=fine.bins), np.bincount(index, weights=values, minlength=fine.bins))
