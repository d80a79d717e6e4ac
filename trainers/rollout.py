"""The rollout controller: judges each running rollout on live traffic and publishes its one decision.

A rollout (``driftline models rollout``, or the trainer for a model file with
``rollout:``) is a Deployment record whose ``rollout`` is running: serving
nodes answer with the champion or, for a canary's share, the challenger, and
the other version predicts the same request in the shadow. Both prediction
events carry the rollout id (a header), so every request of the rollout's
share is predicted by both versions; when its label arrives it is a *pair*.

The controller's state is derived from the topics alone: each rollout's
predictions and labels are read from the rollout's start time (offsets for
that time), so a controller killed mid-rollout rebuilds exactly what it had
and goes on. A decision is published only while the Deployment still shows
the rollout running (read back first), so a restart after publishing does
not publish a second record. Each look at the pairs is
:mod:`driftline.comparison`'s paired non-inferiority test; the rollout's
timeout ends it with the verdict of the evidence so far (a challenger that
has not shown it is good enough is rolled back). When labels never come, the
timeout's decision is the label-free estimate's, where both versions carry a
calibration: each version's calibrated probability of being right on the same
unlabelled requests, paired (classification only).

Probation: after a promotion with ``probation_s``, a decay alert for the new
version within that time, or a labelled quality window of it worse than the
champion's live quality in the rollout's evidence by more than the margin
(one-sided, at the rollout's confidence), rolls it back to the champion it
replaced (one record, and an alert saying why).
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Message, TopicPartition

from driftline.alerts import Alert
from driftline.comparison import (
    Policy,
    Verdict,
    compare_classification,
    compare_estimated,
    compare_regression,
    probation_breach,
)
from driftline.control import ControlPublisher
from driftline.estimation import Calibration, expected_correct
from driftline.follow import TopicFollower
from driftline.offsets import follow_from
from driftline.producer import ROLLOUT_HEADER
from driftline.quality import canonical_labels, label_numbers, predicted_classes
from driftline.registry import Registry
from driftline.settings import Settings
from schemas import Codec
from schemas.columns import read_float_buffer

log = logging.getLogger(__name__)
WAITING_LIMIT = 200_000  # request ids waiting for their other half (oldest dropped first: bounded memory)


def policy_of(rollout: dict[str, Any]) -> Policy:
    """The rollout record's decision policy."""
    return Policy.for_rollout(rollout["margin"], rollout["confidence"], rollout["min_pairs"], rollout["max_pairs"])


@dataclass
class PairBook:
    """One rollout's predictions per request id and version, its labels, and the completed pairs."""

    task: str
    champion: str
    challenger: str
    predictions: OrderedDict[str, dict[str, tuple[float, str | None]]] = field(default_factory=OrderedDict)
    labels: OrderedDict[str, Any] = field(default_factory=OrderedDict)
    pairs: list[tuple[float, str | None, float, str | None, Any]] = field(default_factory=list)
    paired: set[str] = field(default_factory=set)
    calibrations: tuple[Calibration | None, Calibration | None] = (None, None)  # champion's, challenger's

    def add_prediction(self, version: str, request_ids: list[str], scores: np.ndarray,
                       classes: list[str] | None) -> None:
        if version not in (self.champion, self.challenger):
            return
        for i, request_id in enumerate(request_ids):
            if request_id in self.paired:
                continue
            seen = self.predictions.setdefault(request_id, {})
            seen[version] = (float(scores[i]), classes[i] if classes is not None else None)
            self._try(request_id)
        self._bound(self.predictions)

    def add_label(self, request_ids: list[str], labels: list[Any]) -> None:
        for request_id, label in zip(request_ids, labels, strict=True):
            if request_id in self.paired:
                continue
            self.labels[request_id] = label
            self._try(request_id)
        self._bound(self.labels)

    def _try(self, request_id: str) -> None:
        seen = self.predictions.get(request_id)
        if seen is None or len(seen) < 2 or request_id not in self.labels:
            return
        champ, chal = seen[self.champion], seen[self.challenger]
        self.pairs.append((champ[0], champ[1], chal[0], chal[1], self.labels.pop(request_id)))
        del self.predictions[request_id]
        self.paired.add(request_id)

    @staticmethod
    def _bound(waiting: OrderedDict) -> None:
        while len(waiting) > WAITING_LIMIT:
            waiting.popitem(last=False)

    def verdict(self, policy: Policy, *, final: bool = False) -> Verdict:
        """The paired comparison of every completed pair (arrays: no per-pair Python on this path)."""
        if not self.pairs:
            return compare_classification(np.zeros(0), np.zeros(0), policy, final=final)
        champ_score, champ_class, chal_score, chal_class, labels = (list(c) for c in zip(*self.pairs, strict=True))
        if self.task == "regression":
            truth = label_numbers(labels)
            return compare_regression(np.asarray(champ_score) - truth, np.asarray(chal_score) - truth, policy,
                                      final=final)
        truth = canonical_labels(labels)
        champ = predicted_classes(np.asarray(champ_score), _classes(champ_class)) == truth
        chal = predicted_classes(np.asarray(chal_score), _classes(chal_class)) == truth
        return compare_classification(champ, chal, policy, final=final)


    def estimated(self, policy: Policy, *, final: bool = False) -> Verdict | None:
        """The label-free comparison on requests both versions predicted whose labels have not come: each
        version's calibrated probability of being right, paired (None without both calibrations, for
        regression, or before any such request)."""
        champion_cal, challenger_cal = self.calibrations
        if champion_cal is None or challenger_cal is None or self.task == "regression":
            return None
        both = [seen for seen in self.predictions.values() if len(seen) == 2]
        if not both:
            return None
        champ_scores, champ_classes = zip(*(seen[self.champion] for seen in both), strict=True)
        chal_scores, chal_classes = zip(*(seen[self.challenger] for seen in both), strict=True)
        champ_expected = expected_correct(champion_cal, np.array(champ_scores), _classes(list(champ_classes)))
        chal_expected = expected_correct(challenger_cal, np.array(chal_scores), _classes(list(chal_classes)))
        if champ_expected is None or chal_expected is None:
            return None
        return compare_estimated(champ_expected, chal_expected, policy, final=final)


def _classes(values: list[str | None]) -> np.ndarray | None:
    return None if any(v is None for v in values) else np.asarray(values, dtype=str)


@dataclass
class Watched:
    """A running rollout the controller follows: its book, its reader, when it looks next."""

    model: str
    rollout: dict[str, Any]
    book: PairBook
    reader: Consumer
    policy: Policy
    next_look: int
    ends: dict[tuple[str, int], int] = field(default_factory=dict)  # what existed when following began

    def caught_up(self) -> bool:
        """Everything the topics held when this controller began following is read (a restarted
        controller decides at the timeout only on the whole of what it had)."""
        if not self.ends:
            return True
        positions = self.reader.position([TopicPartition(t, p) for t, p in self.ends])
        if all(tp.offset >= self.ends[(tp.topic, tp.partition)] for tp in positions):  # unknown yet: < 0
            self.ends = {}
        return not self.ends


class RolloutController:
    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self._own_registry = registry is None
        self.registry = registry or Registry(settings)
        self.codec = Codec.default()
        self.deployments = TopicFollower(settings, "deployments",
                                         lambda raw: self.codec.decode(raw, "driftline.Deployment"))
        self.watched: dict[str, Watched] = {}  # by rollout id
        self.probation: dict[str, tuple[dict[str, Any], int]] = {}  # rollout id -> (deployment, until ms)
        self.probation_reader: Consumer | None = None
        self.publisher = ControlPublisher(settings, timeout=10)
        self.decisions: list[dict[str, Any]] = []

    # ------------------------------------------------------------ the loop
    def step(self, timeout: float = 0.2) -> None:
        self.deployments.poll(0.05, 500)
        if self.deployments.caught_up:
            self._follow_deployments()
        for watched in list(self.watched.values()):
            self._read(watched, timeout / max(1, len(self.watched)))
            self._look(watched)
        self._watch_probation()

    def run(self, stop: Any) -> None:
        while not stop():
            try:
                self.step()
            except Exception:  # one bad record or a broker hiccup must not end the controller
                log.exception("rollout controller step failed")
                time.sleep(0.5)

    def close(self) -> None:
        for watched in self.watched.values():
            watched.reader.close()
        if self.probation_reader is not None:
            self.probation_reader.close()
        self.deployments.close()
        if self._own_registry:
            self.registry.close()

    # ------------------------------------------------------------ rollouts
    def _follow_deployments(self) -> None:
        running = {}
        for deployment in self.deployments.latest.values():
            rollout = deployment.get("rollout")
            if rollout is None:
                continue
            if rollout["state"] == "running":
                running[rollout["id"]] = deployment
            elif (rollout["state"] == "promoted" and rollout["probation_s"] > 0
                  and deployment["version"] == rollout["challenger"]):
                until = deployment["created_at"] + rollout["probation_s"] * 1000
                if until > time.time() * 1000 and rollout["id"] not in self.probation:
                    self.probation[rollout["id"]] = (deployment, until)
        for rollout_id in set(self.watched) - set(running):
            self.watched.pop(rollout_id).reader.close()
        for rollout_id, deployment in running.items():
            if rollout_id not in self.watched:
                self.watched[rollout_id] = self._watch(deployment)

    def _watch(self, deployment: dict[str, Any]) -> Watched:
        rollout = deployment["rollout"]
        record = self.registry.model_metadata(deployment["model"], rollout["challenger"])
        task = record["task"] if record else "classification"
        # from the rollout's start: the state comes from the topics
        reader, ends = follow_from(self.settings, [self.settings.topic("predictions"), self.settings.topic("labels")],
                                   rollout["started_at"], "rollout")
        log.info("following rollout %s of %s v%s against v%s (%s, share %.3g)", rollout["id"], deployment["model"],
                 rollout["challenger"], deployment["version"], rollout["strategy"], rollout["share"])
        policy = policy_of(rollout)
        champion = self.registry.model_metadata(deployment["model"], deployment["version"])
        calibrations = (Calibration.from_avro((champion or {}).get("calibration")),
                        Calibration.from_avro((record or {}).get("calibration")))
        book = PairBook(task, deployment["version"], rollout["challenger"], calibrations=calibrations)
        return Watched(deployment["model"], rollout, book, reader, policy, policy.look_every, ends)

    def _read(self, watched: Watched, timeout: float) -> None:
        predictions = self.settings.topic("predictions")
        for message in watched.reader.consume(2000, timeout):
            if message.error():
                continue
            try:
                self._take(watched, message, message.topic() == predictions)
            except Exception as exc:  # not ours to dead-letter (the monitor owns these topics): skip, say so
                log.warning("rollout %s skipped %s[%d]@%d: %s", watched.rollout["id"], message.topic(),
                            message.partition(), message.offset(), exc)

    def _take(self, watched: Watched, message: Message, is_prediction: bool) -> None:
        if is_prediction:
            headers = dict(message.headers() or [])
            if headers.get(ROLLOUT_HEADER) != watched.rollout["id"].encode():
                return
            record = self.codec.decode(message.value() or b"", "driftline.Prediction")
            ids = record["request_ids"]
            watched.book.add_prediction(record["model_version"], ids, read_float_buffer(record["prediction"], len(ids)),
                                        record.get("predicted_class"))
        else:
            record = self.codec.decode(message.value() or b"", "driftline.Label")
            if record["model"] == watched.model:
                watched.book.add_label(record["request_ids"], record["labels"])

    def _look(self, watched: Watched) -> None:
        rollout = watched.rollout
        timed_out = time.time() * 1000 >= rollout["started_at"] + rollout["timeout_s"] * 1000
        pairs = len(watched.book.pairs)
        if pairs < watched.next_look and not timed_out and pairs < watched.policy.max_pairs:
            return
        if timed_out and not watched.caught_up():
            return  # a restarted controller reads what it had before the timeout's verdict
        while watched.next_look <= pairs:
            watched.next_look += watched.policy.look_every
        verdict = watched.book.verdict(watched.policy, final=timed_out)
        estimate = watched.book.estimated(watched.policy, final=timed_out)
        basis = "labels"
        if (timed_out and verdict.pairs < watched.policy.min_pairs and estimate is not None
                and estimate.pairs >= watched.policy.min_pairs):
            verdict, basis = estimate, "label-free estimate"  # labels never came: the calibrations decide
        if verdict.decision == "wait":
            return
        evidence = {**verdict.evidence(), "timed_out": timed_out, "strategy": rollout["strategy"],
                    "task": watched.book.task, "basis": basis,
                    "estimated": estimate.evidence() if estimate is not None else None,
                    "champion_version": watched.book.champion, "challenger_version": watched.book.challenger}
        reason = (f"rollout {rollout['id']}: {verdict.decision} after {verdict.pairs} "
                  f"{'labelled' if basis == 'labels' else 'unlabelled (label-free estimate)'} pairs "
                  f"(challenger - champion {verdict.difference:+.4f}, interval [{verdict.lower:+.4f}, "
                  f"{verdict.upper:+.4f}], margin {verdict.margin:.4f}{', timed out' if timed_out else ''})")
        record = self.registry.conclude_rollout(watched.model, rollout["id"], verdict.decision, evidence,
                                                reason=reason)
        self.watched.pop(rollout["id"]).reader.close()
        if record is None:
            log.info("rollout %s was already decided; nothing published", rollout["id"])
            return
        self.decisions.append(record)
        log.info("%s", reason)
        kind = "promoted" if verdict.decision == "promote" else "rolled_back"
        self._alert(f"driftline.rollout.{kind}", watched.model, rollout["id"],
                    "info" if kind == "promoted" else "warning", reason, evidence)

    # ------------------------------------------------------------ probation
    def _watch_probation(self) -> None:
        now = time.time() * 1000
        for rollout_id, (_, until) in list(self.probation.items()):
            if until <= now:
                del self.probation[rollout_id]
        if not self.probation:
            return
        if self.probation_reader is None:  # decay alerts and labelled quality windows since the earliest promotion
            self.probation_reader, _ = follow_from(
                self.settings, [self.settings.topic("alerts"), self.settings.topic("quality")],
                min(d["created_at"] for d, _ in self.probation.values()), "probation")
        alerts_topic = self.settings.topic("alerts")
        for message in self.probation_reader.consume(500, 0.05):
            if message.error():
                continue
            try:
                if message.topic() == alerts_topic:
                    self._probation_alert(json.loads(message.value() or b""))
                else:
                    self._probation_quality(self.codec.decode(message.value() or b"", "driftline.QualitySummary"))
            except (ValueError, KeyError) as exc:  # not ours to dead-letter: skip, say so
                log.warning("probation skipped %s[%d]@%d: %s", message.topic(), message.partition(),
                            message.offset(), exc)

    def _on_probation(self, model: str, version: str) -> list[tuple[str, dict[str, Any]]]:
        return [(rollout_id, deployment) for rollout_id, (deployment, _) in self.probation.items()
                if deployment["model"] == model and deployment["version"] == version]

    def _probation_alert(self, alert: dict[str, Any]) -> None:
        """A decay alert for the promoted version ends its probation."""
        if not str(alert.get("type", "")).startswith("driftline.decay"):  # realised or estimated decay
            return
        for rollout_id, deployment in self._on_probation(str(alert.get("model")),
                                                         str((alert.get("data") or {}).get("model_version"))):
            self._fail_probation(rollout_id, deployment, f"{alert.get('type')}: "
                                 f"{(alert.get('data') or {}).get('message', '')}",
                                 {"alert_id": alert.get("id"), "alert_type": alert.get("type")})

    def _probation_quality(self, summary: dict[str, Any]) -> None:
        """A labelled window of the promoted version worse than the champion it replaced, beyond the margin."""
        if summary.get("estimated"):
            return
        for rollout_id, deployment in self._on_probation(summary["model"], summary["model_version"]):
            evidence = json.loads(deployment["rollout"]["evidence"] or "{}")
            if "champion" not in evidence:
                continue
            breach = probation_breach(evidence.get("task", summary["task"]), summary["metrics"], summary["rows"],
                                      evidence["champion"], evidence["margin"], deployment["rollout"]["confidence"])
            if breach is not None:
                self._fail_probation(rollout_id, deployment, f"live quality: {breach}",
                                     {"window_start": summary["window_start"], "rows": summary["rows"],
                                      "metrics": summary["metrics"]})

    def _fail_probation(self, rollout_id: str, deployment: dict[str, Any], why: str,
                        detail: dict[str, Any]) -> None:
        if rollout_id not in self.probation:
            return
        del self.probation[rollout_id]
        reason = (f"rollout {rollout_id}: v{deployment['version']} failed its probation ({why}); "
                  f"back to v{deployment['previous_version']}")
        evidence = {**detail, "probation": True}
        record = self.registry.end_probation(deployment["model"], rollout_id, evidence, reason=reason)
        if record is None:
            return
        self.decisions.append(record)
        log.warning("%s", reason)
        self._alert("driftline.rollout.rolled_back", deployment["model"], rollout_id, "warning", reason, evidence)

    def _alert(self, kind: str, model: str, rollout_id: str, severity: str, message: str,
               evidence: dict[str, Any]) -> None:
        alert = Alert.create(kind, model, severity=severity, source="/driftline/rollout", identity=(rollout_id,),
                             data={"message": message, "rollout_id": rollout_id, "evidence": evidence,
                                   "features": []})
        self.publisher.publish_alert(alert)
