"""A trained linear river pipeline's predictions in one Python pass per row.

``logistic_regression`` and ``linear_regression`` (:mod:`driftline.modeling`)
are river pipelines: Select, StandardScaler and OneHotEncoder feeding a
linear model. Per row, river builds four dicts (the selected features, the
scaled ones, the one-hot ones, their union) before one dot product — on a
serving node, a seventh of a one-row request's time. Frozen (serving never
learns), the pipeline is a sum: for each numeric feature
``weight * (x - mean) / std``, for each category the weight of its one-hot
key, plus the intercept, through the model's own link function.

It takes only what it can score exactly as river does: the pipelines built
by :func:`~driftline.modeling.build_estimator` with their default settings,
finite weights, and *plain* rows (every feature present, numbers as ``int``
or ``float``, categories as ``str``). Any other row makes :meth:`scores`
return None and the caller asks river, which also raises whatever river
raises. The sum's order differs from river's, so scores agree to rounding
(``tests/unit/test_linear_scorer.py``: within 1e-12 of river on random
pipelines and rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from river import compose, linear_model, preprocessing

LINEAR_MODELS = (linear_model.LogisticRegression, linear_model.LinearRegression)


class LinearScorer:
    """``scores(rows)`` of a frozen linear pipeline; build with :meth:`compile`."""

    def __init__(self, numeric: list[tuple[str, float, float, float]], categorical: list[tuple[str, str]],
                 weights: dict[str, float], intercept: float, link: Callable[[float], float]) -> None:
        self._numeric = numeric  # (name, mean, std or 0.0, weight)
        self._categorical = categorical  # (name, one-hot key prefix)
        self._weights = weights
        self._intercept = intercept
        self._link = link
        self._numeric_names = frozenset(t[0] for t in numeric)

    @classmethod
    def compile(cls, estimator: Any, numeric: Sequence[str], categorical: Sequence[str]) -> LinearScorer | None:
        """The scorer of ``estimator`` (features ``numeric`` and ``categorical``), or None if it is not one
        of the linear pipelines this knows, with its default settings."""
        parts = _parts(estimator, numeric, categorical)
        if parts is None:
            return None
        scaler, onehot, model = parts
        if scaler is not None and (not scaler.with_std or scaler.window_size is not None):
            return None
        if onehot is not None and (onehot.drop_zeros or onehot.drop_first or onehot.categories is not None):
            return None
        weights = {str(k): float(v) for k, v in dict(model._weights).items()}
        intercept = float(model.intercept)
        terms = []
        for name in numeric:
            mean = float(scaler.means.get(name, 0.0)) if scaler is not None else 0.0
            variance = float(scaler.vars.get(name, 0.0)) if scaler is not None else 0.0
            terms.append((name, mean, variance**0.5 if variance else 0.0, weights.get(name, 0.0)))
        numbers = [intercept, *weights.values(), *(t[1] for t in terms), *(t[2] for t in terms)]
        if not all(map(math.isfinite, numbers)):
            return None  # a diverged model: river's arithmetic (NaN, inf) is river's to do
        return cls(terms, [(name, f"{name}_") for name in categorical], weights, intercept, model.loss.mean_func)

    def scores(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray | None:
        """Each row's score (the link of its linear sum), or None if a row is not plain (ask river)."""
        out = np.empty(len(rows))
        numeric, categorical, weights, intercept, link = (self._numeric, self._categorical, self._weights,
                                                          self._intercept, self._link)
        clashes = self._numeric_names
        for i, row in enumerate(rows):
            total = 0.0
            try:
                for name, mean, std, weight in numeric:
                    value = row[name]
                    if type(value) is not float and type(value) is not int:
                        return None
                    if std:
                        total += weight * ((value - mean) / std)
                for name, prefix in categorical:
                    value = row[name]
                    key = prefix + value if type(value) is str else None
                    if key is None or key in clashes:  # not text, or a one-hot key river's union would drop
                        return None
                    total += weights.get(key, 0.0)
            except KeyError:
                return None
            out[i] = link(total + intercept)
        return out


def _parts(estimator: Any, numeric: Sequence[str],
           categorical: Sequence[str]) -> tuple[Any, Any, Any] | None:
    """(scaler, one-hot encoder, linear model) of a pipeline shaped as modeling._features builds it."""
    if not isinstance(estimator, compose.Pipeline):
        return None
    steps = list(estimator.steps.values())
    model = steps[-1]
    if type(model) not in LINEAR_MODELS:
        return None
    branches: list[list[Any]]
    if numeric and categorical:
        if len(steps) != 2 or not isinstance(steps[0], compose.TransformerUnion):
            return None
        branches = []
        for branch in steps[0].transformers.values():
            if not isinstance(branch, compose.Pipeline):
                return None
            branches.append(list(branch.steps.values()))
    else:
        branches = [steps[:-1]]
    wanted = ([(numeric, preprocessing.StandardScaler)] if numeric else []) + \
        ([(categorical, preprocessing.OneHotEncoder)] if categorical else [])
    if len(branches) != len(wanted):
        return None
    found: dict[type, Any] = {}
    for branch, (names, kind) in zip(branches, wanted, strict=True):
        if len(branch) != 2 or type(branch[0]) is not compose.Select or type(branch[1]) is not kind \
                or set(branch[0].keys) != set(names):
            return None
        found[kind] = branch[1]
    return found.get(preprocessing.StandardScaler), found.get(preprocessing.OneHotEncoder), model
