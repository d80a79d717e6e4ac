"""The closed loop end to end on the real broker, and again with a monitor and a node killed mid-loop."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys

import httpx
import pytest

from driftline.demo.loop import Loop, Scenario
from driftline.demo.simulator import Traffic
from driftline.registry import Registry
from schemas import Codec
from tests.integration.helpers import read_topic

pytestmark = pytest.mark.integration


def run_loop(settings, tmp_path, **scenario) -> tuple[Loop, dict]:
    settings = settings.replace(signing_key="loop-test-secret", state_dir=str(tmp_path), window_seconds=6.0,
                                grace_seconds=0.6)
    loop = Loop(settings, Scenario(window=6.0, stable=12.0, after_swap=4.0, deadline=90.0,
                                   traffic=Traffic(rate=150.0), **scenario), lambda tag, text: print(tag, text))
    try:
        loop.prepare()
        loop.start_services()
        summary = loop.run()
        # after the loop, every node answers with the new version
        body = {"inputs": [{"name": n, "datatype": "FP64", "shape": [1], "data": [1.0]}
                           for n in ("salary", "commission", "age", "elevel", "car", "zipcode", "hvalue",
                                     "hyears", "loan")]}
        summary["versions_now"] = [httpx.post(f"{u}/v2/models/loans/infer", json=body).json()["model_version"]
                                   for u in loop.urls]
    finally:
        codes = loop.stop_services()
    summary["exit_codes"] = codes
    return loop, summary


def test_driftline_demo_closes_the_loop_and_the_topics_show_it(settings, tmp_path):
    """`driftline demo` as a user runs it (shorter): exit 0, the JSON summary, and the topics behind it."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "DRIFTLINE_TOPIC_PREFIX": settings.topic_prefix, "DRIFTLINE_STATE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "driftline.cli.main", "demo", "--window", "6", "--stable-seconds",
                          "12", "--after-swap", "4", "--rate", "150", "--json-file", str(tmp_path / "demo.json")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert summary["ok"] and summary["failed_requests"] == 0
    for key in ("drift_injected_at", "first_alert_s", "published_s", "swapped_all_nodes_s", "accuracy_stale",
                "accuracy_after", "requests", "events_produced", "events_monitored", "dead_lettered",
                "serving_url", "model_versions"):
        assert summary[key] is not None, key
    assert summary["accuracy_after"] > summary["accuracy_stale"]
    assert summary["events_monitored"] == summary["requests"]  # every answered request reached the monitor
    assert "monitor exit 0, trainer exit 0, node1 exit 0, node2 exit 0" in out.stdout
    new = summary["model_versions"][-1]
    assert new != "1"
    s = settings.replace(topic_prefix=summary["topic_prefix"])
    alerts = [json.loads(m.value()) for m in read_topic(s, s.topic("alerts"))]
    drift = [a for a in alerts if a["type"] == "driftline.drift"]
    assert any("salary" in [f["name"] for f in a["data"]["features"]] for a in drift)
    stable = [a for a in alerts if a["type"] in ("driftline.drift", "driftline.decay")
              and a["data"]["window_end"] <= summary["drift_injected_at"] * 1000]
    assert stable == [], "no drift or decay alert on windows before the change"
    registry = Registry(s)
    [run] = [r for r in registry.runs("loans") if r["status"] == "published" and r["trigger_type"] != "init"]
    assert run["lineage"] and run["dataset_hash"] and run["candidate_version"] == new
    assert {r["topic"] for r in run["lineage"]} >= {s.topic("predictions"), s.topic("labels")}
    assert registry.model("loans", new)["run_id"] == run["run_id"]
    assert registry.deployments()["loans"]["version"] == new


def test_the_loop_survives_a_killed_monitor_and_serving_node(settings, tmp_path):
    loop, summary = run_loop(settings, tmp_path, chaos=True, emit="ack")
    assert summary["ok"], summary
    new = summary["model_versions"][-1]
    assert new != "1" and summary["versions_now"] == [new, new], "both nodes, one restarted, serve the new model"
    s = loop.settings
    ids = [json.loads(m.value())["id"] for m in read_topic(s, s.topic("alerts"))]
    assert len(ids) == len(set(ids)), "no alert id appears twice after the monitor's restart"
    records = loop.app.records
    by_node = collections.defaultdict(list)
    for r in records:
        by_node[r.answer.node].append(r)
    survivor, victim = loop.urls
    assert all(r.answer.status == 200 for r in by_node[survivor]), "the surviving node answered every request"
    answered = {rid for r in records if r.answer.status == 200 for rid in r.answer.request_ids}
    codec = Codec.default()
    emitted = {rid for m in read_topic(s, s.topic("predictions"))
               for rid in codec.decode(m.value(), "driftline.Prediction")["request_ids"]}
    assert answered <= emitted, f"{len(answered - emitted)} answered requests have no prediction event"
    failed_on_victim = sum(1 for r in by_node[victim] if r.answer.status != 200)
    assert len(emitted - answered) <= failed_on_victim, "only requests in flight at the kill may lack an answer"
