"""The trainer on the real broker: concept drift retrained and published, lineage replayed, idempotent runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from driftline import Producer, artifacts
from driftline.alerts import Alert
from driftline.kafka_clients import make_producer
from driftline.offsets import OffsetRange
from driftline.registry import Registry
from driftline.synthetic import agrawal
from schemas import Table
from trainers.dataset import from_table, read_dataset
from trainers.job import TrainingJob, Trigger
from trainers.modelfile import parse_model_config
from trainers.service import Trainer

pytestmark = pytest.mark.integration

MODEL = {"name": "loans", "pipeline": "hoeffding_adaptive_tree", "training_window": "1h",
         "holdout_fraction": 0.25, "segments": ["elevel"],
         "validation": {"floors": {"accuracy": 0.6}, "max_regression": 0.0, "segment_min_rows": 40,
                        "segment_tolerance": 0.05, "max_latency_p99_ms": 50},
         "trigger": {"on": ["drift", "decay"], "debounce": "1s", "cooldown": "5s", "min_new_labels": 500}}


@pytest.fixture
def signed(settings):
    return settings.replace(signing_key="test-signing-secret")


def init_champion(settings, config) -> dict:
    columns, labels = agrawal(3000, function=0, seed=1)
    table = Table({**columns, "label": labels.astype(np.int64)},
                  {**{n: "float" for n in columns}, "label": "int"})
    return TrainingJob(settings, config).run(Trigger("init:test", "init"), dataset=from_table(table, "label"))


def produce_traffic(settings, rows: int, function: int, seed: int) -> None:
    columns, labels = agrawal(rows, function=function, seed=seed)
    with Producer(model="loans", settings=settings, model_version="1") as producer:
        for start in range(0, rows, 100):
            part = {k: v[start:start + 100] for k, v in columns.items()}
            ids = [f"s{seed}-{i}" for i in range(start, start + len(part["age"]))]
            producer.predictions(part, np.zeros(len(ids)), request_ids=ids)
            producer.labels(ids, labels[start:start + 100].astype(int).tolist())


def drift_alert(settings) -> Alert:
    alert = Alert.create("driftline.drift", "loans", severity="warning", identity=("test-window",),
                         data={"message": "salary drifted", "features": [{"name": "salary"}]})
    producer = make_producer(settings)
    producer.produce(settings.topic("alerts"), key=b"loans", value=alert.to_json())
    producer.flush(10)
    return alert


def test_concept_drift_alert_retrains_validates_publishes_and_replays(signed):
    config = parse_model_config(MODEL)
    init = init_champion(signed, config)
    assert init["status"] == "published" and init["candidate_version"] == "1", init["reason"]
    registry = Registry(signed)
    assert registry.deployments()["loans"]["version"] == "1"

    produce_traffic(signed, 4000, function=2, seed=7)  # the concept changed: Agrawal function 0 -> 2
    time.sleep(5)  # past the cooldown that follows the initial run
    alert = drift_alert(signed)
    trainer = Trainer(signed, [config])
    try:
        deadline = time.monotonic() + 60
        finished = []
        while not finished and time.monotonic() < deadline:
            finished = trainer.step(0.5)
        # a second drift alert inside the cooldown is recorded as skipped, not run
        again = Alert.create("driftline.drift", "loans", severity="warning", identity=("later-window",),
                             data={"message": "salary drifted again"})
        late = make_producer(signed)
        late.produce(signed.topic("alerts"), key=b"loans", value=again.to_json())
        late.flush(10)
        for _ in range(6):
            trainer.step(0.5)
    finally:
        trainer.close()
    [run] = finished
    assert run["status"] == "published", run["reason"]
    assert run["trigger"] == alert.id and run["trigger_type"] == "drift"
    assert run["champion_version"] == "1" and run["candidate_version"] == "2"
    assert run["rows"] == 4000
    candidate, champion = run["candidate_metrics"]["accuracy"], run["champion_metrics"]["accuracy"]
    assert candidate > champion + 0.15, "the stale champion is measurably worse on post-drift data"
    assert all(c["passed"] for c in run["checks"])
    assert {c["name"] for c in run["checks"]} >= {"finite_outputs", "floor:accuracy", "regression:accuracy",
                                                  "segments:accuracy", "latency_p99_ms", "artifact_bytes",
                                                  "input_compatible"}
    record = registry.model("loans", "2")
    assert record["run_id"] == run["run_id"] and record["parent_version"] == "1"
    assert record["metrics"]["accuracy"] == pytest.approx(candidate)
    deployment = registry.deployments()["loans"]
    assert (deployment["version"], deployment["previous_version"], deployment["action"]) == ("2", "1", "deploy")
    model = artifacts.load(record, signed)
    assert model.predict([{"salary": 1.0, "commission": 0.0, "age": 30.0, "elevel": 1.0, "car": 1.0,
                           "zipcode": 1.0, "hvalue": 1.0, "hyears": 1.0, "loan": 1.0}])[0].shape == (1,)

    skipped = [r for r in registry.runs("loans") if r["status"] == "skipped"]
    assert [r["trigger"] for r in skipped] == [again.id] and "cooldown" in skipped[0]["reason"]

    replayed = read_dataset(signed, "loans", [OffsetRange(**r) for r in run["lineage"]])
    assert replayed.hash == run["dataset_hash"] and replayed.rows == 4000
    cli = subprocess.run([sys.executable, "-m", "driftline.cli.main", "runs", "replay", run["run_id"]],
                         env=env_for(signed), capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and json.loads(cli.stdout)["identical"] is True


def env_for(settings) -> dict:
    import os

    return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "DRIFTLINE_TOPIC_PREFIX": settings.topic_prefix, "DRIFTLINE_PARTITIONS": str(settings.partitions),
            "DRIFTLINE_SIGNING_KEY": settings.signing_key}


def test_a_run_restarted_after_a_crash_publishes_one_version(signed):
    config = parse_model_config(MODEL)
    init_champion(signed, config)
    produce_traffic(signed, 4000, function=2, seed=7)
    job = TrainingJob(signed, config)
    trigger = Trigger("alert-crash", "drift")
    first = job.run(trigger)
    assert first["status"] == "published", first["reason"]
    # the trainer died after publishing the model but before recording the run's end
    registry = Registry(signed)
    registry.publish_run({**first, "status": "started", "finished_at": None})
    again = job.run(trigger)
    assert again["status"] == "published" and again["candidate_version"] == first["candidate_version"]
    assert [r["version"] for r in registry.models("loans")] == ["1", "2"]


def test_empty_window_and_single_class_are_failed_runs(signed):
    config = parse_model_config(MODEL)
    empty = TrainingJob(signed, config).run(Trigger("empty", "operator"))
    assert empty["status"] == "failed" and "no labelled rows" in empty["reason"]
    columns, _ = agrawal(300, function=0, seed=2)
    table = Table({**columns, "label": np.ones(300, dtype=np.int64)}, {**{n: "float" for n in columns}, "label": "int"})
    one = TrainingJob(signed, config).run(Trigger("one-class", "operator"), dataset=from_table(table, "label"))
    assert one["status"] == "failed" and "one class" in one["reason"]
    assert Registry(signed).models("loans") == []


def test_cli_models_init_list_promote_rollback_and_retrain(signed, tmp_path):
    columns, labels = agrawal(1500, function=0, seed=1)
    data = tmp_path / "loans.csv"
    names = list(columns)
    lines = [",".join([*names, "label"])]
    lines += [",".join([*(repr(float(columns[n][i])) for n in names), str(int(labels[i]))]) for i in range(1500)]
    data.write_text("\n".join(lines) + "\n")
    model_file = tmp_path / "loans.yaml"
    model_file.write_text(json.dumps({**MODEL, "promotion": "manual"}))
    env = env_for(signed)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "driftline.cli.main", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    init = cli("models", "init", str(model_file), "--data", str(data))
    assert init.returncode == 0, init.stderr
    assert "loans v1 published from 1500 rows" in init.stdout
    init2 = cli("models", "init", str(model_file), "--data", str(data), "--label-column", "label")
    assert init2.returncode == 0  # the same data again: the same run, nothing new published
    listing = json.loads(cli("models", "list", "loans", "--json").stdout)
    assert [(m["version"], m["status"]) for m in listing] == [("1", "validated")]  # manual promotion
    promote = cli("models", "promote", "loans", "1")
    assert promote.returncode == 0 and "promote to v1" in promote.stdout
    listing = json.loads(cli("models", "list", "loans", "--json").stdout)
    assert [(m["version"], m["status"]) for m in listing] == [("1", "serving")]
    assert cli("models", "rollback", "loans", "--to", "9").returncode == 2
    assert "no version '9'" in cli("models", "rollback", "loans", "--to", "9").stderr
    bad = cli("models", "init", str(tmp_path / "missing.yaml"), "--data", str(data))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    model_file.write_text("name: loans\npipeline: deep_magic\n")
    unknown = cli("models", "init", str(model_file), "--data", str(data))
    assert unknown.returncode == 2 and "unknown pipeline 'deep_magic'" in unknown.stderr
    retrain = cli("retrain", "loans", "--reason", "new quarter")
    assert retrain.returncode == 0 and "requested" in retrain.stdout
    show = json.loads(cli("models", "show", "loans").stdout)
    assert show["version"] == "1" and show["signature"].startswith("hmac-sha256")
