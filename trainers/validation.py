"""Candidate versus champion on the same holdout: every check, with its numbers.

Checks (each recorded in the run, passed or not): enough holdout rows; no
NaN/inf outputs; metric floors; at most the allowed regression of the
primary metric against the champion; no segment (a value of a segment
feature with enough rows) worse than the champion's beyond a tolerance;
single-row predict latency p99 and artifact size within budget; the
candidate reads only features the serving contract carries, with the same
kinds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from driftline.modeling import Model
from driftline.quality import HIGHER_IS_BETTER, classification_metrics, regression_metrics, worse_by
from schemas import FeatureSpec
from trainers.dataset import Dataset
from trainers.modelfile import ModelConfig

TOPIC_HEADROOM = 64 * 1024  # the ModelRecord's other fields and the message overhead


@dataclass
class Evaluation:
    rows: int
    metrics: dict[str, float]
    segments: dict[str, dict[str, float]] = field(default_factory=dict)  # "feature=value" -> metrics + rows
    non_finite: int = 0
    latency_p99_ms: float = 0.0
    scores: np.ndarray | None = None  # the model's answers on the holdout (its calibration is learned on them)
    classes: np.ndarray | None = None


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: float | None = None
    threshold: float | None = None
    detail: str = ""

    def to_avro(self) -> dict:
        return {"name": self.name, "passed": self.passed, "value": _finite_or_none(self.value),
                "threshold": _finite_or_none(self.threshold), "detail": self.detail}


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def quality(task: str, data: Dataset, scores: np.ndarray, classes: np.ndarray | None) -> dict[str, float]:
    if task == "regression":
        return regression_metrics(data.numeric_labels, scores)
    return classification_metrics(data.labels, scores, classes)


def evaluate(model: Model, holdout: Dataset, segments: tuple[str, ...] = (),
             latency_rows: int = 200) -> Evaluation:
    rows = holdout.table.to_rows()
    scores, classes = model.predict(rows)
    non_finite = int(np.sum(~np.isfinite(scores)))
    evaluation = Evaluation(holdout.rows, quality(model.task, holdout, scores, classes), non_finite=non_finite,
                            scores=scores, classes=classes)
    for feature in segments:
        if feature not in holdout.table.columns:
            continue
        column = np.asarray(holdout.table.columns[feature]).astype(str)
        for value in np.unique(column).tolist():
            mask = column == value
            part = holdout.take(np.flatnonzero(mask))
            metrics = quality(model.task, part, scores[mask], classes[mask] if classes is not None else None)
            evaluation.segments[f"{feature}={value}"] = {**metrics, "rows": float(mask.sum())}
    timings = []
    for row in rows[:latency_rows]:
        started = time.perf_counter()
        model.predict([row])
        timings.append((time.perf_counter() - started) * 1000)
    evaluation.latency_p99_ms = float(np.percentile(timings, 99)) if timings else 0.0
    return evaluation


def _allowed_regression(metric: str, champion: float, absolute: float, relative: float) -> float:
    return max(absolute, relative * abs(champion))


def validate(config: ModelConfig, candidate: Evaluation, champion: Evaluation | None, artifact_bytes: int,
             max_message_bytes: int, candidate_spec: FeatureSpec, serving_spec: FeatureSpec | None) -> list[Check]:
    policy = config.validation
    primary = config.primary_metric
    checks = [Check("holdout_rows", candidate.rows >= policy.min_holdout_rows, candidate.rows,
                    policy.min_holdout_rows, "rows in the time-ordered holdout"),
              Check("finite_outputs", candidate.non_finite == 0, candidate.non_finite, 0,
                    "NaN or infinite predictions on the holdout")]
    for metric, floor in sorted(policy.floors.items()):
        value = candidate.metrics.get(metric, math.nan)
        ok = math.isfinite(value) and (value >= floor if metric in HIGHER_IS_BETTER else value <= floor)
        checks.append(Check(f"floor:{metric}", ok, value, floor,
                            "at least" if metric in HIGHER_IS_BETTER else "at most"))
    value = candidate.metrics.get(primary, math.nan)
    if champion is not None:
        base = champion.metrics.get(primary, math.nan)
        allowed = _allowed_regression(primary, base, policy.max_regression, policy.max_relative_regression)
        worse = worse_by(primary, value, base) if math.isfinite(value) and math.isfinite(base) else math.inf
        checks.append(Check(f"regression:{primary}", worse <= allowed, worse, allowed,
                            f"candidate {value:.4f} vs champion {base:.4f} (positive = worse)"))
        failing = []
        worst = -math.inf
        for name, metrics in sorted(candidate.segments.items()):
            theirs = champion.segments.get(name)
            if theirs is None or min(metrics["rows"], theirs["rows"]) < policy.segment_min_rows:
                continue
            mine, base_segment = metrics.get(primary, math.nan), theirs.get(primary, math.nan)
            if not (math.isfinite(mine) and math.isfinite(base_segment)):
                continue
            tolerance = (policy.segment_tolerance if primary in HIGHER_IS_BETTER
                         else policy.segment_tolerance * abs(base_segment))
            worse = worse_by(primary, mine, base_segment)
            worst = max(worst, worse)
            if worse > tolerance:
                failing.append(f"{name}: {mine:.4f} vs {base_segment:.4f}")
        checks.append(Check(f"segments:{primary}", not failing, worst if math.isfinite(worst) else None,
                            policy.segment_tolerance,
                            "regressed: " + "; ".join(failing) if failing
                            else f"no segment with >= {policy.segment_min_rows} rows regressed"))
    checks.append(Check("latency_p99_ms", candidate.latency_p99_ms <= policy.max_latency_p99_ms,
                        candidate.latency_p99_ms, policy.max_latency_p99_ms, "single-row predict"))
    size_budget = min(policy.max_artifact_bytes, max_message_bytes - TOPIC_HEADROOM)
    checks.append(Check("artifact_bytes", artifact_bytes <= size_budget, artifact_bytes, size_budget,
                        "compressed artifact"))
    if serving_spec is not None:
        kinds = serving_spec.kinds()
        missing = [f.name for f in candidate_spec.features if f.name not in kinds]
        changed = [f.name for f in candidate_spec.features if f.name in kinds and kinds[f.name] != f.kind]
        checks.append(Check("input_compatible", not missing and not changed, len(missing) + len(changed), 0,
                            ("not in the serving spec: " + ", ".join(missing) if missing else "")
                            + (" kind changed: " + ", ".join(changed) if changed else "")
                            or "reads only features the serving spec carries"))
    return checks
