"""One training run: data from Kafka, a candidate, validation against the champion, publish or not.

Idempotent per trigger: the run id is a hash of (model, trigger id) and a
published version records its run id, so a trainer killed mid-run and
restarted on the same alert finishes the run once and never publishes two
versions for it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline import artifacts
from driftline.artifacts import ArtifactError
from driftline.errors import ConfigError
from driftline.estimation import calibrate
from driftline.modeling import RiverModel
from driftline.registry import Registry, version_order
from driftline.settings import Settings
from schemas import FeatureSpec
from trainers.dataset import Dataset, assemble
from trainers.modelfile import ModelConfig
from trainers.validation import Evaluation, evaluate, validate

log = logging.getLogger(__name__)
FINISHED = ("published", "rejected", "failed")


@dataclass(frozen=True)
class Trigger:
    id: str  # alert id, "schedule:<slot>", an operator command id, or "init"
    kind: str  # drift | skew | decay | schedule | operator | init
    reason: str = ""
    since_ms: int | None = None  # start of the window an alert flagged (for train_since_change)


class RunFailed(Exception):
    """The run cannot produce a candidate (no data, one class, ...): recorded as failed."""


def run_id_for(model: str, trigger_id: str) -> str:
    return hashlib.sha256(f"{model}\0{trigger_id}".encode()).hexdigest()[:16]


def now_ms() -> int:
    return int(time.time() * 1000)


def run_record(model: str, trigger: Trigger, status: str, reason: str, *, finished: bool = False) -> dict[str, Any]:
    """A TrainingRun record with nothing trained yet: a run that starts, or a trigger that was skipped."""
    started = now_ms()
    return {"run_id": run_id_for(model, trigger.id), "model": model, "status": status, "trigger": trigger.id,
            "trigger_type": trigger.kind, "started_at": started, "finished_at": started if finished else None,
            "lineage": [], "dataset_hash": "", "rows": 0, "candidate_version": None, "champion_version": None,
            "candidate_metrics": {}, "champion_metrics": {}, "checks": [], "reason": reason}


class TrainingJob:
    def __init__(self, settings: Settings, config: ModelConfig, registry: Registry | None = None) -> None:
        self.settings = settings
        self.config = config
        self.registry = registry or Registry(settings)

    # ------------------------------------------------------------ pieces
    def champion(self) -> tuple[dict[str, Any] | None, RiverModel | None]:
        deployment = self.registry.deployments().get(self.config.name)
        if deployment is None:
            return None, None
        record = self.registry.model(self.config.name, deployment["version"])
        if record is None:
            return None, None
        return record, artifacts.load(record, self.settings)

    def dataset(self, at_ms: int, since_ms: int | None = None) -> Dataset:
        end = at_ms - int(self.config.label_delay_seconds * 1000)
        start = at_ms - int(self.config.training_window_seconds * 1000)
        if self.config.train_since_change and since_ms is not None:
            start = max(start, since_ms)
        return assemble(self.settings, self.config.name, start, end)

    def candidate(self, train: Dataset, champion: RiverModel | None) -> RiverModel:
        types = train.table.types
        numeric = tuple(n for n in sorted(types) if types[n] in ("float", "int"))
        categorical = tuple(n for n in sorted(types) if n not in numeric)
        if (self.config.warm_start and champion is not None and champion.pipeline == self.config.pipeline
                and set(champion.features) == set(numeric + categorical)):
            model = champion.clone()
        else:
            model = RiverModel(self.config.task, self.config.pipeline, numeric, categorical, dict(self.config.params))
        labels = train.numeric_labels.tolist() if self.config.task == "regression" else train.labels.tolist()
        model.learn(train.table.to_rows(), labels)
        return model

    def next_version(self, run_id: str) -> str:
        existing = self.registry.models(self.config.name)
        for record in existing:
            if record["run_id"] == run_id:
                return record["version"]  # this run published before a crash: the same version again
        numbers = [version_order(r["version"])[0] for r in existing if r["version"].isdigit()]
        return str(max(numbers, default=0) + 1)

    # ------------------------------------------------------------ the run
    def run(self, trigger: Trigger, *, dataset: Dataset | None = None, at_ms: int | None = None) -> dict[str, Any]:
        run_id = run_id_for(self.config.name, trigger.id)
        previous = self.registry.run(run_id)
        if previous is not None and previous["status"] in FINISHED:
            log.info("run %s for trigger %s already finished (%s)", run_id, trigger.id, previous["status"])
            return previous
        record = run_record(self.config.name, trigger, "started", trigger.reason)
        self.registry.publish_run(record)
        try:
            if not self._already_published(record, trigger):
                self._execute(record, trigger, dataset, at_ms or now_ms())
        except (RunFailed, ConfigError, ArtifactError) as exc:
            record.update(status="failed", reason=str(exc))
        except Exception as exc:
            log.exception("run %s failed", run_id)
            record.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
        record["finished_at"] = now_ms()
        self.registry.publish_run(record)
        log.info("run %s %s: %s", run_id, record["status"], record["reason"])
        return record

    def _already_published(self, record: dict[str, Any], trigger: Trigger) -> bool:
        """A restart after the model was published: finish the run record, deploy if that was missed."""
        published = next((m for m in self.registry.models(self.config.name) if m["run_id"] == record["run_id"]), None)
        if published is None:
            return False
        record.update(status="published", candidate_version=published["version"],
                      champion_version=published["parent_version"], candidate_metrics=published["metrics"],
                      reason="published before a restart")
        current = self.registry.deployments().get(self.config.name)
        if self.config.promotion == "auto" and (current or {}).get("version") == published["parent_version"]:
            self.release(published["version"], f"run {record['run_id']} ({trigger.kind})")
        return True

    def release(self, version: str, reason: str) -> None:
        """Put a published candidate before traffic: at once (``replace``), or as the model file's shadow or
        canary rollout, which the rollout controller promotes or rolls back by its live quality."""
        rollout = self.config.rollout
        current = self.registry.deployments().get(self.config.name)
        if rollout.strategy == "replace" or current is None:  # a first version has nothing to be compared with
            self.registry.deploy(self.config.name, version, "deploy", actor="trainer", reason=reason)
            return
        running = current.get("rollout")
        if running is not None and running["state"] == "running":
            if running["challenger"] != version:  # one rollout at a time: the next run offers a newer candidate
                log.warning("%s v%s published but not rolled out: rollout %s of v%s is still running",
                            self.config.name, version, running["id"], running["challenger"])
            return
        self.registry.start_rollout(self.config.name, version, rollout.strategy, share=rollout.share,
                                    policy=rollout.policy, timeout_s=int(rollout.timeout_seconds),
                                    probation_s=int(rollout.probation_seconds), reason=reason, actor="trainer")

    def _execute(self, record: dict[str, Any], trigger: Trigger, dataset: Dataset | None, at_ms: int) -> None:
        champion_record, champion = self.champion()
        record["champion_version"] = champion_record["version"] if champion_record else None
        data = dataset if dataset is not None else self.dataset(at_ms, trigger.since_ms)
        record.update(lineage=[r.to_avro() for r in data.lineage], dataset_hash=data.hash, rows=data.rows)
        if data.rows == 0:
            raise RunFailed("no labelled rows in the training window")
        if self.config.task == "classification" and len(np.unique(data.labels)) < 2:
            raise RunFailed(f"every label in the window is {data.labels[0]!r}: one class cannot be learnt")
        train, holdout = data.split(self.config.holdout_fraction)
        if train.rows == 0 or holdout.rows == 0:
            raise RunFailed(f"{data.rows} labelled rows are too few to split into training and holdout")
        candidate = self.candidate(train, champion)
        self.finish(record, candidate, holdout, champion, champion_record, trigger)

    def finish(self, record: dict[str, Any], candidate: RiverModel, holdout: Dataset,
               champion: RiverModel | None, champion_record: dict[str, Any] | None, trigger: Trigger) -> None:
        """Validate a trained candidate and publish it when every check passes."""
        segments = self.config.segments
        mine = evaluate(candidate, holdout, segments)
        theirs: Evaluation | None = evaluate(champion, holdout, segments) if champion is not None else None
        artifact, sha256 = artifacts.pack(candidate)
        spec = FeatureSpec.infer(holdout.table, self.config.name)
        serving_spec = FeatureSpec.from_avro(champion_record["spec"]) if champion_record else None
        checks = validate(self.config, mine, theirs, len(artifact), self.settings.max_message_bytes, spec,
                          serving_spec)
        record.update(candidate_metrics=_finite(mine.metrics),
                      champion_metrics=_finite(theirs.metrics) if theirs else {},
                      checks=[c.to_avro() for c in checks])
        failed = [c for c in checks if not c.passed]
        if failed:
            record.update(status="rejected", reason="failed " + "; ".join(
                f"{c.name} ({c.detail})" if c.detail else c.name for c in failed))
            return
        version = self.next_version(record["run_id"])
        model_record = artifacts.sign({
            "model": self.config.name, "version": version, "created_at": now_ms(), "task": self.config.task,
            "flavor": artifacts.FLAVOR, "parent_version": record["champion_version"], "run_id": record["run_id"],
            "compression": "zlib", "artifact": artifact, "artifact_sha256": sha256,
            "spec": spec.with_version(version).to_avro(), "metrics": _finite(mine.metrics),
            "status": "validated", "calibration": holdout_calibration(self.config.task, holdout, mine, spec)},
            self.settings)
        self.registry.publish_model(model_record)
        record.update(status="published", candidate_version=version,
                      reason=f"{self.config.primary_metric} {mine.metrics.get(self.config.primary_metric, 0):.4f}"
                             + (f" vs champion {theirs.metrics.get(self.config.primary_metric, 0):.4f}"
                                if theirs else ""))
        if self.config.promotion == "auto":
            self.release(version, f"run {record['run_id']} ({trigger.kind})")


def holdout_calibration(task: str, holdout: Dataset, evaluation: Evaluation,
                        spec: FeatureSpec) -> dict[str, Any] | None:
    """What the candidate's scores mean, learned on the holdout it never trained on: the monitor
    estimates this version's quality from it before labels arrive (None when it cannot be learned)."""
    if evaluation.scores is None or holdout.rows < 50:
        return None
    try:
        if task == "regression":
            kinds = {f.name: f.kind for f in spec.features if f.name in holdout.table.columns}
            calibration = calibrate(holdout.numeric_labels, evaluation.scores, task="regression",
                                    columns={n: holdout.table.columns[n] for n in kinds}, kinds=kinds)
        else:
            calibration = calibrate(holdout.labels, evaluation.scores, evaluation.classes)
    except (ValueError, np.linalg.LinAlgError) as exc:  # a degenerate holdout (one score, one class)
        log.warning("no calibration for this candidate: %s", exc)
        return None
    return calibration.to_avro()


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if np.isfinite(v)}
