"""Model quality before the labels arrive: confidence-based estimation (CBPE) and direct loss estimation.

A classifier whose scores are *calibrated* tells us how often it is right:
if it says 0.8 for 1,000 rows, about 800 of them are positive. So once its
scores are calibrated on labelled reference data (isotonic regression of
the outcome on the score), every metric's expected confusion matrix follows
from the calibrated probabilities alone, window by window, with no label:

* **binary**: row *i* is positive with probability ``p_i``, so the expected
  true positives are ``sum(p_i)`` over rows predicted positive, false
  positives ``sum(1 - p_i)`` over them, and so on; accuracy, precision,
  recall and F1 follow, and ROC AUC is the expected Mann-Whitney statistic
  over the expected positive and negative masses.
* **multi-class**: a prediction event carries the predicted class and its
  probability, so the confidence is calibrated to P(correct); a wrong row's
  true class is spread by the reference's confusion among mistakes
  (P(true = k | predicted = j, wrong)), which gives accuracy and macro F1.
* **regression**: direct loss estimation, a small additive model (ridge on
  reference-quantile bins of each feature and of the prediction) of the
  expected absolute and squared error, fitted on the reference's residuals.

**The band** is the window's sampling error: the realised metric is a
function of labels that are random given the calibrated probabilities, so
labels are drawn from them (Monte Carlo, vectorised over draws) and the
band is the central interval of the realised metric. When the calibration
holds, the realised metric falls in the band at its nominal rate.

**When it fails**: a calibration learned on the reference assumes P(y | x)
stays put (covariate shift only). Concept drift, where the same inputs now
mean other labels, is invisible to every label-free method; only realised
quality (labels) sees it.

Pure numpy/scipy, below the monitor, the trainer and ``check`` (which all
use it), like :mod:`driftline.quality`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftline.quality import BINARY_CLASSES

# scipy is imported inside the functions that need it: `driftline check` imports this module for
# its report type, and scipy.stats costs seconds of start-up that a check without a calibration
# should not pay.

BAND_LEVEL = 0.95
DRAWS = 400
CALIBRATION_DRAWS = 40
MAX_DRAW_CELLS = 4_000_000  # labels drawn per chunk (draws x rows): bounds the memory of a band
MAX_BAND_ROWS = 50_000  # larger windows: the band's width is measured on this many rows and scaled
MAX_KNOTS = 512
BINS = 10
RIDGE = 1.0
MAX_LEVELS = 20

ESTIMATED_BINARY = ("accuracy", "precision", "recall", "f1", "roc_auc")
ESTIMATED_MULTICLASS = ("accuracy", "f1")  # f1: macro F1, as the realised windows name it
ESTIMATED_REGRESSION = ("mae", "rmse")


@dataclass(frozen=True)
class Estimate:
    """One metric's label-free estimate and the central ``level`` band of its realised value."""

    value: float
    lower: float
    upper: float


@dataclass
class LossModel:
    """Direct loss estimation: an additive model of a regression's expected |error| and error²."""

    numeric: dict[str, list[float]] = field(default_factory=dict)  # feature -> inner bin edges
    categorical: dict[str, list[str]] = field(default_factory=dict)  # feature -> levels with a column
    prediction_edges: list[float] = field(default_factory=list)
    coef_abs: list[float] = field(default_factory=list)
    coef_sq: list[float] = field(default_factory=list)

    def basis(self, columns: Mapping[str, np.ndarray], prediction: np.ndarray) -> np.ndarray:
        """Rows x (1 + one-hot bins): intercept, each numeric feature's and the prediction's bin,
        each categorical's level (a missing or unseen value has no column: the intercept's share)."""
        n = len(prediction)
        parts = [np.ones((n, 1))]
        for name, edges in [*self.numeric.items(), ("", self.prediction_edges)]:
            values = np.asarray(columns[name], dtype=float) if name else np.asarray(prediction, dtype=float)
            cells = np.searchsorted(np.asarray(edges), values, side="right")
            cells[~np.isfinite(values)] = len(edges)  # a missing number falls in the last bin's column
            one_hot = np.zeros((n, len(edges) + 1))
            one_hot[np.arange(n), cells] = 1.0
            parts.append(one_hot)
        for name, levels in self.categorical.items():
            values = np.asarray(columns[name], dtype=object).astype(str)
            parts.append((values[:, None] == np.asarray(levels, dtype=str)[None, :]).astype(float))
        return np.hstack(parts)

    @classmethod
    def fit(cls, columns: Mapping[str, np.ndarray], kinds: Mapping[str, str], prediction: np.ndarray,
            truth: np.ndarray) -> LossModel:
        model = cls()
        for name, kind in kinds.items():
            if kind == "numeric":
                values = np.asarray(columns[name], dtype=float)
                model.numeric[name] = _inner_edges(values)
            else:
                values = np.asarray(columns[name], dtype=object).astype(str)
                levels, counts = np.unique(values, return_counts=True)
                model.categorical[name] = levels[np.argsort(-counts)][:MAX_LEVELS].tolist()
        model.prediction_edges = _inner_edges(np.asarray(prediction, dtype=float))
        errors = np.asarray(truth, dtype=float) - np.asarray(prediction, dtype=float)
        design = model.basis(columns, prediction)
        gram = design.T @ design + RIDGE * np.eye(design.shape[1])
        model.coef_abs = np.linalg.solve(gram, design.T @ np.abs(errors)).tolist()
        model.coef_sq = np.linalg.solve(gram, design.T @ errors**2).tolist()
        return model

    def expected(self, columns: Mapping[str, np.ndarray], prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: expected |error| and expected error² (the latter at least the former squared)."""
        design = self.basis(columns, prediction)
        absolute = np.maximum(design @ np.asarray(self.coef_abs), 0.0)
        squared = np.maximum(design @ np.asarray(self.coef_sq), absolute**2)
        return absolute, squared


def _inner_edges(values: np.ndarray) -> list[float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    return np.unique(np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1])).tolist()


@dataclass
class Calibration:
    """What a model's scores mean, learned on labelled reference data; stored in profiles and ModelRecords."""

    task: str  # "binary", "multiclass" or "regression"
    rows: int
    score_knots: list[float] = field(default_factory=list)
    probability_knots: list[float] = field(default_factory=list)
    knot_rows: list[float] = field(default_factory=list)  # reference rows behind each knot's block
    classes: list[str] = field(default_factory=list)
    confusion: list[float] = field(default_factory=list)  # multi-class: K x K, P(true=k | predicted=j, wrong)
    loss: LossModel | None = None
    expected: dict[str, float] = field(default_factory=dict)  # realised quality on the reference
    label_column: str = ""  # where offline data (driftline check) holds the label, score and class
    score_column: str = ""
    class_column: str = ""

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated P(positive) (binary) or P(correct) (multi-class) for raw scores."""
        return np.interp(np.asarray(scores, dtype=float), self.score_knots, self.probability_knots)

    def perturbed(self, scores: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` x rows calibrated probabilities under the calibration's own sampling error: each
        isotonic block's probability moves by a normal draw of its binomial standard error (a
        parametric bootstrap of the calibration, so the band also holds what 10,000 reference rows
        cannot know exactly)."""
        knots = np.asarray(self.probability_knots)
        weights = np.maximum(np.asarray(self.knot_rows), 1.0)
        sd = np.sqrt(np.maximum(knots * (1 - knots), 1.0 / weights) / weights)
        # both ends of a block share its draw: knots come in pairs of equal probability and weight
        block = np.r_[0, np.cumsum((np.diff(knots) != 0) | (np.diff(weights) != 0))]
        noise = rng.standard_normal((count, int(block[-1]) + 1))[:, block] * sd
        moved = np.clip(knots[None, :] + noise, 0.0, 1.0)
        positions = np.interp(np.asarray(scores, dtype=float), self.score_knots, np.arange(len(knots)))
        low = np.floor(positions).astype(int)
        high = np.minimum(low + 1, len(knots) - 1)
        share = positions - low
        return moved[:, low] * (1 - share) + moved[:, high] * share

    def to_avro(self) -> dict[str, Any]:
        loss = self.loss or LossModel()
        return {"task": self.task, "rows": self.rows, "score_knots": self.score_knots,
                "probability_knots": self.probability_knots, "knot_rows": self.knot_rows, "classes": self.classes,
                "confusion": self.confusion, "expected": self.expected,
                "loss_numeric": [{"name": k, "edges": v} for k, v in loss.numeric.items()],
                "loss_categorical": [{"name": k, "levels": v} for k, v in loss.categorical.items()],
                "prediction_edges": loss.prediction_edges, "coef_abs": loss.coef_abs, "coef_sq": loss.coef_sq,
                "label_column": self.label_column, "score_column": self.score_column,
                "class_column": self.class_column}

    @classmethod
    def from_avro(cls, record: Mapping[str, Any] | None) -> Calibration | None:
        if not record:
            return None
        loss = None
        if record["task"] == "regression":
            loss = LossModel({f["name"]: list(f["edges"]) for f in record["loss_numeric"]},
                             {f["name"]: list(f["levels"]) for f in record["loss_categorical"]},
                             list(record["prediction_edges"]), list(record["coef_abs"]), list(record["coef_sq"]))
        return cls(record["task"], record["rows"], list(record["score_knots"]), list(record["probability_knots"]),
                   list(record["knot_rows"]), list(record["classes"]), list(record["confusion"]), loss,
                   dict(record["expected"]), record["label_column"], record["score_column"], record["class_column"])


def _isotonic_knots(scores: np.ndarray, outcome: np.ndarray) -> tuple[list[float], list[float], list[float]]:
    """Isotonic regression of a 0/1 outcome on the score, kept as the ends of its constant blocks
    (with the reference rows of each block, which say how well its probability is known)."""
    from scipy.optimize import isotonic_regression

    order_scores, inverse = np.unique(scores, return_inverse=True)
    weights = np.bincount(inverse).astype(float)
    means = np.bincount(inverse, weights=outcome.astype(float)) / weights
    fitted = isotonic_regression(means, weights=weights, increasing=True).x
    change = np.flatnonzero(np.diff(fitted)) + 1
    starts = np.r_[0, change]
    block_rows = np.add.reduceat(weights, starts)[np.searchsorted(starts, np.arange(len(fitted)), side="right") - 1]
    keep = np.unique(np.r_[0, change - 1, change, len(fitted) - 1])  # both ends of each block
    if len(keep) > MAX_KNOTS:
        keep = keep[np.linspace(0, len(keep) - 1, MAX_KNOTS).round().astype(int)]
    return order_scores[keep].tolist(), np.clip(fitted[keep], 0.0, 1.0).tolist(), block_rows[keep].tolist()


def calibrate(truth: np.ndarray, scores: np.ndarray, predicted: np.ndarray | None = None, *,
              task: str = "classification", columns: Mapping[str, np.ndarray] | None = None,
              kinds: Mapping[str, str] | None = None) -> Calibration:
    """Learn a model's calibration from labelled reference rows (labels, its scores, its classes).

    Classification: ``truth`` as class strings, ``scores`` the positive-class
    probability (binary) or the predicted class's probability (multi-class,
    with ``predicted``). Regression: ``truth`` and ``scores`` are numbers and
    ``columns``/``kinds`` (feature -> numeric/categorical) feed the loss model.
    """
    from driftline.quality import canonical_labels, classification_metrics, regression_metrics

    scores = np.asarray(scores, dtype=float)
    keep = np.isfinite(scores)
    if task == "regression":
        truth = np.asarray(truth, dtype=float)
        keep &= np.isfinite(truth)
        kept_columns = {k: np.asarray(v)[keep] for k, v in (columns or {}).items()}
        loss = LossModel.fit(kept_columns, dict(kinds or {}), scores[keep], truth[keep])
        return Calibration("regression", int(keep.sum()), loss=loss,
                           expected=regression_metrics(truth[keep], scores[keep]))
    truth = canonical_labels(truth)[keep]  # 1, 1.0 and True are the class "1"
    scores = scores[keep]
    classes = None if predicted is None else canonical_labels(predicted)[keep]
    expected = {k: v for k, v in classification_metrics(truth, scores, classes).items() if math.isfinite(v)}
    if classes is None or set(np.unique(truth)) | set(np.unique(classes)) <= BINARY_CLASSES:
        positive = truth == "1"
        return Calibration("binary", len(truth), *_isotonic_knots(scores, positive), expected=expected)
    correct = classes == truth
    score_knots, probability_knots, knot_rows = _isotonic_knots(scores, correct)
    names = np.union1d(truth, classes)
    index = {c: i for i, c in enumerate(names.tolist())}
    k = len(names)
    wrong = ~correct
    counts = np.zeros((k, k))
    np.add.at(counts, (np.vectorize(index.get)(classes[wrong]), np.vectorize(index.get)(truth[wrong])), 1.0)
    counts += 0.5 * (1 - np.eye(k))  # a pair never confused on the reference keeps a little mass
    np.fill_diagonal(counts, 0.0)
    confusion = counts / counts.sum(axis=1, keepdims=True)
    return Calibration("multiclass", len(truth), score_knots, probability_knots, knot_rows, names.tolist(),
                       confusion.ravel().tolist(), expected=expected)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), 0.0)


def _binary_metrics(labels: np.ndarray, predicted: np.ndarray, ranks: np.ndarray) -> dict[str, np.ndarray]:
    """Realised binary metrics of each draw of labels (draws x rows, boolean), vectorised over draws."""
    rows = labels.shape[1]
    tp = labels[:, predicted].sum(axis=1).astype(float)
    fp = predicted.sum() - tp
    positives = labels.sum(axis=1).astype(float)
    fn = positives - tp
    tn = rows - tp - fp - fn
    negatives = rows - positives
    auc = _safe_ratio(labels.astype(float) @ ranks - positives * (positives + 1) / 2, positives * negatives)
    auc = np.where((positives > 0) & (negatives > 0), auc, np.nan)
    return {"accuracy": (tp + tn) / rows, "precision": _safe_ratio(tp, tp + fp), "recall": _safe_ratio(tp, tp + fn),
            "f1": _safe_ratio(2 * tp, 2 * tp + fp + fn), "roc_auc": auc}


def _expected_binary(p: np.ndarray, predicted: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """CBPE's point estimates: each metric of the expected confusion matrix."""
    tp, fp = float(p[predicted].sum()), float((1 - p[predicted]).sum())
    fn, tn = float(p[~predicted].sum()), float((1 - p[~predicted]).sum())
    n = len(p)
    out = {"accuracy": (tp + tn) / n, "precision": tp / (tp + fp) if tp + fp else 0.0,
           "recall": tp / (tp + fn) if tp + fn else 0.0,
           "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0}
    # Expected Mann-Whitney: sum over ordered pairs of P(i positive, j negative) [s_i > s_j, or half on ties].
    values, group = np.unique(scores, return_inverse=True)
    pos_mass = np.bincount(group, weights=p, minlength=len(values))
    neg_mass = np.bincount(group, weights=1 - p, minlength=len(values))
    neg_below = np.cumsum(neg_mass) - neg_mass
    same = np.bincount(group, weights=p * (1 - p), minlength=len(values))  # i = j is not a pair
    pairs = float(np.sum(pos_mass * neg_below) + 0.5 * np.sum(pos_mass * neg_mass - same))
    total = float(p.sum() * (1 - p).sum() - np.sum(p * (1 - p)))
    out["roc_auc"] = pairs / total if total > 0 else math.nan
    return out


def _band_draws(rows: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Which rows the band is measured on, and how many draws per chunk fit the memory bound."""
    sample = rng.choice(rows, MAX_BAND_ROWS, replace=False) if rows > MAX_BAND_ROWS else np.arange(rows)
    return np.sort(sample), max(1, min(DRAWS, MAX_DRAW_CELLS // max(len(sample), 1)))


def _band(draws: dict[str, list[np.ndarray]], point: dict[str, float], sampled: int, rows: int,
          level: float, calibration_sd: Mapping[str, float]) -> dict[str, Estimate]:
    """Central ``level`` interval of each metric's draws, around the point estimate, widened in
    quadrature by the calibration's own error; a band measured on a subsample of a large window
    is narrowed by sqrt(sampled / rows) (metrics that are averages)."""
    from scipy.special import ndtri

    scale = math.sqrt(sampled / rows)
    tail = (1 - level) / 2
    z = float(ndtri(1 - tail))
    out = {}
    for name, value in point.items():
        values = np.concatenate(draws[name])
        values = values[np.isfinite(values)]
        if not math.isfinite(value) or values.size == 0:
            continue
        low, high = np.quantile(values, [tail, 1 - tail])
        centre = float(np.mean(values))
        extra = (z * calibration_sd.get(name, 0.0)) ** 2
        below = math.sqrt(((centre - float(low)) * scale) ** 2 + extra)
        above = math.sqrt(((float(high) - centre) * scale) ** 2 + extra)
        out[name] = Estimate(value, value - below, value + above)
    return out


def _spread(points: list[dict[str, float]]) -> dict[str, float]:
    """Standard deviation of each metric over point estimates from perturbed calibrations."""
    names = points[0].keys() if points else ()
    return {n: float(np.nanstd([p[n] for p in points])) for n in names}


def estimate_binary(calibration: Calibration, scores: np.ndarray, predicted: np.ndarray | None = None, *,
                    level: float = BAND_LEVEL, seed: int = 0) -> dict[str, Estimate]:
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=float)
    keep = np.isfinite(scores)
    scores = scores[keep]
    if scores.size == 0:
        return {}
    p = calibration.probabilities(scores)
    positive = (np.asarray(predicted, dtype=str)[keep] == "1") if predicted is not None else scores >= 0.5
    point = _expected_binary(p, positive, scores)
    rng = np.random.default_rng(seed)
    sample, per_chunk = _band_draws(len(p), rng)
    ranks = rankdata(scores[sample])
    draws: dict[str, list[np.ndarray]] = {k: [] for k in point}
    for start in range(0, DRAWS, per_chunk):
        labels = rng.random((min(per_chunk, DRAWS - start), len(sample))) < p[sample]
        for name, values in _binary_metrics(labels, positive[sample], ranks).items():
            draws[name].append(values)
    moved = calibration.perturbed(scores, CALIBRATION_DRAWS, rng)
    spread = _spread([_expected_binary(q, positive, scores) for q in moved])
    return _band(draws, point, len(sample), len(p), level, spread)


def estimate_multiclass(calibration: Calibration, scores: np.ndarray, predicted: np.ndarray, *,
                        level: float = BAND_LEVEL, seed: int = 0) -> dict[str, Estimate]:
    scores = np.asarray(scores, dtype=float)
    keep = np.isfinite(scores)
    classes = np.asarray(calibration.classes, dtype=str)
    k = len(classes)
    predicted = np.asarray(predicted, dtype=str)[keep]
    index = np.searchsorted(classes, predicted)
    known = (index < k) & (classes[np.minimum(index, k - 1)] == predicted)
    if not np.all(known):  # a class the reference never saw: its rows cannot be spread, only counted
        predicted, index, scores = predicted[known], index[known], scores[keep][known]
    else:
        scores = scores[keep]
    if scores.size == 0:
        return {}
    c = calibration.probabilities(scores)
    confusion = np.asarray(calibration.confusion).reshape(k, k)
    predicted_count = np.bincount(index, minlength=k).astype(float)
    tp = np.bincount(index, weights=c, minlength=k)
    fn = (1 - c) @ confusion[index] if len(c) else np.zeros(k)
    point = {"accuracy": float(c.mean()), "f1": _macro_f1(tp, predicted_count - tp, fn)}
    rng = np.random.default_rng(seed)
    sample, per_chunk = _band_draws(len(c), rng)
    per_chunk = max(1, per_chunk // max(k, 1))
    cumulative = np.cumsum(confusion, axis=1)[index[sample]]  # rows x K
    draws: dict[str, list[np.ndarray]] = {name: [] for name in point}
    for start in range(0, DRAWS, per_chunk):
        d = min(per_chunk, DRAWS - start)
        correct = rng.random((d, len(sample))) < c[sample]
        drawn = (rng.random((d, len(sample)))[..., None] > cumulative[None]).sum(axis=2)
        truth = np.where(correct, index[sample][None, :], np.minimum(drawn, k - 1))
        draws["accuracy"].append(correct.mean(axis=1))
        draws["f1"].append(_macro_f1_draws(truth, index[sample], k))
    moved = calibration.perturbed(scores, CALIBRATION_DRAWS, rng)
    spread = _spread([{"accuracy": float(q.mean()),
                       "f1": _macro_f1(np.bincount(index, weights=q, minlength=k),
                                       predicted_count - np.bincount(index, weights=q, minlength=k),
                                       (1 - q) @ confusion[index])} for q in moved])
    return _band(draws, point, len(sample), len(c), level, spread)


def _macro_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    """Mean F1 over the classes present (predicted, or expected among the truths), like the realised metric."""
    present = (tp + fp > 0) | (tp + fn > 0.5)
    denominator = 2 * tp + fp + fn
    f1 = np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1.0), 0.0)
    return float(f1[present].mean()) if present.any() else 0.0


def _macro_f1_draws(truth: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """Realised macro F1 of each draw (draws x rows of true class indices), over classes present in it."""
    draws = truth.shape[0]
    offsets = (np.arange(draws) * k)[:, None]
    true_counts = np.bincount((truth + offsets).ravel(), minlength=draws * k).reshape(draws, k)
    hits = np.bincount((truth + offsets)[truth == predicted[None, :]], minlength=draws * k).reshape(draws, k)
    predicted_counts = np.bincount(predicted, minlength=k)[None, :]
    denominator = true_counts + predicted_counts
    f1 = np.where(denominator > 0, 2 * hits / np.where(denominator > 0, denominator, 1), 0.0)
    present = denominator > 0
    return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def estimate_regression(calibration: Calibration, prediction: np.ndarray, columns: Mapping[str, np.ndarray], *,
                        level: float = BAND_LEVEL) -> dict[str, Estimate]:
    """Estimated MAE and RMSE; band from the rows' expected error moments (normal theory per row)."""
    from scipy.stats import norm

    prediction = np.asarray(prediction, dtype=float)
    keep = np.isfinite(prediction)
    if not keep.any() or calibration.loss is None:
        return {}
    absolute, squared = calibration.loss.expected({k: np.asarray(v)[keep] for k, v in columns.items()},
                                                  prediction[keep])
    n = len(absolute)
    z = float(norm.ppf(0.5 + level / 2))
    mae = float(absolute.mean())
    mae_sd = math.sqrt(float(np.sum(np.maximum(squared - absolute**2, 0.0)))) / n
    mse = float(squared.mean())
    mse_sd = math.sqrt(float(np.sum(2 * squared**2))) / n  # Var(e^2) = 2 sigma^4 for a normal error
    rmse = math.sqrt(mse)
    rmse_sd = mse_sd / (2 * rmse) if rmse > 0 else 0.0
    return {"mae": Estimate(mae, max(mae - z * mae_sd, 0.0), mae + z * mae_sd),
            "rmse": Estimate(rmse, max(rmse - z * rmse_sd, 0.0), rmse + z * rmse_sd)}


def expected_correct(calibration: Calibration, scores: np.ndarray, predicted: np.ndarray | None = None,
                     ) -> np.ndarray | None:
    """Per row, the calibrated probability that the prediction is right (binary: P(positive) for a positive
    prediction, 1 - P(positive) for a negative one; multi-class: the calibrated confidence). Its mean is
    CBPE's accuracy; a rollout pairs it across two versions on the same requests. None for regression."""
    scores = np.asarray(scores, dtype=float)
    if calibration.task == "regression":
        return None
    p = calibration.probabilities(scores)
    if calibration.task == "multiclass":
        return p
    positive = scores >= 0.5 if predicted is None else np.asarray(predicted, dtype=str) == "1"
    return np.where(positive, p, 1.0 - p)


def estimate(calibration: Calibration, scores: np.ndarray, predicted: np.ndarray | None = None,
             columns: Mapping[str, np.ndarray] | None = None, *, level: float = BAND_LEVEL,
             seed: int = 0) -> dict[str, Estimate]:
    """Every metric the calibration can estimate for one window of predictions (no labels)."""
    if calibration.task == "regression":
        return estimate_regression(calibration, scores, columns or {}, level=level)
    if calibration.task == "multiclass":
        if predicted is None:
            return {}
        return estimate_multiclass(calibration, scores, predicted, level=level, seed=seed)
    return estimate_binary(calibration, scores, predicted, level=level, seed=seed)


__all__ = ["Calibration", "Estimate", "LossModel", "calibrate", "estimate", "expected_correct"]
