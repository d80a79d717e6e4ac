"""Quality metrics against independent computations, DDM against a per-row reference, and the label join."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from driftline.offsets import held_back
from driftline.quality import canonical_labels, classification_metrics, regression_metrics, roc_auc
from schemas.columns import float_buffer
from streams.decay.ddm import DDM
from streams.decay.join import LabelJoin
from streams.decay.judge import DecayJudge, DecayPolicy, QualityWindow, infer_task

rng = np.random.default_rng(7)


def test_classification_metrics_match_direct_computation() -> None:
    y = rng.random(2000) < 0.4
    score = np.clip(y * 0.3 + rng.random(2000) * 0.7, 0, 1)
    truth = np.where(y, "1", "0")
    got = classification_metrics(truth, score, None)
    predicted = score >= 0.5
    tp, fp, fn = np.sum(y & predicted), np.sum(~y & predicted), np.sum(y & ~predicted)
    assert got["accuracy"] == pytest.approx(np.mean(predicted == y))
    assert got["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert got["log_loss"] == pytest.approx(-np.mean(y * np.log(score) + (1 - y) * np.log(1 - score)))
    u = stats.mannwhitneyu(score[y], score[~y]).statistic
    assert got["roc_auc"] == pytest.approx(u / (y.sum() * (~y).sum()))


def test_auc_with_ties_and_single_class() -> None:
    y = np.array([True, False, True, False])
    assert roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert math.isnan(roc_auc(np.array([True, True]), np.array([0.1, 0.2])))


def test_multiclass_uses_predicted_classes_and_macro_f1() -> None:
    truth = np.array(["a", "b", "c", "a"])
    classes = np.array(["a", "b", "a", "a"])
    got = classification_metrics(truth, np.zeros(4), classes)
    assert got["accuracy"] == 0.75
    f1_a = 2 * 2 / (2 * 2 + 1 + 0)
    assert got["f1"] == pytest.approx((f1_a + 1.0 + 0.0) / 3)
    assert "roc_auc" not in got


def test_regression_metrics() -> None:
    truth, predicted = rng.normal(size=500), rng.normal(size=500)
    got = regression_metrics(truth, predicted)
    assert got["mae"] == pytest.approx(np.abs(predicted - truth).mean())
    assert got["rmse"] == pytest.approx(np.sqrt(((predicted - truth) ** 2).mean()))


def test_canonical_labels_and_task() -> None:
    assert canonical_labels([True, False]).tolist() == ["1", "0"]
    assert canonical_labels([1, 0, 1]).tolist() == ["1", "0", "1"]
    assert canonical_labels(["x", "y"]).tolist() == ["x", "y"]
    assert infer_task(np.array([0.0, 1.0])) == "classification"
    assert infer_task(np.array([0.5, 1.25])) == "regression"


def reference_ddm(errors: np.ndarray, min_rows: int = 300) -> int | None:
    """Per-row DDM exactly as Gama et al. describe it: the index of the first drift."""
    p_min = s_min = math.inf
    n = wrong = 0
    for i, e in enumerate(errors):
        n += 1
        wrong += e
        p = wrong / n
        s = math.sqrt(p * (1 - p) / n)
        if n < min_rows:
            continue
        if p + s <= p_min + s_min:
            p_min, s_min = p, s
        if p + s > p_min + 3 * s_min:
            return i
    return None


@pytest.mark.parametrize("batch", [1, 37, 500, 5000])
def test_ddm_batched_matches_per_row_reference(batch: int) -> None:
    local = np.random.default_rng(11)
    errors = np.concatenate([local.random(3000) < 0.1, local.random(2000) < 0.35]).astype(float)
    expected = reference_ddm(errors)
    assert expected is not None and expected > 3000
    ddm = DDM()
    fired_at = None
    for start in range(0, len(errors), batch):
        if ddm.update(errors[start:start + batch]) == "drift":
            fired_at = start
            break
    assert fired_at is not None and fired_at <= expected < fired_at + batch


def test_ddm_quiet_on_stable_errors() -> None:
    ddm = DDM()
    assert all(ddm.update(rng.random(500) < 0.2) != "drift" for _ in range(20))


def prediction(model: str, ids: list[str], scores: list[float], t: int, version: str = "1") -> dict:
    return {"model": model, "model_version": version, "event_time": t, "request_ids": ids,
            "prediction": float_buffer(np.array(scores)), "predicted_class": None}


def label(model: str, ids: list[str], values: list, t: int) -> dict:
    return {"model": model, "event_time": t, "request_ids": ids, "labels": values}


def test_join_any_arrival_order_and_offsets_held_back() -> None:
    join = LabelJoin(window_ms=1000, grace_ms=0, ttl_ms=10_000)
    p, lab = ("predictions", 0), ("labels", 0)
    join.add_prediction(prediction("m", ["a", "b", "c"], [0.9, 0.2, 0.7], 100), p, 10)
    result = join.add_label(label("m", ["c", "x"], [True, False], 200), lab, 5)  # x: prediction comes later
    assert result.joined == 1
    assert join.add_prediction(prediction("m", ["x"], [0.1], 300), p, 11).joined == 1
    # a and b still wait at offset 10; the label block at 5 is held by the open window
    assert held_back({p: 12, lab: 6}, join.holding()) == {p: 10, lab: 5}
    assert join.add_label(label("m", ["a", "b"], [1, 1], 2500), lab, 6).joined == 2
    keys = join.closable(lambda key: key[2] < 2000)
    assert keys == [("m", "1", 0)]  # the window at 2000 is still open
    pairs = join.close(keys[0])
    truth, _, scores, _ = pairs.arrays()
    assert sorted(zip(truth.tolist(), scores.tolist(), strict=True)) == [("0", 0.1), ("1", 0.7)]
    assert held_back({p: 12, lab: 7}, join.holding()) == {p: 10, lab: 6}
    join.close(("m", "1", 2000))
    assert held_back({p: 12, lab: 7}, join.holding()) == {p: 12, lab: 7}


def test_the_join_closes_what_the_stage_says_and_forgets_nothing_it_holds() -> None:
    join = LabelJoin(window_ms=1000, grace_ms=0, ttl_ms=10_000)
    p, lab = ("predictions", 0), ("labels", 0)
    for model in ("m", "n"):
        join.add_prediction(prediction(model, [f"{model}1", f"{model}2"], [0.9, 0.2], 100), p, 0)
        join.add_label(label(model, [f"{model}1", f"{model}2"], [1, 0], 150), lab, 0)
        join.add_prediction(prediction(model, [f"{model}3"], [0.9], 1100), p, 1)
        join.add_label(label(model, [f"{model}3"], [1], 5150), lab, 1)
    assert join.closable(lambda key: False) == [], "a label far ahead closes nothing by itself"
    assert join.closable(lambda key: key[0] == "m") == [("m", "1", 0), ("m", "1", 5000)]


def test_join_ttl_and_replayed_labels_of_published_windows() -> None:
    join = LabelJoin(window_ms=1000, grace_ms=0, ttl_ms=1000)
    p, lab = ("predictions", 0), ("labels", 0)
    join.add_prediction(prediction("m", ["a", "b"], [0.9, 0.2], 0), p, 0)
    join.add_label(label("m", ["zzz"], [True], 100), lab, 0)
    join.add_prediction(prediction("m", ["c"], [0.9], 5000), p, 1)
    expired = join.expire(join.clock)
    assert (expired.expired_predictions, expired.expired_labels) == (2, 1)
    assert held_back({p: 2, lab: 1}, join.holding()) == {p: 1, lab: 1}
    join.published.add(("m", "1", 5000))
    assert join.add_label(label("m", ["c"], [True], 5100), lab, 1).late_labels == 1
    assert join.windows == {}


def test_decay_judge_baseline_order_and_significance() -> None:
    judge = DecayJudge(DecayPolicy(min_rows=100, baseline_windows=2))
    window = QualityWindow("m", "1", 0, 1000, "classification", 1000, {"accuracy": 0.80, "f1": 0.7})
    assert judge.baseline(window, {"accuracy": 0.9}, {"accuracy": 0.5}) == ({"accuracy": 0.9}, "model-record")
    assert judge.baseline(window, None, {"accuracy": 0.5}) == ({"accuracy": 0.5}, "profile")
    assert judge.baseline(window, None, None) == ({}, "")
    assert judge.baseline(window, None, None) == ({}, "")
    baseline, source = judge.baseline(window, None, None)
    assert source == "first-windows" and baseline["accuracy"] == pytest.approx(0.8)
    window.baseline = {"accuracy": 0.9}
    [verdict] = judge.judge(window)
    assert verdict.metric == "accuracy" and verdict.z > 3
    small = QualityWindow("m", "1", 0, 1000, "classification", 100, {"accuracy": 0.84}, baseline={"accuracy": 0.9})
    assert judge.judge(small) == []  # 6 points down on 100 rows is not significant at z = 3
    assert judge.alerts(window)[0].type == "driftline.decay"


def test_join_state_is_bounded_by_waiting_rows() -> None:
    join = LabelJoin(window_ms=1000, grace_ms=0, ttl_ms=10**9, max_waiting_rows=100)
    for i in range(50):
        join.add_prediction(prediction("m", [f"r{i}-{j}" for j in range(10)], [0.5] * 10, i), ("p", 0), i)
    result = join.expire(join.clock)
    assert result.expired_predictions == 400
    assert len(join.waiting["prediction"]) == 100 and len(join.blocks) == 10
    assert min(b.offset for b in join.blocks.values()) == 40, "the oldest blocks go first"


def test_prediction_score_drift_is_flagged_after_a_shift_and_not_before() -> None:
    from streams.decay.score_drift import ScoreDrift

    drift = ScoreDrift(window_ms=1000, baseline_windows=5)
    local = np.random.default_rng(3)
    alerts = []
    for w in range(40):
        shift = 0.15 if w >= 25 else 0.0
        for e in range(10):  # ten events per window, 50 rows each
            drift.add("m", "1", w * 1000 + e * 100, np.clip(local.beta(2, 5, 50) + shift, 0, 1))
        assert drift.close(lambda model, start: False) == [], "nothing closes before the stage says so"
        found = drift.close(lambda model, start, now=w * 1000: model == "m" and start < now)
        alerts += [(w, a) for a in found]
    assert alerts, "the shifted scores were flagged"
    assert min(w for w, _ in alerts) >= 25, "nothing before the shift"
    assert min(w for w, _ in alerts) <= 27
    assert alerts[0][1].features == ["prediction"] * len(alerts[0][1].features)
    # the window mean feeding the detectors is numpy's mean of the window's rows
    check = ScoreDrift(window_ms=1000)
    rows = local.random(100)
    check.add("m", "1", 5, rows[:60])
    check.add("m", "1", 7, rows[60:])
    window = check.versions[("m", "1")].windows[0]
    assert window.total / window.rows == pytest.approx(rows.mean())


def test_score_windows_hold_commits_back_rebuild_after_a_rebalance_and_are_judged_once() -> None:
    from streams.decay.score_drift import ScoreDrift

    src = ("by-model", 0)
    local = np.random.default_rng(5)
    rows = [local.random(40) for _ in range(6)]
    drift = ScoreDrift(window_ms=1000, baseline_windows=1, min_rows=1)
    for i, values in enumerate(rows):  # events at offsets 10..15, two windows (0 and 1000)
        drift.add("m", "1", i * 300, values, src, 10 + i)
    assert held_back({src: 16}, drift.holding()) == {src: 10}
    assert drift.close(lambda model, start: start < 1000) == []  # window 0: the baseline
    assert held_back({src: 16}, drift.holding()) == {src: 14}, "held back to window 1000's first row"
    # a rebalance: the new owner starts from the saved state; the open window is read again from the offset
    drift = ScoreDrift.restored(1000, drift.changed(), baseline_windows=1, min_rows=1)
    for i in (4, 5):
        drift.add("m", "1", i * 300, rows[i], src, 10 + i)
    drift.add("m", "1", 10, local.random(40), src, 16)  # a late row of the window already judged
    assert sorted(drift.versions[("m", "1")].windows) == [1000], "window 0 is not opened again"
    window = drift.versions[("m", "1")].windows[1000]
    assert window.rows == 80 and window.total / window.rows == pytest.approx(np.concatenate(rows[4:]).mean())
    baseline = drift.versions[("m", "1")].baseline
    assert len(baseline) == 1 and baseline[0].total / baseline[0].rows == pytest.approx(
        np.concatenate(rows[:4]).mean())


def score_run(windows: range, drift, seed: int = 3, saved: dict | None = None) -> list[int]:
    """Windows of scores that shift by +0.15 from window 25 on; the windows an alert named."""
    local = np.random.default_rng([seed, windows.start])
    alerts = []
    for w in windows:
        shift = 0.15 if w >= 25 else 0.0
        for e in range(10):
            drift.add("m", "1", w * 1000 + e * 100, np.clip(local.beta(2, 5, 50) + shift, 0, 1))
        alerts += [a.data["window_start"] // 1000 for a in drift.close(lambda model, start, now=w * 1000: start < now)]
        if saved is not None:
            saved.update(drift.changed())  # the compacted state topic: the latest value per key
    # the run's last window closes too (its rows would be read again after a restart, which this does not model)
    alerts += [a.data["window_start"] // 1000 for a in drift.close(lambda model, start: start < windows.stop * 1000)]
    if saved is not None:
        saved.update(drift.changed())
    return alerts


@pytest.mark.parametrize("restart_at", [3, 20, 27])
def test_a_restarted_worker_judges_score_windows_as_if_it_never_stopped(restart_at: int) -> None:
    """Baseline, judged windows and detector state come back from the state topic; without them the
    shift under way would become the new baseline."""
    from streams.decay.score_drift import ScoreDrift

    whole = score_run(range(0, restart_at), ScoreDrift(1000)) + score_run(range(restart_at, 45), ScoreDrift(1000))
    saved: dict = {}
    first = ScoreDrift(1000)
    before = score_run(range(0, restart_at), first, saved=saved)
    restored = ScoreDrift.restored(1000, saved.items())
    after = score_run(range(restart_at, 45), restored)
    uninterrupted = ScoreDrift(1000)
    reference = score_run(range(0, restart_at), uninterrupted) + score_run(range(restart_at, 45), uninterrupted)
    assert before + after == reference, "the same alerts as a worker that never stopped"
    assert reference and min(reference) >= 25
    if restart_at == 27:
        assert not [w for w in whole if w >= restart_at], "forgetting the state loses the shift under way"


def test_coalesced_runs_join_exactly_like_one_event_at_a_time() -> None:
    from driftline.consumer import Event
    from streams.decay.coalesce import coalesce

    window_ms, n = 1000, 600
    local = np.random.default_rng(11)
    events: list[Event] = []
    for i in range(n):  # one-row events, labels mostly after their prediction, some before
        t = 10_000 + i * 7
        rid = f"r{i}"
        prediction = Event("driftline.Prediction", {
            "model": "m", "model_version": "2" if i > 400 else "1", "event_time": t, "request_ids": [rid],
            "prediction": float_buffer(local.random(1)), "predicted_class": None}, "p", i % 2, i, None, t)
        label = Event("driftline.Label", {"model": "m", "event_time": t + 50, "request_ids": [rid],
                                          "labels": [bool(local.random() < 0.5)]}, "l", 0, i, None, t)
        events.extend([label, prediction] if i % 9 == 0 else [prediction, label])
    events.insert(100, Event("driftline.Label", {"model": "m", "event_time": 1, "request_ids": ["x", "y"],
                                                  "labels": [True]}, "l", 0, 9999, None, 1))
    runs, bad = coalesce(events, window_ms)
    assert [e.offset for e in bad] == [9999], "an event whose arrays disagree with its ids is set apart"
    assert len(runs) < len(events) / 20
    assert sum(len(r.record()["request_ids"]) for r in runs) == 2 * n

    def join_all(items) -> dict:
        join = LabelJoin(window_ms, 0, 10**9)
        for kind, record, source, offset in items:
            (join.add_label if kind == "label" else join.add_prediction)(record, source, offset)
        return {key: (np.concatenate(p.truth).tolist(), np.concatenate(p.scores).tolist())
                for key, p in join.windows.items()}

    one_by_one = join_all(("label" if e.schema == "driftline.Label" else "prediction", e.record,
                           (e.topic, e.partition), e.offset) for e in events if e.offset != 9999)
    merged = join_all((r.kind, r.record(), r.source, r.offset) for r in runs)
    assert merged.keys() == one_by_one.keys()
    for key in merged:  # the same pairs in each window (order within a window may differ)
        assert sorted(zip(*merged[key], strict=True)) == sorted(zip(*one_by_one[key], strict=True))
