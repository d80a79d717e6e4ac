"""Champion against challenger on the same requests: a paired, non-inferiority decision with repeated looks.

A rollout sends both versions the same requests (one answers, the other
predicts in the shadow), so every labelled request is a *pair*. Pairs remove
the traffic's own variation from the comparison: two versions that agree on a
request say nothing about which is better, only the discordant requests do
(McNemar's insight), and a paired test needs several times fewer labels than
two independent samples.

The question asked is the operator's: is the challenger **not worse than the
champion by more than a margin**? Per pair the difference ``D`` is
``correct(challenger) - correct(champion)`` for classification and
``|error(champion)| - |error(challenger)|`` for regression (positive: the
challenger is better; the regression margin is a fraction of the champion's
mean absolute error). With ``n`` pairs the mean difference has a normal
interval ``mean(D) ± z·sd(D)/sqrt(n)``:

- **promote** when ``n >= min_pairs`` and the lower bound is above ``-margin``;
- **roll back** when the upper bound is below ``-margin`` (worse beyond the
  tolerance, with the configured confidence);
- otherwise wait; at ``max_pairs`` (or the rollout's timeout) without a
  decision, roll back: a challenger that cannot show it is good enough does
  not replace a champion.

The controller looks again every ``look_every`` pairs, and each look is a
chance to be wrong: the interval uses ``z`` at ``1 - alpha / (2 K)`` for the
``K`` looks the budget allows (Bonferroni), so the error rate over the whole
rollout stays under ``1 - confidence``. Checked by simulation in
``tests/unit/test_comparison.py``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Policy:
    """What a rollout needs to decide: margin, confidence and the evidence budget."""

    margin: float = 0.01
    confidence: float = 0.95
    min_pairs: int = 200
    max_pairs: int = 5000
    look_every: int = 50

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if not 0 < self.look_every <= self.min_pairs <= self.max_pairs:
            raise ValueError("need 0 < look_every <= min_pairs <= max_pairs")

    @classmethod
    def for_rollout(cls, margin: float, confidence: float, min_pairs: int, max_pairs: int) -> Policy:
        """A rollout's policy: it looks at the pairs every quarter of ``min_pairs`` (one rule everywhere)."""
        return cls(margin=margin, confidence=confidence, min_pairs=min_pairs, max_pairs=max_pairs,
                   look_every=max(1, min_pairs // 4))

    @property
    def looks(self) -> int:
        return math.ceil(self.max_pairs / self.look_every)

    @property
    def z(self) -> float:
        from scipy.stats import norm

        return float(norm.ppf(1 - (1 - self.confidence) / (2 * self.looks)))


@dataclass(frozen=True)
class Verdict:
    """One look at the pairs: ``decision`` is promote, rollback or wait, with the evidence behind it."""

    decision: str
    pairs: int
    champion: float  # accuracy, or mean absolute error for regression
    challenger: float
    difference: float  # mean(D): positive means the challenger is better
    lower: float
    upper: float
    margin: float  # in D's units (regression: the policy's fraction of the champion's error)
    discordant: tuple[int, int] = (0, 0)  # classification: (challenger right only, champion right only)
    mcnemar_p: float = 1.0  # exact two-sided test of "equally accurate" on the discordant pairs

    def evidence(self) -> dict[str, Any]:
        """JSON-ready (strict JSON: an infinite or undefined bound is null)."""
        return {k: ((round(v, 6) if math.isfinite(v) else None) if isinstance(v, float) else v)
                for k, v in asdict(self).items()}


def compare_classification(champion_correct: np.ndarray, challenger_correct: np.ndarray, policy: Policy,
                           *, final: bool = False) -> Verdict:
    """Paired accuracy: arrays of 0/1 (or bool), one per labelled request both versions predicted."""
    champ = np.asarray(champion_correct, dtype=np.float64)
    chal = np.asarray(challenger_correct, dtype=np.float64)
    n = len(champ)
    only_challenger = int(np.sum((chal == 1) & (champ == 0)))
    only_champion = int(np.sum((champ == 1) & (chal == 0)))
    p = 1.0
    if only_challenger + only_champion:
        from scipy.stats import binomtest

        p = float(binomtest(only_challenger, only_challenger + only_champion, 0.5).pvalue)
    verdict = _decide(chal - champ, policy, policy.margin, final=final)
    return Verdict(verdict[0], n, _mean(champ), _mean(chal), *verdict[1:], margin=policy.margin,
                   discordant=(only_challenger, only_champion), mcnemar_p=p)


def compare_regression(champion_error: np.ndarray, challenger_error: np.ndarray, policy: Policy,
                       *, final: bool = False) -> Verdict:
    """Paired absolute errors; the margin is ``policy.margin`` times the champion's mean absolute error."""
    champ = np.abs(np.asarray(champion_error, dtype=np.float64))
    chal = np.abs(np.asarray(challenger_error, dtype=np.float64))
    margin = policy.margin * _mean(champ)
    verdict = _decide(champ - chal, policy, margin, final=final)
    return Verdict(verdict[0], len(champ), _mean(champ), _mean(chal), *verdict[1:], margin=margin)


def compare_estimated(champion_expected: np.ndarray, challenger_expected: np.ndarray, policy: Policy, *,
                      final: bool = False) -> Verdict:
    """The label-free comparison: per request both versions' calibrated probability of being right
    (:func:`driftline.estimation.expected_correct`), paired like labelled correctness. It carries the
    requests' sampling error, not the calibrations' own, and it cannot see a concept the calibrations
    never met: evidence where labels never come, not a substitute for them."""
    champ = np.asarray(champion_expected, dtype=np.float64)
    chal = np.asarray(challenger_expected, dtype=np.float64)
    verdict = _decide(chal - champ, policy, policy.margin, final=final)
    return Verdict(verdict[0], len(champ), _mean(champ), _mean(chal), *verdict[1:], margin=policy.margin)


def _decide(differences: np.ndarray, policy: Policy, margin: float, *, final: bool) -> tuple[str, float, float, float]:
    n = len(differences)
    if n == 0:
        return ("rollback" if final else "wait"), 0.0, -math.inf, math.inf
    mean = float(differences.mean())
    sd = float(differences.std(ddof=1)) if n > 1 else math.inf
    half = policy.z * sd / math.sqrt(n) if n > 1 else math.inf
    lower, upper = mean - half, mean + half
    if n >= policy.min_pairs and lower > -margin:
        decision = "promote"
    elif n >= policy.min_pairs and upper < -margin:
        decision = "rollback"
    elif final or n >= policy.max_pairs:
        decision = "rollback"  # not shown good enough within the budget
    else:
        decision = "wait"
    return decision, mean, lower, upper


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else math.nan


def probation_breach(task: str, metrics: dict[str, float], rows: int, champion: float, margin: float,
                     confidence: float, min_rows: int = 30) -> str | None:
    """Why a promoted version's labelled window shows it worse than the champion it replaced by more than
    ``margin`` (with ``confidence``, one-sided), or None. ``champion`` and ``margin`` are the rollout's
    evidence: accuracy and accuracy points, or mean absolute error and an absolute error margin."""
    from scipy.stats import norm

    if rows < min_rows:
        return None
    z = float(norm.ppf(confidence))
    if task == "regression":
        mae, rmse = metrics.get("mae"), metrics.get("rmse")
        if mae is None or rmse is None:
            return None
        lower = mae - z * rmse / math.sqrt(rows)  # |error|'s sd is at most the RMSE
        if lower > champion + margin:
            return f"mean absolute error {mae:.4g} on {rows} rows (lower bound {lower:.4g}) > champion's " \
                   f"{champion:.4g} + margin {margin:.4g}"
        return None
    accuracy = metrics.get("accuracy")
    if accuracy is None:
        return None
    upper = accuracy + z * math.sqrt(max(accuracy * (1 - accuracy), 0.25 / rows) / rows)
    if upper < champion - margin:
        return f"accuracy {accuracy:.4f} on {rows} rows (upper bound {upper:.4f}) < champion's {champion:.4f} " \
               f"- margin {margin:.4f}"
    return None
