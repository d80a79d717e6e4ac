"""Feature shapes for calibration: numpy/scipy distributions, not driftline's generators.

Each shape draws rows and knows its exact probabilities, so a window's
counts on a profile's bins can be drawn directly as a multinomial (the
same distribution as drawing the rows and binning them, at any window
size) — that is how the calibration grid reaches 2,000,000-row windows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class NumericShape:
    name: str
    draw: Callable[[np.random.Generator, int], np.ndarray]
    cdf: Callable[[np.ndarray], np.ndarray]  # P(X < x) for the bins [a, b)
    kind: str = "numeric"

    def bin_probabilities(self, edges: np.ndarray) -> np.ndarray:
        """P(X in (-inf, e0)), P(X in [e0, e1)), ..., P(X in [e_last, inf))."""
        below = self.cdf(np.asarray(edges, dtype=float))
        p = np.diff(np.concatenate([[0.0], below, [1.0]]))
        p = np.maximum(p, 0.0)
        return p / p.sum()


@dataclass(frozen=True)
class CategoricalShape:
    name: str
    levels: tuple[str, ...]
    probabilities: np.ndarray
    kind: str = "categorical"

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.array(self.levels, dtype=object)[rng.choice(len(self.levels), size=n, p=self.probabilities)]

    def cell_probabilities(self, categories: list[str]) -> np.ndarray:
        """Probabilities on a profile's categories, with every other level in OTHER (last)."""
        index = {c: i for i, c in enumerate(categories)}
        out = np.zeros(len(categories) + 1)
        for level, p in zip(self.levels, self.probabilities, strict=True):
            out[index.get(level, len(categories))] += p
        return out


def _continuous(name: str, dist: stats.rv_continuous) -> NumericShape:
    return NumericShape(name, lambda rng, n: dist.rvs(size=n, random_state=rng), dist.cdf)


def _discrete(name: str, dist: stats.rv_discrete) -> NumericShape:
    # P(X < x) for integer-valued X is P(X <= ceil(x) - 1).
    return NumericShape(name, lambda rng, n: dist.rvs(size=n, random_state=rng).astype(float),
                        lambda x: dist.cdf(np.ceil(x) - 1))


def _zero_inflated() -> NumericShape:
    zero, rest = 0.6, stats.lognorm(s=1.0, scale=3.0)

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        return np.where(rng.random(n) < zero, 0.0, rest.rvs(size=n, random_state=rng))

    return NumericShape("zero_inflated", draw, lambda x: zero * (x > 0) + (1 - zero) * rest.cdf(x))


def _bimodal() -> NumericShape:
    left, right, share = stats.norm(-2.0, 0.7), stats.norm(3.0, 1.2), 0.35

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        pick = rng.random(n) < share
        return np.where(pick, left.rvs(size=n, random_state=rng), right.rvs(size=n, random_state=rng))

    return NumericShape("bimodal", draw, lambda x: share * left.cdf(x) + (1 - share) * right.cdf(x))


def _categorical_rare() -> CategoricalShape:
    p = np.array([0.40, 0.25, 0.15, 0.10, 0.05, 0.03, 0.008, 0.006, 0.004, 0.002])
    return CategoricalShape("categorical_rare", tuple(f"level{i}" for i in range(p.size)), p / p.sum())


def _categorical_many() -> CategoricalShape:
    weights = 1.0 / np.arange(1, 201) ** 1.1  # Zipf-like over 200 levels
    return CategoricalShape("categorical_200", tuple(f"c{i:03d}" for i in range(200)), weights / weights.sum())


SHAPES: dict[str, NumericShape | CategoricalShape] = {
    "normal": _continuous("normal", stats.norm(10.0, 3.0)),
    "gamma": _continuous("gamma", stats.gamma(1.5, scale=2.0)),
    "lognormal": _continuous("lognormal", stats.lognorm(s=0.9, scale=1.0)),
    "student_t3": _continuous("student_t3", stats.t(3)),
    "poisson": _discrete("poisson", stats.poisson(1.3)),
    "zero_inflated": _zero_inflated(),
    "bimodal": _bimodal(),
    "categorical_rare": _categorical_rare(),
    "categorical_200": _categorical_many(),
}
