"""The closed loop with a monitor and a node killed mid-loop; the demo ends, however it is ended, leaving nothing.

The demo as a user runs it, from an installed wheel under a CPU hog, is
``test_wheel.py``.
"""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from driftline.demo.loop import Loop, Scenario
from driftline.demo.simulator import Traffic
from driftline.processes import group_members
from schemas import Codec
from tests.integration.helpers import read_topic
from tests.processes import new_mark, wait_until_gone

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
        left = group_members(loop.process_groups())
    assert left == [], f"processes of this test still running: {left}"
    summary["exit_codes"] = codes
    return loop, summary


def test_the_loop_survives_a_killed_monitor_and_serving_node(settings, tmp_path):
    loop, summary = run_loop(settings, tmp_path, chaos=True, emit="ack")
    # the killed node's requests fail while it is down (checked below); nothing else may be wrong
    assert summary["reason"] == f"{summary['failed_requests']} request(s) failed", summary
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


class Output:
    """A child's output lines, read as they come (so a test can wait for a line)."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"no {text!r} in {timeout:.0f} s: {''.join(self.lines)[-2000:]}"
            time.sleep(0.2)

    @property
    def text(self) -> str:
        self._thread.join(10)
        return "".join(self.lines)


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM twice", "SIGKILL", "deadline"])
def test_the_demo_always_ends_and_leaves_no_process_behind(settings, tmp_path, how):
    """A first Ctrl-C/SIGTERM stops gracefully with a summary; a second kills; SIGKILL and the deadline too."""
    mark, env = new_mark()
    env.update({"KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "DRIFTLINE_TOPIC_PREFIX": settings.topic_prefix,
                "DRIFTLINE_STATE_DIR": str(tmp_path)})
    summary_file = tmp_path / "demo.json"
    args = [sys.executable, "-m", "driftline.cli.main", "demo", "--window", "6", "--stable-seconds", "60",
            "--json-file", str(summary_file)]
    if how == "deadline":
        args += ["--deadline", "30"]
    started = time.monotonic()
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Output(process)
    try:
        if how != "deadline":
            output.wait_for("[traffic ]", timeout=120)
            time.sleep(2)
            signalled = time.monotonic()
            if how == "SIGINT":
                process.send_signal(signal.SIGINT)
            elif how == "SIGTERM twice":
                process.send_signal(signal.SIGTERM)
                time.sleep(0.5)
                process.send_signal(signal.SIGTERM)
            else:
                process.send_signal(signal.SIGKILL)
        code = process.wait(timeout=150)
        ended = time.monotonic()
    finally:
        if process.poll() is None:
            process.kill()
        left = wait_until_gone(mark)
    assert left == [], f"processes left behind after {how}: {left}"
    if how == "SIGINT":
        assert code == 1 and ended - signalled < 45, output.text[-3000:]
        summary = json.loads(summary_file.read_text())
        assert summary["ok"] is False and "interrupted by SIGINT" in summary["reason"]
        assert "monitor exit 0, trainer exit 0, rollout exit 0, node1 exit 0, node2 exit 0" in output.text
    elif how == "SIGTERM twice":
        assert code == 130 and ended - signalled < 15, output.text[-3000:]
    elif how == "SIGKILL":
        assert code == -signal.SIGKILL
    else:
        assert code == 1 and ended - started < 30 + 60, output.text[-3000:]
        summary = json.loads(summary_file.read_text())
        assert summary["ok"] is False and "deadline" in summary["reason"], summary


def test_a_candidate_worse_live_than_offline_is_rolled_back_by_the_loop_itself(settings, tmp_path):
    """`driftline demo --scenario bad-candidate`: it passes offline validation, the canary shows it worse."""
    _, summary = run_loop(settings, tmp_path, name="bad-candidate")
    assert summary["ok"], summary
    assert summary["rolled_back"] and summary["promoted_s"] is None and summary["failed_requests"] == 0
    assert summary["versions_now"] == ["1", "1"], "every node answers with the champion again"
    evidence = summary["rollout_evidence"]
    assert evidence["challenger"] < evidence["champion"] - 0.1 and evidence["upper"] < -evidence["margin"]
    assert set(summary["exit_codes"].values()) == {0}
