"""Trainer logic without Kafka: signatures, validation verdicts, model files, trigger policy."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from driftline import artifacts
from driftline.artifacts import ArtifactError
from driftline.errors import ConfigError
from driftline.modeling import RiverModel
from driftline.settings import Settings
from driftline.synthetic import agrawal
from schemas import FeatureSpec, Table
from trainers.dataset import from_table
from trainers.job import TrainingJob, Trigger
from trainers.modelfile import parse_duration, parse_model_config
from trainers.trigger import TriggerState
from trainers.validation import evaluate, validate

HMAC = Settings(signing_key="unit-test-secret-0123")


def record_for(model: object, settings: Settings, **fields: object) -> dict:
    artifact, sha = artifacts.pack(model)
    spec = {"model": "m", "version": "3", "features": [{"name": "a"}, {"name": "b"}]}
    return artifacts.sign({"model": "m", "version": "3", "flavor": artifacts.FLAVOR, "compression": "zlib",
                           "artifact": artifact, "artifact_sha256": sha, "task": "classification",
                           "spec": spec, "metrics": {"accuracy": 0.9}, "parent_version": "2", "run_id": "r1",
                           "created_at": 1, "status": "validated", **fields}, settings)


def ed25519_files(tmp_path) -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = tmp_path / "signing.pem"
    public = tmp_path / "verify.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(private), str(public)


def test_hmac_round_trip_and_a_flipped_byte_is_refused() -> None:
    record = record_for({"weights": [1, 2, 3]}, HMAC)
    assert artifacts.load(record, HMAC) == {"weights": [1, 2, 3]}
    tampered = bytearray(record["artifact"])
    tampered[len(tampered) // 2] ^= 0x01
    with pytest.raises(ArtifactError, match="does not match its SHA-256"):
        artifacts.load({**record, "artifact": bytes(tampered)}, HMAC)
    forged = {**record, "artifact": bytes(tampered), "artifact_sha256": "0" * 64}
    with pytest.raises(ArtifactError, match="signature does not verify"):
        artifacts.load(forged, HMAC)
    with pytest.raises(ArtifactError, match="signature does not verify"):
        artifacts.load(record, Settings(signing_key="another-secret-0123"))
    with pytest.raises(ArtifactError, match="needs DRIFTLINE_VERIFY_KEY"):
        artifacts.load(record, Settings())


@pytest.mark.parametrize("field, value", [
    ("spec", {"model": "m", "version": "3", "features": [{"name": "b"}, {"name": "a"}]}),  # reordered columns
    ("task", "regression"), ("metrics", {"accuracy": 0.99}), ("parent_version", "1"), ("run_id", "r2"),
    ("version", "4"), ("status", "rejected"), ("created_at", 2), ("key_id", "hmac:other")])
def test_every_field_of_the_record_is_signed(field, value) -> None:
    record = record_for([1], HMAC)
    artifacts.verify(record, HMAC)
    with pytest.raises(ArtifactError, match="signature does not verify"):
        artifacts.verify({**record, field: value}, HMAC)


def test_the_signature_does_not_depend_on_field_order() -> None:
    record = record_for([1], HMAC)
    artifacts.verify(dict(reversed(list(record.items()))), HMAC)


def test_an_hmac_key_id_is_a_configured_name_that_reveals_nothing_of_the_secret() -> None:
    one = record_for([1], Settings(signing_key="first-secret-0123456"))
    two = record_for([1], Settings(signing_key="second-secret-012345"))
    assert one["key_id"] == two["key_id"] == "hmac:default"
    assert record_for([1], Settings(signing_key="first-secret-0123456", signing_key_id="2026-q4"))["key_id"] == \
        "hmac:2026-q4"


@pytest.mark.parametrize("secret", ["change-me", "secret", "short-secret"])
def test_placeholder_and_short_secrets_are_refused(secret) -> None:
    with pytest.raises(ConfigError, match="at least 16 characters"):
        Settings(signing_key=secret)
    with pytest.raises(ConfigError, match="at least 16 characters"):
        Settings(verify_key=secret)


def test_a_key_file_given_as_a_secret_is_refused_not_used_as_the_secret_string(tmp_path) -> None:
    private, _ = ed25519_files(tmp_path)
    with pytest.raises(ConfigError, match="signing_key_file"):
        Settings(signing_key=private)
    not_a_key = tmp_path / "notes.txt"
    not_a_key.write_text("a long text that is certainly not a PEM private key")
    with pytest.raises(ConfigError, match="is not a PEM private key"):
        record_for([1], Settings(signing_key_file=str(not_a_key)))


def test_ed25519_signing_and_verifying_with_only_the_public_key(tmp_path) -> None:
    private, public = ed25519_files(tmp_path)
    record = record_for([42], Settings(signing_key_file=private))
    assert record["signature_alg"] == "ed25519" and record["key_id"].startswith("ed25519:")
    assert artifacts.load(record, Settings(verify_key_file=public)) == [42]
    with pytest.raises(ArtifactError):
        artifacts.load({**record, "version": "4"}, Settings(verify_key_file=public))  # the version is signed too
    with pytest.raises(ArtifactError):
        artifacts.load({**record, "task": "regression"}, Settings(verify_key_file=public))
    _, other = ed25519_files(_other_dir(tmp_path))
    with pytest.raises(ArtifactError, match="does not verify"):
        artifacts.load(record, Settings(verify_key_file=other))
    with pytest.raises(ArtifactError, match="needs DRIFTLINE_VERIFY_KEY_FILE"):
        artifacts.load(record, Settings(verify_key="an-hmac-secret-only-0123"))


def _other_dir(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    return other


class NaNModel(RiverModel):
    def predict(self, rows):  # a broken candidate
        scores, classes = super().predict(rows)
        scores[::7] = np.nan
        return scores, classes


class OneSegmentWorse(RiverModel):
    """Better overall than the champion, but wrong on every row of one segment."""

    def predict(self, rows):
        scores, classes = super().predict(rows)
        flip = np.array([r.get("elevel") == 2.0 for r in rows])
        scores[flip] = 1 - np.round(scores[flip])
        return scores, classes


def datasets():
    columns, labels = agrawal(3000, function=2, seed=5)
    table = Table({**columns, "label": labels.astype(np.int64)}, {**{n: "float" for n in columns}, "label": "int"})
    return from_table(table, "label").split(0.3)


CONFIG = parse_model_config({"name": "m", "pipeline": "hoeffding_adaptive_tree", "segments": ["elevel"],
                             "validation": {"segment_min_rows": 30, "max_latency_p99_ms": 100}})


def trained(cls, train) -> RiverModel:
    numeric = tuple(sorted(train.table.columns))
    model = cls("classification", "hoeffding_adaptive_tree", numeric, ())
    model.learn(train.table.to_rows(), train.labels.tolist())
    return model


def test_nan_outputs_and_a_regressing_segment_are_rejected_with_the_reason() -> None:
    train, holdout = datasets()
    champion = trained(RiverModel, train.take(np.arange(0)))  # untrained: always answers "0"
    job = TrainingJob(HMAC, CONFIG)
    for cls, failed_check in ((NaNModel, "finite_outputs"), (OneSegmentWorse, "segments:accuracy")):
        candidate = trained(cls, train)
        record = {"run_id": "r", "champion_version": "1", "reason": ""}
        champion_record = {"spec": FeatureSpec.infer(holdout.table, "m").to_avro(), "version": "1"}
        job.finish(record, candidate, holdout, champion, champion_record, Trigger("t", "drift"))
        assert record["status"] == "rejected"
        assert failed_check in record["reason"]
        failed = [c["name"] for c in record["checks"] if not c["passed"]]
        assert failed_check in failed
    assert failed == ["segments:accuracy"]
    # the segment case really was better overall
    overall = {c["name"]: c for c in record["checks"]}["regression:accuracy"]
    assert overall["passed"] and overall["value"] < 0


def test_validation_checks_carry_their_numbers() -> None:
    train, holdout = datasets()
    candidate = trained(RiverModel, train)
    mine = evaluate(candidate, holdout, ("elevel",))
    assert set(mine.segments) == {f"elevel={v}" for v in ("0.0", "1.0", "2.0", "3.0", "4.0")}
    assert sum(s["rows"] for s in mine.segments.values()) == holdout.rows
    spec = FeatureSpec.infer(holdout.table, "m")
    narrower = FeatureSpec("m", tuple(f for f in spec.features if f.name != "salary"))
    checks = {c.name: c for c in validate(CONFIG, mine, None, 10**9, 16 * 2**20, spec, narrower)}
    assert not checks["artifact_bytes"].passed and checks["artifact_bytes"].threshold == 8 * 2**20
    assert not checks["input_compatible"].passed and "salary" in checks["input_compatible"].detail


def test_model_file_errors_are_one_sentence() -> None:
    with pytest.raises(ConfigError, match="unknown pipeline 'magic'"):
        parse_model_config({"name": "m", "pipeline": "magic"})
    with pytest.raises(ConfigError, match="holdout_fraction must be between 0 and 1"):
        parse_model_config({"name": "m", "pipeline": "logistic_regression", "holdout_fraction": 1.5})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_model_config({"name": "m", "pipeline": "logistic_regression", "epochs": 3})
    with pytest.raises(ConfigError, match="is for classification, not regression"):
        parse_model_config({"name": "m", "pipeline": "logistic_regression", "task": "regression"})
    with pytest.raises(ConfigError, match="trigger.cooldown must be a duration"):
        parse_model_config({"name": "m", "pipeline": "logistic_regression", "trigger": {"cooldown": "soon"}})
    assert parse_duration("15m", "x") == 900 and parse_duration(2, "x") == 2.0 and parse_duration("2d", "x") == 172800
    with pytest.raises(ConfigError, match="train_since_change must be true or false"):
        parse_model_config({"name": "m", "pipeline": "logistic_regression", "train_since_change": "yes"})


def test_an_alerts_run_trains_from_the_flagged_window_only_when_the_model_asks(monkeypatch) -> None:
    asked: list[tuple[int, int]] = []
    monkeypatch.setattr("trainers.job.assemble", lambda _s, _m, start, end: asked.append((start, end)))
    now, flagged = 10_000_000, 9_990_000
    base = {"name": "m", "pipeline": "logistic_regression", "training_window": "60s", "label_delay": "2s"}
    TrainingJob(Settings(), parse_model_config(base)).dataset(now, flagged)
    TrainingJob(Settings(), parse_model_config({**base, "train_since_change": True})).dataset(now, flagged)
    TrainingJob(Settings(), parse_model_config({**base, "train_since_change": True})).dataset(now, 1)
    TrainingJob(Settings(), parse_model_config({**base, "train_since_change": True})).dataset(now, None)
    assert asked == [(now - 60_000, now - 2_000), (flagged, now - 2_000), (now - 60_000, now - 2_000),
                     (now - 60_000, now - 2_000)]


def test_trigger_policy_debounce_cooldown_labels_and_operator() -> None:
    policy = parse_model_config({"name": "m", "pipeline": "logistic_regression",
                                 "trigger": {"on": ["drift"], "debounce": "10s", "cooldown": "1m",
                                             "min_new_labels": 100}}).trigger
    state = TriggerState(policy)
    assert state.offer(Trigger("a1", "skew"), 0).action == "skipped"
    assert state.offer(Trigger("a2", "drift"), 0).action == "pending"
    assert state.offer(Trigger("a3", "drift"), 5_000).action == "merged"
    assert state.due(9_999) is None and state.due(10_000).trigger.id == "a2"
    assert state.enough_labels(99, Trigger("a2", "drift")).action == "skipped"
    assert state.enough_labels(99, Trigger("op", "operator")) is None
    state.finished(10_000)
    assert "cooldown" in state.offer(Trigger("a4", "drift"), 30_000).reason
    assert state.offer(Trigger("op", "operator"), 30_000).action == "pending"
    assert state.due(30_000).trigger.kind == "operator"


def scheduled_runs(state: TriggerState, seconds: int, *, published: bool, labels_per_s: int = 1000,
                   step_ms: int = 500) -> list[tuple[int, str]]:
    """The service's loop (``Trainer.run_due``) over simulated time: (when, "ran" | "skipped") per due tick."""
    outcomes = []
    for now in range(0, seconds * 1000, step_ms):
        tick = state.schedule_due(now)
        if tick is not None:
            state.offer(tick, now)
        pending = state.due(now)
        if pending is None:
            continue
        since = state.last_attempt_ms if state.last_attempt_ms is not None else 0
        skip = state.enough_labels((now - since) * labels_per_s // 1000, pending.trigger)
        if skip is not None:
            state.pending = None
            outcomes.append((now, "skipped"))
            continue
        state.finished(now, published=published)
        outcomes.append((now, "ran"))
    return outcomes


@pytest.mark.parametrize("published", [True, False])
def test_a_schedule_ticks_once_a_period_whatever_the_runs_outcome(published) -> None:
    policy = parse_model_config({"name": "m", "pipeline": "logistic_regression",
                                 "trigger": {"debounce": "0s", "cooldown": "0s", "min_new_labels": 10,
                                             "schedule": "60s"}}).trigger
    state = TriggerState(policy, last_attempt_ms=0)  # models init at 0: the first tick is a period later
    runs = scheduled_runs(state, 600, published=published)
    # a rejected candidate used to tick again on the next step: 1,080 runs in these ten minutes
    assert [when for when, _ in runs] == [60_000 * k for k in range(1, 10)]
    assert {outcome for _, outcome in runs} == {"ran"}


def test_a_skipped_tick_waits_a_whole_period_and_a_restart_keeps_the_origin() -> None:
    policy = parse_model_config({"name": "m", "pipeline": "logistic_regression",
                                 "trigger": {"debounce": "10s", "cooldown": "0s", "min_new_labels": 100_000,
                                             "schedule": "60s"}}).trigger
    state = TriggerState(policy, last_attempt_ms=0)
    runs = scheduled_runs(state, 300, published=True, labels_per_s=10)
    # too few labels: each tick is skipped after its debounce, and the next waits a period from the tick
    assert runs == [(70_000, "skipped"), (130_000, "skipped"), (190_000, "skipped"), (250_000, "skipped")]
    restarted = TriggerState(policy, last_tick_ms=250_000)  # what Trainer restores from the runs topic
    assert restarted.schedule_due(309_500) is None and restarted.schedule_due(310_000) is not None
    assert TriggerState(policy).schedule_due(0) is not None  # nothing ever ran: tick now


def test_the_model_files_rollout_section() -> None:
    config = parse_model_config({"name": "m", "pipeline": "logistic_regression",
                                 "rollout": {"strategy": "canary", "share": 0.2, "timeout": "30m",
                                             "probation": "10m", "min_pairs": 100}})
    assert config.rollout.strategy == "canary" and config.rollout.share == 0.2
    assert config.rollout.timeout_seconds == 1800 and config.rollout.probation_seconds == 600
    assert config.rollout.policy.look_every == 25 and config.rollout.policy.min_pairs == 100
    assert parse_model_config({"name": "m", "pipeline": "logistic_regression"}).rollout.strategy == "replace"
    with pytest.raises(ConfigError, match="strategy must be replace, shadow or canary"):
        parse_model_config({"name": "m", "pipeline": "logistic_regression", "rollout": {"strategy": "blue"}})
    with pytest.raises(ConfigError, match="share must be in"):
        parse_model_config({"name": "m", "pipeline": "logistic_regression", "rollout": {"share": 2}})
    with pytest.raises(ConfigError, match="min_pairs <= max_pairs"):
        parse_model_config({"name": "m", "pipeline": "logistic_regression",
                            "rollout": {"min_pairs": 900, "max_pairs": 100}})
