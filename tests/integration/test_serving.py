"""Serving nodes on the real broker: the v2 protocol, prediction events, hot swap under load, rollback, tampering."""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time

import httpx
import numpy as np
import orjson
import pytest

from driftline.client import generate_load, infer_body
from driftline.registry import Registry
from driftline.synthetic import agrawal
from schemas import Codec
from tests.integration.helpers import read_topic
from tests.integration.serving_helpers import publish_first_version, publish_version, start_node, stop_node

pytestmark = pytest.mark.integration
POOL, _ = agrawal(400, function=0, seed=9)


def body(i: int, rows: int = 1, **kwargs) -> dict:
    start = (i * rows) % (400 - rows)
    return infer_body({k: v[start:start + rows] for k, v in POOL.items()}, **kwargs)


@pytest.fixture
def signed(settings):
    return settings.replace(signing_key="serving-test-secret")


def stop(process) -> int:
    return stop_node(process)


def test_open_inference_protocol_endpoints_errors_and_prediction_events(signed):
    publish_first_version(signed)
    node, url = start_node(signed, "--max-body-bytes", "20000")
    try:
        assert httpx.get(f"{url}/v2").json()["name"] == "driftline"
        assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
        meta = httpx.get(f"{url}/v2/models/loans").json()
        assert meta["versions"] == ["1"] and meta["version"] == "1" and meta["platform"] == "river"
        assert {i["name"] for i in meta["inputs"]} == set(POOL) and all(i["datatype"] == "FP64" for i in meta["inputs"])
        assert [o["name"] for o in meta["outputs"]] == ["score", "predicted_class"]
        assert httpx.get(f"{url}/v2/models/loans/versions/1").status_code == 200
        assert httpx.get(f"{url}/v2/models/loans/ready").json() == {"name": "loans", "ready": True}

        single = httpx.post(f"{url}/v2/models/loans/infer", json=body(0, request_id="req-1")).json()
        assert single["id"] == "req-1" and single["model_version"] == "1"
        assert single["parameters"]["request_ids"] == ["req-1"]
        score = single["outputs"][0]
        assert score["name"] == "score" and score["shape"] == [1] and 0 <= score["data"][0] <= 1
        ids = [f"b-{i}" for i in range(5)]
        batch = httpx.post(f"{url}/v2/models/loans/versions/1/infer", json=body(1, rows=5, request_ids=ids)).json()
        assert batch["parameters"]["request_ids"] == ids and batch["outputs"][1]["shape"] == [5]
        only = httpx.post(f"{url}/v2/models/loans/infer",
                          json={**body(2), "outputs": [{"name": "predicted_class"}]}).json()
        assert [o["name"] for o in only["outputs"]] == ["predicted_class"]

        bad = {
            "unknown input": {**body(3), "inputs": [*body(3)["inputs"], {"name": "colour", "datatype": "BYTES",
                                                                          "shape": [1], "data": ["red"]}]},
            "numeric": {"inputs": [{**t, "datatype": "BYTES"} if t["name"] == "age" else t
                                   for t in body(3)["inputs"]]},
            "has 2 rows": {"inputs": [{**t, "shape": [2]} if t["name"] == "age" else t for t in body(3)["inputs"]]},
            "missing input": {"inputs": [t for t in body(3)["inputs"] if t["name"] != "salary"]},
            "request_ids must be": body(3, request_ids=["a", "b"]),
        }
        for expected, payload in bad.items():
            response = httpx.post(f"{url}/v2/models/loans/infer", json=payload)
            assert response.status_code == 400 and expected in response.json()["error"], (expected, response.text)
        not_json = httpx.post(f"{url}/v2/models/loans/infer", content=b"{nope")
        assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
        huge = httpx.post(f"{url}/v2/models/loans/infer", json=body(0, rows=300))
        assert huge.status_code == 413 and "at most 20000" in huge.json()["error"]

        def chunked():  # no content-length: the node must stop reading once past the limit
            payload = orjson.dumps(body(0, rows=300))
            for start in range(0, len(payload), 4096):
                yield payload[start:start + 4096]

        streamed = httpx.post(f"{url}/v2/models/loans/infer", content=chunked())
        assert streamed.status_code == 413 and "larger than 20000" in streamed.json()["error"]
        assert httpx.post(f"{url}/v2/models/nope/infer", json=body(0)).status_code == 404
        assert httpx.post(f"{url}/v2/models/loans/versions/7/infer", json=body(0)).status_code == 404
        metrics = httpx.get(f"{url}/metrics").text
        assert 'driftline_serving_model_version_info{model="loans",version="1"} 1.0' in metrics
        assert 'driftline_serving_requests_total{model="loans",status="400",version="1"}' in metrics
        assert 'driftline_serving_requests_total{model="loans",status="413",version="1"} 2.0' in metrics
    finally:
        assert stop(node) == 0, "SIGTERM stops the node cleanly"
    codec = Codec.default()
    events = [codec.decode(m.value(), "driftline.Prediction")
              for m in read_topic(signed, signed.topic("predictions"), 3)]
    emitted = [rid for e in events for rid in e["request_ids"]]
    assert sorted(emitted) == sorted(["req-1", *ids, *only["parameters"]["request_ids"]]), \
        "one prediction event per answered request, none for refused ones"
    first = next(e for e in events if e["request_ids"] == ["req-1"])
    assert first["model_version"] == "1" and first["model"] == "loans"
    assert np.frombuffer(first["prediction"], "<f8")[0] == pytest.approx(score["data"][0])



def test_a_stock_v2_client_works_unmodified(signed):
    """tritonclient, with its defaults (binary tensors both ways), against a node."""
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    publish_first_version(signed)
    node, url = start_node(signed)
    try:
        client = triton.InferenceServerClient(url=url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("loans")
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        meta = client.get_model_metadata("loans")
        inputs = []
        for spec in meta["inputs"]:
            tensor = triton.InferInput(spec["name"], [5], spec["datatype"])
            tensor.set_data_from_numpy(np.asarray(POOL[spec["name"]][:5], dtype=np.float64))
            inputs.append(tensor)
        result = client.infer("loans", inputs, request_id="stock-1")
        scores = result.as_numpy("score")
        assert result.get_response()["model_version"] == "1" and result.get_response()["id"] == "stock-1"
        assert scores.shape == (5,) and ((scores >= 0) & (scores <= 1)).all()
        assert result.as_numpy("predicted_class").tolist() == [b"1" if s >= 0.5 else b"0" for s in scores]

        for tensor in inputs:  # the same rows as JSON tensors give the same scores
            tensor.set_data_from_numpy(np.asarray(POOL[tensor.name()][:5], dtype=np.float64), binary_data=False)
        as_json = client.infer("loans", inputs, model_version="1",
                               outputs=[triton.InferRequestedOutput("score", binary_data=False)])
        np.testing.assert_allclose(as_json.as_numpy("score"), scores)
        with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
            client.infer("nope", inputs)
        with pytest.raises(InferenceServerException, match="missing input"):
            client.infer("loans", inputs[1:])
        client.close()
    finally:
        assert stop(node) == 0


def test_several_worker_processes_report_one_nodes_metrics(signed):
    publish_first_version(signed)
    node, url = start_node(signed, "--workers", "2")
    try:
        deadline = time.monotonic() + 30
        while sum(httpx.get(f"{url}/v2/health/ready").status_code == 200 for _ in range(10)) < 10:
            assert time.monotonic() < deadline, "both workers become ready"
            time.sleep(0.2)
        for i in range(40):  # a new connection each: the kernel spreads them over the workers
            assert httpx.post(f"{url}/v2/models/loans/infer", json=body(i)).status_code == 200
        for _ in range(6):  # whichever worker answers the scrape reports every worker's requests
            scrape = httpx.get(f"{url}/metrics").text
            assert 'driftline_serving_requests_total{model="loans",status="200",version="1"} 40.0' in scrape
            assert 'driftline_serving_model_version_info{model="loans",version="1"} 1.0' in scrape
    finally:
        assert stop(node) == 0

def test_requests_over_the_concurrency_limit_get_a_json_503_at_once(signed):
    """--emit ack holds each request until Kafka acknowledges it, so 40 concurrent ones overlap."""
    publish_first_version(signed)
    node, url = start_node(signed, "--emit", "ack", "--limit-concurrency", "2")
    try:
        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=40)) as client:
                return await asyncio.gather(*(client.post(f"{url}/v2/models/loans/infer", json=body(i))
                                              for i in range(40)))

        answers = asyncio.run(burst())
        statuses = collections.Counter(a.status_code for a in answers)
        assert set(statuses) == {200, 503} and statuses[200] >= 2, statuses
        refused = next(a for a in answers if a.status_code == 503)
        assert "limit of 2 requests in flight" in refused.json()["error"]
        scrape = httpx.get(f"{url}/metrics").text
        assert (f'driftline_serving_requests_total{{model="loans",status="503",version="1"}} '
                f'{float(statuses[503])}') in scrape
    finally:
        assert stop(node) == 0


def test_hot_swap_under_load_rollback_and_a_tampered_version(signed):
    base = publish_first_version(signed)
    nodes = [start_node(signed) for _ in range(2)]
    urls = [url for _, url in nodes]
    # (publish started, publish returned, version): a node may swap to a version as soon as its
    # deployment record is on the topic, which is somewhere between the two instants
    timeline: list[tuple[float, float, str]] = [(0.0, 0.0, "1")]
    stop_publishing = threading.Event()

    def publisher() -> None:
        time.sleep(2)
        for version in range(2, 12):  # ten deployments, then a rollback
            began = time.time()
            publish_version(signed, base, str(version))
            timeline.append((began, time.time(), str(version)))
            time.sleep(0.5)
        began = time.time()
        Registry(signed).deploy("loans", "6", "rollback", reason="test rollback")
        timeline.append((began, time.time(), "6"))

    thread = threading.Thread(target=publisher)
    thread.start()
    try:
        load = asyncio.run(generate_load(urls, "loans", lambda i: body(i), rate=300, duration=30, connections=16))
    finally:
        stop_publishing.set()
        thread.join()
    try:
        # a tampered artifact is refused and the nodes keep serving the rolled-back version
        publish_version(signed, base, "99", tamper=True)
        time.sleep(3)
        after = [httpx.post(f"{u}/v2/models/loans/infer", json=body(0)).json()["model_version"] for u in urls]
        assert after == ["6", "6"]
        metrics = httpx.get(f"{urls[0]}/metrics").text
        assert 'driftline_serving_load_failures_total{model="loans"} 1.0' in metrics
    finally:
        for process, _ in nodes:
            assert stop(process) == 0
    answers = load.answers
    assert len(answers) + load.behind_schedule == 300 * 30
    assert len(answers) >= 0.9 * 300 * 30, f"only {len(answers)} requests were sent on schedule"
    failures = load.failed
    assert failures == [], f"{len(failures)} failed requests, first: {failures[0].error if failures else ''}"
    deployed = sorted(timeline)
    for answer in answers:
        # the latest two versions published before the request started are allowed, and any
        # version whose publication overlapped the request
        before = [v for _, returned, v in deployed if returned <= answer.started]
        during = {v for began, returned, v in deployed if returned > answer.started and began <= answer.finished}
        assert answer.version in set(before[-2:]) | during, (answer.version, before[-2:], during)
    settled = [a for a in answers if a.started > timeline[-1][1] + 2]
    assert settled and {a.version for a in settled} == {"6"}, "the rollback reached every node"
    alerts = [json.loads(m.value()) for m in read_topic(signed, signed.topic("alerts"))]
    refused = [a for a in alerts if a["type"] == "driftline.serving.load_failed"]
    assert len(refused) == 2 and all("v99" in a["data"]["message"] for a in refused)  # one per node


@pytest.mark.parametrize("change", ["spec", "task"])
def test_a_record_whose_spec_or_task_changed_after_signing_is_refused_by_every_node(signed, change):
    """Anyone who can write the models topic can reorder a model's features; the signature covers them."""
    base = publish_first_version(signed)
    nodes = [start_node(signed) for _ in range(2)]
    try:
        if change == "spec":
            spec = dict(base["spec"])
            spec["features"] = list(reversed(spec["features"]))  # columns fed to the model in another order
            altered = {"spec": spec}
        else:
            altered = {"task": "regression"}
        publish_version(signed, base, "2", changed_after_signing=altered)
        deadline = time.monotonic() + 30
        refused: list[dict] = []
        while len(refused) < 2 and time.monotonic() < deadline:
            alerts = [json.loads(m.value()) for m in read_topic(signed, signed.topic("alerts"))]
            refused = [a for a in alerts if a["type"] == "driftline.serving.load_failed"]
            time.sleep(0.5)
        assert len(refused) == 2 and all("v2" in a["data"]["message"] and "signature" in a["data"]["message"]
                                         for a in refused), refused
        answers = [httpx.post(f"{url}/v2/models/loans/infer", json=body(0)) for _, url in nodes]
        assert [a.status_code for a in answers] == [200, 200]
        assert [a.json()["model_version"] for a in answers] == ["1", "1"], "the old version keeps serving"
    finally:
        for process, _ in nodes:
            assert stop(process) == 0


def test_a_node_keeps_versions_without_artifacts_and_loads_the_deployed_one(signed):
    """A node follows every version's record but keeps none's artifact (megabytes each, one more with each
    retraining); the deployed version's bytes are read from the topic when it is loaded, and the swap to a
    later version still happens. A tampered version is refused on its bytes read back."""
    from serving.store import ModelStore

    base = publish_first_version(signed)
    for version in ("2", "3"):
        publish_version(signed, base, version, deploy=False)
    publish_version(signed, base, "4", tamper=True, deploy=False)
    store = ModelStore(signed, ["loans"])
    try:
        deadline = time.monotonic() + 60
        while not store.ready and time.monotonic() < deadline:
            store.step()
        assert store.ready and store.get("loans").version == "1"
        kept = store._records.latest
        assert {record["version"] for record in kept.values()} == {"1", "2", "3", "4"}
        assert all("artifact" not in record and record["artifact_bytes"] > 1000 for record in kept.values())
        with Registry(signed) as registry:
            registry.deploy("loans", "3", "deploy", reason="test")
            while store.get("loans").version != "3" and time.monotonic() < deadline:
                store.step()
            registry.deploy("loans", "4", "deploy", reason="test")
        while ("loans", "4") not in store.failed and time.monotonic() < deadline:
            store.step()  # v4 is met on its bytes and refused: v3 keeps serving
        assert store.get("loans").version == "3" and ("loans", "4") in store.failed
    finally:
        store.stop()
