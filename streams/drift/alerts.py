"""The alerts the value-drift pipeline raises, built from its findings (pure: no Kafka).

Drift and skew of one judged window, a detector's change in the sequence of
window means, drift seen only over several windows together. Each alert has a
deterministic id from (model, reference version, window, finding), so a
re-processed window raises no second alert.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from driftline.alerts import Alert
from streams.drift.decision import DriftReport, FeatureResult
from streams.drift.detectors import Detection
from streams.drift.summary import WindowSummary


def feature_evidence(f: FeatureResult) -> dict[str, Any]:
    """What an operator needs to rank a drifted feature: statistic, its critical value, p-value, rows."""
    return {"name": f.name, "statistic": f.method, "value": f.value, "threshold": f.threshold,
            "p_value": f.p_value, "alpha": f.alpha, "p_value_from": f.how, "rows": f.rows,
            "effect_sizes": f.tests}


def _finding_text(f: FeatureResult) -> str:
    value = "" if f.value is None else f"={f.value:.3g}"
    return f"{f.name} {f.method}{value} (p={f.p_value:.2g} < {f.alpha:.2g}, {f.rows} rows)"


def alerts_for(report: DriftReport, summary: WindowSummary) -> list[Alert]:
    """The drift and skew alerts one judged window raises (deterministic ids)."""
    common = {"model_version": summary.model_version, "window_start": summary.window_start,
              "window_end": summary.window_end, "reference_version": report.reference_version,
              "sample_size": summary.rows}
    alerts = []
    drifted = report.drifted()
    if drifted:
        names = sorted(f.name for f in drifted)
        alerts.append(Alert.create(
            "driftline.drift", report.model,
            severity="critical" if report.dataset_drift else "warning",
            identity=(summary.window_start, "drift", *names),
            data={**common, "drift_share": report.drift_share,
                  "message": f"{len(names)} feature(s) drifted: " + ", ".join(map(_finding_text, drifted)),
                  "features": [feature_evidence(f) for f in drifted]}))
    for segment, found in sorted(report.drifted_segments().items()):
        names = sorted(f.name for f in found)
        alerts.append(Alert.create(
            "driftline.drift", report.model, severity="warning",
            identity=(summary.window_start, "drift", segment, *names),
            data={**common, "segment": segment,
                  "sample_size": summary.segments[segment].rows if segment in summary.segments else 0,
                  "message": f"segment {segment}: {len(names)} feature(s) drifted: "
                             + ", ".join(map(_finding_text, found)),
                  "features": [feature_evidence(f) for f in found]}))
    skewed = [f for f in report.features.values() if f.skew]
    if skewed:
        names = sorted(f.name for f in skewed)
        alerts.append(Alert.create(
            "driftline.skew", report.model, severity="warning",
            identity=(summary.window_start, "skew", *names),
            data={**common,
                  "message": "schema skew: " + "; ".join(
                      f"{f.name} " + ", ".join(f"{s.kind} {s.rate:.1%}" for s in f.skew) for f in skewed),
                  "features": [{"name": f.name, "statistic": s.kind, "value": s.rate,
                                "threshold": s.threshold, "count": s.count, "examples": s.examples}
                               for f in skewed for s in f.skew]}))
    return alerts


def detector_alerts(detections: list[Detection], summary: WindowSummary, reference_version: str) -> list[Alert]:
    """One alert per feature whose window-mean sequence a river detector flagged."""
    by_feature: dict[str, list[Detection]] = defaultdict(list)
    for d in detections:
        by_feature[d.feature].append(d)
    alerts = []
    for feature, found in sorted(by_feature.items()):
        kinds = sorted(d.detector for d in found)
        alerts.append(Alert.create(
            "driftline.drift", summary.model, severity="warning",
            identity=(summary.window_start, "detector", feature, *kinds),
            data={"model_version": summary.model_version, "window_start": summary.window_start,
                  "window_end": summary.window_end, "reference_version": reference_version,
                  "sample_size": summary.rows,
                  "message": f"{feature}: its window means changed ({', '.join(kinds)}; z={found[0].z:.2f})",
                  "features": [{"name": feature, "statistic": d.detector, "value": d.z, "threshold": None}
                               for d in found]}))
    return alerts


def rolling_alerts(rolling: DriftReport, summary: WindowSummary, latest: DriftReport,
                   windows: int) -> list[Alert]:
    """Drift the last ``windows`` windows show together that the latest window alone did not."""
    already = {f.name for f in latest.drifted()}
    slow = [f for f in rolling.drifted() if f.name not in already]
    if not slow:
        return []
    names = sorted(f.name for f in slow)
    return [Alert.create(
        "driftline.drift", summary.model, severity="warning",
        identity=(summary.window_end, "rolling", windows, *names),
        data={"model_version": summary.model_version, "window_start": summary.window_start,
              "window_end": summary.window_end, "reference_version": rolling.reference_version,
              "sample_size": summary.rows, "rolling_windows": windows,
              "message": f"slow drift over the last {windows} windows: " + ", ".join(
                  map(_finding_text, slow)),
              "features": [feature_evidence(f) for f in slow]})]
