"""DDM: the Drift Detection Method on a model's 0/1 error stream, fed in batches.

The decay pipeline's change detector once labels are joined: it watches the
error rate row by row (in numpy), where the quality windows judge whole
windows against the expected quality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class DDM:
    """Drift Detection Method (Gama et al., 2004) over a 0/1 error stream, fed in batches.

    With error rate ``p_i`` after ``i`` rows and ``s_i = sqrt(p_i (1 - p_i) / i)``,
    it remembers the smallest ``p + s`` seen (after ``min_rows``) and signals
    a drift when ``p_i + s_i >= p_min + 3 s_min``, a warning at 2. Computed with
    cumulative sums over each batch, so the per-row recurrence runs in numpy.
    """

    min_rows: int = 300  # the classic 30 fires on the noise of a lucky start
    warning_level: float = 2.0
    drift_level: float = 3.0
    rows: int = 0
    errors: float = 0.0
    p_min: float = math.inf
    s_min: float = math.inf

    def reset(self) -> None:
        self.rows, self.errors, self.p_min, self.s_min = 0, 0.0, math.inf, math.inf

    def update(self, errors: np.ndarray) -> str | None:
        """Feed a batch of 0/1 errors in order; "drift", "warning" or None. Resets after a drift."""
        errors = np.asarray(errors, dtype=np.float64)
        if errors.size == 0:
            return None
        with np.errstate(invalid="ignore"):  # inf - inf before the first eligible row
            return self._update(errors)

    def _update(self, errors: np.ndarray) -> str | None:
        n = self.rows + np.arange(1, errors.size + 1)
        p = (self.errors + np.cumsum(errors)) / n
        s = np.sqrt(p * (1 - p) / n)
        eligible = n >= self.min_rows
        ps = np.where(eligible, p + s, np.inf)
        # the running minimum of p + s (and the s at that minimum), carried over from earlier batches
        best = np.minimum.accumulate(np.concatenate([[self.p_min + self.s_min], ps]))[1:]
        at_min = np.where(ps <= best, s, np.nan)
        s_at_best = _forward_fill(at_min, self.s_min)
        p_best = best - s_at_best
        drift = eligible & (ps > p_best + self.drift_level * s_at_best)
        warning = eligible & (ps > p_best + self.warning_level * s_at_best)
        if drift.any():
            self.reset()
            return "drift"
        self.rows, self.errors = int(n[-1]), float(self.errors + errors.sum())
        if np.isfinite(best[-1]):
            self.p_min, self.s_min = float(p_best[-1]), float(s_at_best[-1])
        return "warning" if warning[-1] else None


def _forward_fill(values: np.ndarray, initial: float) -> np.ndarray:
    """Each NaN replaced by the last non-NaN before it (``initial`` before the first)."""
    filled = np.concatenate([[initial], values])
    index = np.where(np.isnan(filled), 0, np.arange(filled.size))
    np.maximum.accumulate(index, out=index)
    return filled[index][1:]
