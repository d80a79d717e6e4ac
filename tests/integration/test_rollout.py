"""Rollouts on the real broker: shadow never changes answers, a canary's share, the controller's decisions
(a worse challenger rolled back, an equal one promoted), and a controller SIGKILLed mid-rollout."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid

import httpx
import numpy as np
import pytest

from driftline.client import InferenceClient, infer_body
from driftline.producer import Producer
from driftline.registry import Registry
from driftline.synthetic import agrawal
from driftline.topics import create_topics
from schemas import Table
from serving.store import bucket
from tests.integration.helpers import read_topic
from tests.integration.serving_helpers import (
    MODEL,
    env_for,
    publish_first_version,
    publish_version,
    start_node,
    stop_node,
)
from trainers.dataset import from_table
from trainers.job import TrainingJob, Trigger
from trainers.modelfile import parse_model_config

pytestmark = pytest.mark.integration
ROWS, TRUTH = agrawal(3000, function=0, seed=21)


@pytest.fixture
def signed(settings):
    return settings.replace(signing_key="rollout-test-secret")


def inverted_model(settings) -> dict:
    """A model trained on the opposite labels, trained under its own topics and returned as a record:
    it would pass no validation, but rollouts are about what validation misses."""
    elsewhere = settings.replace(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    create_topics(elsewhere)
    columns, labels = agrawal(1500, function=0, seed=1)
    table = Table({**columns, "label": (~labels).astype(np.int64)}, {**{n: "float" for n in columns}, "label": "int"})
    config = parse_model_config(MODEL)  # a first version has no champion to lose against
    run = TrainingJob(elsewhere, config).run(Trigger("init", "init"), dataset=from_table(table, "label"))
    assert run["status"] == "published", run["reason"]
    return Registry(elsewhere).model("loans", "1")


def ask(url: str, i: int, request_id: str, version: str | None = None) -> dict:
    path = f"/v2/models/loans/versions/{version}/infer" if version else "/v2/models/loans/infer"
    row = {k: v[i % len(TRUTH):i % len(TRUTH) + 1] for k, v in ROWS.items()}
    response = httpx.post(url + path, json=infer_body(row, request_id=request_id), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def start_controller(settings, log_path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "driftline.cli.main", "rollout", "--metrics-port", "0"],
                            env=env_for(settings), stdout=subprocess.DEVNULL, stderr=log_path.open("ab"))


def label_requests(settings, ids: list[str], rows: list[int]) -> None:
    with Producer("loans", settings=settings) as producer:
        producer.labels(ids, [bool(TRUTH[i % len(TRUTH)]) for i in rows])


def decision(settings, rollout_id: str, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rollout = (Registry(settings).deployments()["loans"].get("rollout") or {})
        if rollout.get("id") == rollout_id and rollout["state"] != "running":
            return Registry(settings).deployments()["loans"]
        time.sleep(0.5)
    return None


def test_shadow_never_changes_answers_and_a_worse_challenger_is_rolled_back_once_across_a_sigkill(signed, tmp_path):
    publish_first_version(signed)
    publish_version(signed, inverted_model(signed), "2", deploy=False)
    node, url = start_node(signed)
    controller = start_controller(signed, tmp_path / "rollout.log")
    try:
        registry = Registry(signed)
        policy = dict(margin=0.02, confidence=0.95, min_pairs=120, max_pairs=2000, look_every=30)
        from driftline.comparison import Policy

        record = registry.start_rollout("loans", "2", "shadow", share=1.0, policy=Policy(**policy), timeout_s=600)
        rollout_id = record["rollout"]["id"]
        deadline = time.monotonic() + 30  # the node applies the rollout when it reads the record
        while time.monotonic() < deadline and ask(url, 0, "probe")["parameters"].get("rollout_id") != rollout_id:
            time.sleep(0.2)

        ids, rows = [], []
        for i in range(60):
            request_id = f"r-{i}"
            answer = ask(url, i, request_id)
            pinned = ask(url, i, f"pinned-{i}", version="1")
            assert answer["model_version"] == "1" and answer["parameters"]["role"] == "champion"
            assert answer["outputs"] == pinned["outputs"], "the shadow never changes what the caller gets"
            ids.append(request_id)
            rows.append(i)
        label_requests(signed, ids, rows)
        time.sleep(2)  # the controller has read some pairs (fewer than min_pairs: no decision yet)
        assert decision(signed, rollout_id, 0.1) is None
        controller.send_signal(signal.SIGKILL)
        controller.wait()
        controller = start_controller(signed, tmp_path / "rollout.log")  # rebuilds its pairs from the topics
        for i in range(60, 200):
            ask(url, i, f"r-{i}")
            ids.append(f"r-{i}")
            rows.append(i)
        label_requests(signed, ids[60:], rows[60:])
        final = decision(signed, rollout_id, 60)
        assert final is not None, "the controller decided within its evidence budget"
        assert final["action"] == "rollback" and final["version"] == "1"
        evidence = json.loads(final["rollout"]["evidence"])
        assert 120 <= evidence["pairs"] <= 200 and evidence["challenger"] < evidence["champion"]
        assert evidence["upper"] < -policy["margin"]

        # one decision record across the SIGKILL and restart, one alert; the node drops the challenger
        time.sleep(3)
        records = read_topic(signed, signed.topic("deployments"), expected=3, timeout=20)
        assert len(records) == 3, "deploy v1, the rollout, one rollback"
        alerts = [json.loads(m.value()) for m in read_topic(signed, signed.topic("alerts"), expected=1, timeout=20)]
        assert [a["type"] for a in alerts if a["type"].startswith("driftline.rollout")] == \
            ["driftline.rollout.rolled_back"]
        assert "parameters" in ask(url, 1, "after") and "rollout_id" not in ask(url, 1, "after")["parameters"]
        shadows = [m for m in read_topic(signed, signed.topic("predictions"), expected=400, timeout=30)
                   if (("driftline.role", b"shadow") in (m.headers() or []))]
        assert len(shadows) >= 200, "every request of the rollout was also predicted in the shadow"
    finally:
        controller.send_signal(signal.SIGTERM)
        assert controller.wait(timeout=60) == 0
        assert stop_node(node) == 0


def test_a_canary_answers_its_share_by_request_id_and_an_equal_challenger_is_promoted(signed, tmp_path):
    base = publish_first_version(signed)
    publish_version(signed, base, "2", deploy=False)  # the same model: every pair agrees
    node, url = start_node(signed)
    controller = start_controller(signed, tmp_path / "rollout.log")
    try:
        from driftline.comparison import Policy

        record = Registry(signed).start_rollout("loans", "2", "canary", share=0.2, timeout_s=600,
                                                policy=Policy(margin=0.02, min_pairs=200, max_pairs=5000,
                                                              look_every=50))
        rollout_id = record["rollout"]["id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and ask(url, 0, "probe")["parameters"].get("rollout_id") != rollout_id:
            time.sleep(0.2)
        answered: dict[str, str] = {}

        async def send_all(count: int = 10_000, connections: int = 16) -> None:
            """Closed loop: 16 requests in flight, the next sent when one is answered (as fast as the node
            answers, whatever else the machine is doing)."""
            client = InferenceClient(url, "loans", connections=connections, timeout=30)
            numbers = iter(range(count))

            async def worker() -> None:
                for i in numbers:
                    row = {k: v[i % 3000:i % 3000 + 1] for k, v in ROWS.items()}
                    answer = await client.infer(infer_body(row, request_id=f"c-{i}"))
                    assert answer.status == 200, answer.error
                    answered[answer.request_ids[0]] = answer.version

            try:
                await asyncio.gather(*(worker() for _ in range(connections)))
            finally:
                client.close()

        asyncio.run(send_all())
        assert len(answered) == 10_000
        share = sum(v == "2" for v in answered.values()) / len(answered)
        assert abs(share - 0.2) <= 0.02, share
        assert all((answered[r] == "2") == (bucket(r) < 0.2) for r in answered), "deterministic by request id"
        retry = ask(url, 5, "c-5")
        assert retry["model_version"] == answered["c-5"], "a retry lands on the same version"
        canary = [r for r, v in answered.items() if v == "2"][:400]
        label_requests(signed, canary, [int(r.split("-")[1]) for r in canary])
        final = decision(signed, rollout_id, 60)
        assert final is not None and final["action"] == "promote" and final["version"] == "2"
        evidence = json.loads(final["rollout"]["evidence"])
        assert evidence["pairs"] >= 200 and evidence["discordant"] == [0, 0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and ask(url, 7, "z")["model_version"] != "2":
            time.sleep(0.2)
        assert ask(url, 7, "z")["model_version"] == "2", "the node serves the promoted version"
    finally:
        controller.send_signal(signal.SIGTERM)
        assert controller.wait(timeout=60) == 0
        assert stop_node(node) == 0




def test_without_labels_the_timeout_decides_by_the_estimate_and_probation_then_rolls_back(signed):
    """The controller in process, fed prediction events as nodes write them (champion answers, challenger
    in the shadow) and no label: at the timeout it decides on both versions' calibrated probability of
    being right (the same model twice: a promotion). Then, on probation, a labelled quality window of the
    new version far under the old champion's rolls it back: one record each, in that order."""
    from confluent_kafka import Producer as KafkaProducer

    from driftline.comparison import Policy
    from driftline.control import ControlPublisher
    from driftline.kafka_clients import common_config
    from driftline.producer import ROLE_HEADER, ROLLOUT_HEADER
    from schemas import Codec, encode_columns
    from schemas.columns import float_buffer
    from trainers.rollout import RolloutController

    base = publish_first_version(signed)
    assert base["calibration"] is not None, "the trainer calibrates every candidate on its holdout"
    publish_version(signed, base, "2", deploy=False)  # the same model and calibration: estimated equal
    registry = Registry(signed)
    record = registry.start_rollout("loans", "2", "shadow", share=1.0, timeout_s=4, probation_s=600,
                                    policy=Policy(margin=0.02, min_pairs=100, max_pairs=1000, look_every=25))
    rollout_id = record["rollout"]["id"]
    codec, producer = Codec.default(), KafkaProducer(common_config(signed))
    scores = np.random.default_rng(3).random(300)
    for version, role in (("1", "champion"), ("2", "shadow")):
        event = {"model": "loans", "model_version": version, "event_time": int(time.time() * 1000),
                 "request_ids": [f"u-{i}" for i in range(300)], "segment": None,
                 "columns": encode_columns({"age": [30.0] * 300}), "prediction": float_buffer(scores),
                 "predicted_class": None}
        producer.produce(signed.topic("predictions"), codec.encode("driftline.Prediction", event), b"u-0",
                         headers=[(ROLE_HEADER, role.encode()), (ROLLOUT_HEADER, rollout_id.encode())])
    assert producer.flush(30) == 0
    controller = RolloutController(signed)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not controller.decisions:
            controller.step()
        [promotion] = controller.decisions
        evidence = json.loads(promotion["rollout"]["evidence"])
        assert promotion["action"] == "promote" and evidence["basis"] == "label-free estimate"
        assert evidence["pairs"] == 300 and evidence["difference"] == 0 and evidence["timed_out"]
        assert registry.conclude_rollout("loans", rollout_id, "rollback", evidence, reason="again") is None

        for _ in range(10):
            controller.step()
        assert rollout_id in controller.probation and registry.deployments()["loans"]["version"] == "2"
        now = int(time.time() * 1000)
        window = {"model": "loans", "model_version": "2", "window_start": now - 10_000, "window_end": now,
                  "task": "classification", "rows": 400, "metrics": {"accuracy": 0.30}, "baseline": {},
                  "baseline_source": "test", "estimated": False, "lower": {}, "upper": {}}
        ControlPublisher(signed).publish("quality", b"loans:2:w",
                                         codec.encode("driftline.QualitySummary", window))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and registry.deployments()["loans"]["version"] != "1":
            controller.step()
    finally:
        controller.close()
    deployment = registry.deployments()["loans"]
    assert deployment["version"] == "1" and deployment["action"] == "rollback"
    assert deployment["rollout"]["state"] == "rolled_back" and "probation" in deployment["reason"]
    assert json.loads(deployment["rollout"]["evidence"])["metrics"] == {"accuracy": 0.30}
    assert [d["action"] for d in controller.decisions] == ["promote", "rollback"]
