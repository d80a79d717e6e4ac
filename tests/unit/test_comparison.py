"""The rollout's paired decision: its error rates over all looks, checked by simulating whole rollouts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from driftline.comparison import Policy, compare_classification, compare_regression

POLICY = Policy(margin=0.02, confidence=0.95, min_pairs=200, max_pairs=2000, look_every=50)


def simulate(only_challenger: float, only_champion: float, trials: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Whole rollouts looked at like the controller does; per trial the first decision and its pair count.

    An independent implementation of the rule (cumulative sums, no call into the module), so agreement
    on one trial is checked separately below."""
    rng = np.random.default_rng(seed)
    u = rng.random((trials, POLICY.max_pairs))
    d = np.where(u < only_challenger, 1.0, np.where(u < only_challenger + only_champion, -1.0, 0.0))
    looks = np.arange(POLICY.look_every, POLICY.max_pairs + 1, POLICY.look_every)
    s1, s2 = np.cumsum(d, axis=1)[:, looks - 1], np.cumsum(d * d, axis=1)[:, looks - 1]
    mean = s1 / looks
    sd = np.sqrt(np.maximum(s2 - looks * mean**2, 0) / (looks - 1))
    half = POLICY.z * sd / np.sqrt(looks)
    eligible = looks >= POLICY.min_pairs
    promote = eligible & (mean - half > -POLICY.margin)
    rollback = eligible & (mean + half < -POLICY.margin)
    decided = promote | rollback
    first = np.where(decided.any(axis=1), decided.argmax(axis=1), len(looks) - 1)
    outcome = np.where(promote[np.arange(trials), first], "promote", "rollback")
    return outcome, looks[first]


def test_a_challenger_worse_by_exactly_the_margin_is_promoted_at_most_at_the_error_rate() -> None:
    outcome, _ = simulate(0.05, 0.07, trials=2000, seed=1)  # D = -0.02: the boundary
    rate = np.mean(outcome == "promote")
    assert rate <= 0.05, rate  # Bonferroni over 40 looks: well under (measured ~0.01)


def test_an_equal_challenger_is_rarely_rolled_back_for_being_worse() -> None:
    outcome, pairs = simulate(0.06, 0.06, trials=1000, seed=2)
    early_rollback = np.mean((outcome == "rollback") & (pairs < POLICY.max_pairs))
    assert early_rollback <= 0.05 / 2


def test_a_better_challenger_is_promoted_and_a_bad_one_rolled_back_quickly() -> None:
    better, pairs_better = simulate(0.10, 0.04, trials=500, seed=3)
    worse, pairs_worse = simulate(0.03, 0.15, trials=500, seed=4)
    assert np.mean(better == "promote") > 0.99 and np.median(pairs_better) <= 400
    assert np.mean(worse == "rollback") > 0.99 and np.median(pairs_worse) <= 300


def test_the_module_agrees_with_the_simulation_and_with_scipy_on_one_rollout() -> None:
    rng = np.random.default_rng(5)
    champ = rng.random(400) < 0.80
    chal = np.where(rng.random(400) < 0.9, champ, ~champ)  # disagree on ~10 %
    verdict = compare_classification(champ, chal, POLICY)
    d = chal.astype(float) - champ.astype(float)
    half = POLICY.z * d.std(ddof=1) / np.sqrt(len(d))
    assert verdict.lower == pytest.approx(d.mean() - half) and verdict.upper == pytest.approx(d.mean() + half)
    b, c = int(np.sum(chal & ~champ)), int(np.sum(champ & ~chal))
    assert verdict.discordant == (b, c)
    assert verdict.mcnemar_p == pytest.approx(binomtest(b, b + c, 0.5).pvalue)
    assert verdict.champion == pytest.approx(champ.mean()) and verdict.challenger == pytest.approx(chal.mean())


def test_regression_compares_absolute_errors_with_a_relative_margin() -> None:
    rng = np.random.default_rng(6)
    truth = rng.normal(size=3000)
    champion = truth + rng.normal(scale=1.0, size=3000)
    good = truth + rng.normal(scale=0.8, size=3000)
    bad = truth + rng.normal(scale=1.6, size=3000)
    policy = Policy(margin=0.05, min_pairs=200, max_pairs=3000, look_every=100)
    assert compare_regression(champion - truth, good - truth, policy).decision == "promote"
    verdict = compare_regression(champion - truth, bad - truth, policy)
    assert verdict.decision == "rollback" and verdict.challenger > verdict.champion
    assert verdict.margin == pytest.approx(0.05 * np.abs(champion - truth).mean())


def test_no_decision_before_min_pairs_and_rollback_when_the_budget_ends() -> None:
    champ = np.ones(100, dtype=bool)
    assert compare_classification(champ, champ, POLICY).decision == "wait"
    assert compare_classification(champ, champ, POLICY, final=True).decision == "rollback"
    assert compare_classification(np.ones(300), np.ones(300), POLICY).decision == "promote"


def test_a_policy_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError):
        Policy(min_pairs=10, max_pairs=5)
    with pytest.raises(ValueError):
        Policy(confidence=1.0)


def test_probation_flags_a_window_worse_than_the_old_champion_beyond_the_margin_and_rarely_otherwise() -> None:
    from driftline.comparison import probation_breach

    rng = np.random.default_rng(7)
    # at the boundary (accuracy = champion - margin) a 400-row window breaches in at most 5 % of windows
    hits = rng.binomial(400, 0.80 - 0.02, size=4000) / 400
    breaches = [probation_breach("classification", {"accuracy": a}, 400, 0.80, 0.02, 0.95) for a in hits]
    assert np.mean([b is not None for b in breaches]) <= 0.05
    clearly_worse = probation_breach("classification", {"accuracy": 0.60}, 400, 0.80, 0.02, 0.95)
    assert clearly_worse is not None and "0.6000" in clearly_worse
    assert probation_breach("classification", {"accuracy": 0.10}, 10, 0.80, 0.02, 0.95) is None  # too few rows
    assert probation_breach("regression", {"mae": 2.0, "rmse": 2.5}, 400, 1.0, 0.05, 0.95) is not None
    assert probation_breach("regression", {"mae": 1.02, "rmse": 1.3}, 400, 1.0, 0.05, 0.95) is None


def test_the_label_free_comparison_tracks_the_realised_difference_when_calibrations_hold() -> None:
    """Two calibrated versions on the same requests: the mean paired expected correctness is the mean realised
    paired correctness up to sampling (labels drawn from the calibrated probabilities)."""
    from driftline.comparison import compare_estimated
    from driftline.estimation import Calibration, expected_correct

    rng = np.random.default_rng(8)
    identity = Calibration("binary", 1000, [0.0, 1.0], [0.0, 1.0], [500.0, 500.0])
    n = 20_000
    p_true = rng.beta(2, 2, size=n)  # each request's real P(positive)
    sharp = np.clip(p_true + rng.normal(0, 0.02, n), 0, 1)  # a good version's score
    blunt = np.clip(0.5 + 0.3 * (p_true - 0.5) + rng.normal(0, 0.2, n), 0, 1)  # a worse one
    labels = rng.random(n) < p_true
    truth_sharp = ((sharp >= 0.5) == labels).astype(float)
    truth_blunt = ((blunt >= 0.5) == labels).astype(float)
    # the identity calibration is right for "sharp" only approximately; calibrate each on half, judge the other
    from driftline.estimation import calibrate

    cal_sharp = calibrate(labels[:10_000].astype(int), sharp[:10_000])
    cal_blunt = calibrate(labels[:10_000].astype(int), blunt[:10_000])
    champ = expected_correct(cal_sharp, sharp[10_000:])
    chal = expected_correct(cal_blunt, blunt[10_000:])
    realised = truth_blunt[10_000:].mean() - truth_sharp[10_000:].mean()
    verdict = compare_estimated(champ, chal, POLICY)
    assert abs(verdict.difference - realised) < 0.02, (verdict.difference, realised)
    assert verdict.upper < -POLICY.margin and realised < -0.05  # worse beyond the margin, not by budget
    assert expected_correct(identity, np.array([0.9, 0.2])) == pytest.approx([0.9, 0.8])
