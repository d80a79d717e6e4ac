"""Model quality from (label, prediction) pairs, as arrays: the vocabulary monitor and trainer share.

The monitor's decay check and the trainer's validation judge a model by the
same numbers, so they live here, below both services (which never import
each other).

Classification labels are canonical strings ("1"/"0" for booleans and
integers); a prediction's class is its ``predicted_class`` when the model
gave one, else ``score >= 0.5`` for a binary model. Probability metrics
(log loss, ROC AUC) need a binary task and a score.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

BINARY_CLASSES = frozenset({"0", "1"})
EPS = 1e-15
# Metrics where larger is better; the others (log loss, MAE, RMSE) are errors.
HIGHER_IS_BETTER = frozenset({"accuracy", "precision", "recall", "f1", "roc_auc"})


def canonical_labels(values: list | np.ndarray) -> np.ndarray:
    """Labels as class strings: True/1 -> "1", False/0 -> "0", strings as given."""
    array = np.asarray(values)
    if array.dtype.kind in "biu":
        return array.astype(np.int64).astype(str)
    if array.dtype.kind == "f" and np.all(np.mod(array, 1) == 0):
        return array.astype(np.int64).astype(str)
    if array.dtype.kind in "fU":
        return array.astype(str)
    # a mix of kinds in one event (rare): convert each value
    return np.array([str(int(v)) if isinstance(v, (bool, int)) else str(v) for v in values], dtype=str)


def predicted_classes(scores: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    if classes is not None:
        return np.asarray(classes, dtype=str)
    return np.where(np.asarray(scores) >= 0.5, "1", "0")


def binary_f1(y: np.ndarray, predicted: np.ndarray) -> float:
    tp = float(np.sum(y & predicted))
    denominator = 2 * tp + float(np.sum(~y & predicted)) + float(np.sum(y & ~predicted))
    return 2 * tp / denominator if denominator else 0.0


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    classes = np.union1d(truth, predicted)
    return float(np.mean([binary_f1(truth == c, predicted == c) for c in classes])) if len(classes) else 0.0


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney U over the ranks (ties averaged); NaN when one class is absent."""
    from scipy.stats import rankdata  # here: scipy.stats is seconds of start-up for `driftline check`

    positives = int(np.sum(y))
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = rankdata(score)
    return float((np.sum(ranks[y]) - positives * (positives + 1) / 2) / (positives * negatives))


def classification_metrics(truth: np.ndarray, scores: np.ndarray | None,
                           classes: np.ndarray | None) -> dict[str, float]:
    """accuracy and F1 always; log loss and ROC AUC when binary with scores (NaN scores excluded)."""
    if len(truth) == 0:
        return {}
    truth = np.asarray(truth, dtype=str)
    predicted = predicted_classes(scores if scores is not None else np.zeros(len(truth)), classes)
    out = {"accuracy": float(np.mean(predicted == truth))}
    binary = set(np.unique(truth)) | set(np.unique(predicted)) <= BINARY_CLASSES
    if binary:
        y = truth == "1"
        positive = predicted == "1"
        out["f1"] = binary_f1(y, positive)
        hits = float(np.sum(y & positive))
        out["precision"] = hits / float(np.sum(positive)) if positive.any() else 0.0
        out["recall"] = hits / float(np.sum(y)) if y.any() else 0.0
        if scores is not None:
            finite = np.isfinite(scores) & (scores >= 0) & (scores <= 1)
            if finite.any():
                out["log_loss"] = log_loss(y[finite], scores[finite])
                auc = roc_auc(y[finite], scores[finite])
                if not math.isnan(auc):
                    out["roc_auc"] = auc
    else:
        out["f1"] = macro_f1(truth, predicted)
    return out


def regression_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    if len(truth) == 0:
        return {}
    error = np.asarray(predicted, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error ** 2)))}


def worse_by(metric: str, value: float, baseline: float) -> float:
    """How much worse ``value`` is than ``baseline`` (positive = worse), in the metric's own units."""
    return baseline - value if metric in HIGHER_IS_BETTER else value - baseline




def label_numbers(values: list[Any] | np.ndarray) -> np.ndarray:
    """Regression labels as float64; NaN for all of them when any is not a number."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.full(len(values), np.nan)
