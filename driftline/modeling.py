"""The model interface driftline trains, validates and serves, and its river pipelines.

A :class:`RiverModel` wraps a river estimator with what the rest of the loop
needs to know about it: the task, the features it reads, and how to turn its
answer into a score (probability of the positive class, or the regression
value) and a class. The interface is two methods, ``learn`` and ``predict``,
so other families (numpy/scipy models) can plug in by implementing them.

Pipelines are named in model files (``pipeline: logistic_regression``);
linear models get numeric features standardised and categories one-hot
encoded, trees take both as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from river import compose, forest, linear_model, optim, preprocessing, tree

from driftline.errors import ConfigError
from driftline.linear import LinearScorer

Rows = Sequence[dict[str, Any]]


class Model(Protocol):
    """What validation and serving need of a model: its task, and predictions for rows.

    :class:`RiverModel` is the default; any class with these members (a numpy
    or scipy model) can be validated and served the same way.
    """

    task: str

    def learn(self, rows: Rows, labels: Sequence[Any]) -> None: ...

    def predict(self, rows: Rows) -> tuple[np.ndarray, np.ndarray | None]: ...


def _features(numeric: Sequence[str], categorical: Sequence[str]) -> Any:
    parts = []
    if numeric:
        parts.append(compose.Select(*numeric) | preprocessing.StandardScaler())
    if categorical:
        parts.append(compose.Select(*categorical) | preprocessing.OneHotEncoder())
    return compose.TransformerUnion(*parts) if len(parts) > 1 else parts[0]


def _linear_classifier(numeric: Sequence[str], categorical: Sequence[str], lr: float = 0.05,
                       l2: float = 0.0) -> Any:
    return _features(numeric, categorical) | linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2)


def _linear_regressor(numeric: Sequence[str], categorical: Sequence[str], lr: float = 0.01,
                      l2: float = 0.0) -> Any:
    return _features(numeric, categorical) | linear_model.LinearRegression(optimizer=optim.SGD(lr), l2=l2)


def _tree(factory: Callable[..., Any], **defaults: Any) -> Callable[..., Any]:
    """River's trees and forests split on categories natively once told which features are nominal."""
    return lambda numeric, categorical, **params: factory(
        nominal_attributes=list(categorical) or None, **{**defaults, **params})


PIPELINES: dict[str, tuple[str, Callable[..., Any]]] = {
    "logistic_regression": ("classification", _linear_classifier),
    "hoeffding_adaptive_tree": ("classification", _tree(tree.HoeffdingAdaptiveTreeClassifier, seed=42)),
    "adaptive_random_forest": ("classification", _tree(forest.ARFClassifier, seed=42)),
    "linear_regression": ("regression", _linear_regressor),
    "hoeffding_tree_regressor": ("regression", _tree(tree.HoeffdingAdaptiveTreeRegressor,
                                                                   leaf_prediction="mean", seed=42)),
}


def build_estimator(pipeline: str, numeric: Sequence[str], categorical: Sequence[str],
                    params: dict[str, Any]) -> Any:
    if pipeline not in PIPELINES:
        raise ConfigError(f"unknown pipeline {pipeline!r}; known: {', '.join(sorted(PIPELINES))}")
    try:
        return PIPELINES[pipeline][1](numeric, categorical, **params)
    except TypeError as exc:
        raise ConfigError(f"pipeline {pipeline!r} does not take these parameters: {exc}") from None


@dataclass
class RiverModel:
    """A river estimator with the loop's interface.

    Classification labels are canonical class strings ("1"/"0" for binary);
    a binary model learns booleans and scores the probability of "1".
    """

    task: str
    pipeline: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    estimator: Any = None

    def __post_init__(self) -> None:
        if self.estimator is None:
            self.estimator = build_estimator(self.pipeline, self.numeric, self.categorical, self.params)
        self._forget_scorer()

    def __getstate__(self) -> dict[str, Any]:
        """The pickled state (artifacts, deep copies) leaves the compiled scorer out: it is rebuilt."""
        state = dict(self.__dict__)
        state.pop("_scorer", None)
        state.pop("_compiled", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._forget_scorer()

    def _forget_scorer(self) -> None:
        """The weights (may) have changed: the linear form is compiled again on the next predict."""
        self._scorer: LinearScorer | None = None
        self._compiled = False  # whether _scorer (None: not a linear pipeline) reflects the current weights

    def _linear(self) -> LinearScorer | None:
        """The frozen linear form of a linear pipeline (:mod:`driftline.linear`), built on first use."""
        if not self._compiled:
            task_ok = self.task == "regression" or self.binary
            self._scorer = LinearScorer.compile(self.estimator, self.numeric, self.categorical) if task_ok else None
            self._compiled = True
        return self._scorer

    @property
    def binary(self) -> bool:
        return set(self.classes) <= {"0", "1"}

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    def clone(self) -> RiverModel:
        """A deep copy (warm start: the champion's state, learning on without touching it)."""
        return copy.deepcopy(self)

    def learn(self, rows: Rows, labels: Sequence[Any]) -> None:
        """Learn rows in the order given (river learns online: one row after the other)."""
        self._forget_scorer()  # the weights change
        learn = self.estimator.learn_one
        if self.task == "regression":
            for x, y in zip(rows, labels, strict=True):
                learn(x, float(y))
            return
        self.classes = tuple(sorted(set(self.classes) | {str(v) for v in labels}))
        if self.binary:
            for x, y in zip(rows, labels, strict=True):
                learn(x, y == "1")
        else:
            for x, y in zip(rows, labels, strict=True):
                learn(x, y)

    def predict(self, rows: Rows) -> tuple[np.ndarray, np.ndarray | None]:
        """(scores, classes): the positive-class probability or value per row; classes for multi-class."""
        linear = self._linear()
        if linear is not None:
            scores = linear.scores(rows)
            if scores is not None:
                return scores, None
        if self.task == "regression":
            predict = self.estimator.predict_one
            return np.fromiter((predict(x) or 0.0 for x in rows), dtype=np.float64, count=len(rows)), None
        proba = self.estimator.predict_proba_one
        if self.binary:
            return np.fromiter((proba(x).get(True, 0.0) for x in rows), dtype=np.float64, count=len(rows)), None
        answers = [proba(x) for x in rows]
        best = [max(a, key=a.get) if a else "" for a in answers]
        return np.array([a.get(b, 0.0) for a, b in zip(answers, best, strict=True)]), np.array(best, dtype=str)
