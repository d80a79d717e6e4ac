"""AlertSubscriber, and the CLI as a user runs it, against the real broker."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from driftline import Alert, AlertSubscriber
from driftline.broker import free_port
from driftline.kafka_clients import make_producer
from driftline.topics import ALL_TOPICS

pytestmark = pytest.mark.integration


def publish(settings, alerts, extra=()):
    producer = make_producer(settings)
    for alert in alerts:
        producer.produce(settings.topic("alerts"), key=alert.model.encode(), value=alert.to_json(),
                         headers=alert.kafka_headers())
    for raw in extra:
        producer.produce(settings.topic("alerts"), value=raw)
    producer.flush()


def alert(model, kind="driftline.drift", severity="warning", n=0):
    return Alert.create(kind, model, severity=severity, data={"message": f"{model} {kind} {n}"},
                        identity=(n,))


def drain(subscriber, want, rounds=30):
    got = []
    for _ in range(rounds):
        a = subscriber.poll(0.5)
        if a is not None:
            got.append(a)
        if len(got) >= want:
            break
    return got


def test_subscriber_filters_by_model_type_and_severity(settings):
    publish(settings, [alert("churn"), alert("fraud"), alert("churn", "driftline.skew", "info", 1),
                       alert("churn", "driftline.decay", "critical", 2)], extra=[b"not an alert"])
    with AlertSubscriber(settings, models=["churn"], min_severity="warning") as sub:
        got = drain(sub, 2)
        assert sub.poll(1.0) is None
    assert sorted(a.type for a in got) == ["driftline.decay", "driftline.drift"]


def test_consumer_group_resumes_after_committed_alerts(settings):
    publish(settings, [alert("m", n=i) for i in range(3)])
    with AlertSubscriber(settings, group_id="pager") as sub:
        first = drain(sub, 3)
    assert len(first) == 3
    publish(settings, [alert("m", n=9)])
    with AlertSubscriber(settings, group_id="pager") as sub:
        again = drain(sub, 1)
        assert sub.poll(1.0) is None
    assert [a.data["message"] for a in again] == ["m driftline.drift 9"]


def run_cli(settings, *args, env_extra=None, timeout=120):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "DRIFTLINE_TOPIC_PREFIX": settings.topic_prefix, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "driftline.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_alerts_tail_prints_alerts_readably(settings):
    publish(settings, [alert("churn", n=1), alert("fraud", n=2)])
    out = run_cli(settings, "alerts", "tail", "--model", "churn")
    assert out.returncode == 0, out.stderr
    assert "WARNING" in out.stdout and "churn driftline.drift 1" in out.stdout
    assert "fraud" not in out.stdout and "-- 1 alert(s)" in out.stdout


def test_topics_create_is_idempotent_and_list_shows_partitions(kafka, tmp_path):
    prefix = f"cli{os.getpid()}{free_port()}."
    settings = kafka.settings.replace(topic_prefix=prefix)
    first = run_cli(settings, "topics", "create")
    second = run_cli(settings, "topics", "create")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.count("created") == len(ALL_TOPICS)
    assert second.stdout.count("exists") == len(ALL_TOPICS)
    listing = dict(line.split(None, 1) for line in run_cli(settings, "topics", "list").stdout.splitlines())
    assert listing[f"{prefix}models"] == "1 partition(s)"
    assert listing[f"{prefix}features"] == f"{settings.partitions} partition(s)"
    assert len(listing) == len(ALL_TOPICS)
    if shutil.which("kcat"):
        kcat = subprocess.run(["kcat", "-b", settings.bootstrap_servers, "-L"], capture_output=True,
                              text=True, timeout=30)
        for name in ALL_TOPICS:
            assert f'topic "{prefix}{name}"' in kcat.stdout


def test_compacted_topics_are_compacted_and_models_allow_large_messages(settings):
    from confluent_kafka.admin import ConfigResource

    from driftline.kafka_clients import make_admin

    admin = make_admin(settings)
    resources = [ConfigResource("topic", settings.topic(n)) for n in ("models", "deployments", "features")]
    configs = {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
    assert configs[settings.topic("models")]["cleanup.policy"].value == "compact"
    assert int(configs[settings.topic("models")]["max.message.bytes"].value) >= 8 * 1024 * 1024
    assert configs[settings.topic("deployments")]["cleanup.policy"].value == "compact"
    assert configs[settings.topic("features")]["cleanup.policy"].value == "delete"


def test_config_show_masks_secrets(settings):
    out = run_cli(settings, "config", "show", env_extra={"DRIFTLINE_SASL_PASSWORD": "hunter2"})
    assert out.returncode == 0 and "hunter2" not in out.stdout and "***" in out.stdout


def test_broker_up_on_a_taken_port_says_so_in_one_sentence(tmp_path, settings):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        env = {"DRIFTLINE_STATE_DIR": str(tmp_path), "DRIFTLINE_BROKER_PORT": str(port),
               "DRIFTLINE_CONTROLLER_PORT": str(free_port()), "KAFKA_BOOTSTRAP_SERVERS": ""}
        out = subprocess.run([sys.executable, "-m", "driftline.cli.main", "broker", "up"],
                             env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert f"port 127.0.0.1:{port} is already in use" in out.stderr


def test_bad_setting_is_one_sentence_and_exit_2(settings):
    out = run_cli(settings, "topics", "list", env_extra={"DRIFTLINE_PARTITIONS": "many"})
    assert out.returncode == 2
    assert out.stderr.strip() == "driftline: error: DRIFTLINE_PARTITIONS must be an integer, got 'many'"


def test_broker_up_when_maven_cannot_resolve_says_so(tmp_path):
    env = {**os.environ, "DRIFTLINE_STATE_DIR": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": "",
           "DRIFTLINE_KAFKA_VERSION": "0.0.0-missing", "DRIFTLINE_BROKER_PORT": str(free_port()),
           "DRIFTLINE_CONTROLLER_PORT": str(free_port())}
    out = subprocess.run([sys.executable, "-m", "driftline.cli.main", "broker", "up"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.startswith("driftline: error: Maven could not resolve Kafka 0.0.0-missing's jars")
    assert out.stderr.strip().count("\n") == 0


def test_broker_up_without_java_or_docker_says_what_is_missing(tmp_path):
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path),
           "DRIFTLINE_STATE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "driftline.cli.main", "broker", "up"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "Java 17+ is not installed and no Docker engine answers" in out.stderr


def test_profile_is_published_to_the_compacted_profiles_topic(settings, tmp_path):
    import numpy as np

    from streams.drift.profile import Profile
    from tests.integration.helpers import read_topic

    rng = np.random.default_rng(0)
    path = tmp_path / "ref.csv"
    path.write_text("x,plan\n" + "\n".join(f"{v:.4f},{p}" for v, p in zip(
        rng.normal(size=300), rng.choice(["a", "b"], 300), strict=True)) + "\n")
    out = run_cli(settings, "profile", str(path), "--model", "churn", "--version", "3")
    assert out.returncode == 0, out.stderr
    [message] = read_topic(settings, settings.topic("profiles"), 1)
    assert message.key() == b"churn"
    profile = Profile.from_bytes(message.value())
    assert (profile.model, profile.version, profile.rows) == ("churn", "3", 300)
    assert set(profile.features) == {"x", "plan"}


def test_profile_from_a_topic_time_range_reads_only_that_range(settings, tmp_path):
    import time as _time

    import numpy as np

    from driftline import Producer
    from streams.drift.profile import Profile

    rng = np.random.default_rng(0)
    with Producer(model="churn", settings=settings) as producer:
        producer.features_batch({"x": rng.normal(100, 1, 50), "plan": ["a"] * 50})  # before the range
    _time.sleep(1.0)
    start = int(_time.time() * 1000)
    with Producer(model="churn", settings=settings) as producer:
        for _ in range(5):
            producer.features_batch({"x": rng.normal(size=100), "plan": list(rng.choice(["a", "b"], 100))})
        producer.features_batch({"x": rng.normal(size=100)}, )  # another model's rows are skipped below
    with Producer(model="other", settings=settings) as producer:
        producer.features_batch({"x": rng.normal(size=30)})
    _time.sleep(0.5)
    out_file = tmp_path / "p.profile"
    out = run_cli(settings, "profile", "--from-topic", "features", "--start", str(start),
                  "--model", "churn", "-o", str(out_file))
    assert out.returncode == 0, out.stderr
    profile = Profile.load(out_file)
    assert profile.rows == 600
    assert abs(profile.features["x"].mean) < 0.2, "rows before the range are not in the profile"
    assert profile.source.startswith(f"{settings.topic('features')}@")
    bad = run_cli(settings, "profile", "--from-topic", "features", "--start", "yesterday", "--model", "churn")
    assert bad.returncode == 2 and "neither an ISO 8601 time nor epoch milliseconds" in bad.stderr

