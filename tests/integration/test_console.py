"""``driftline ui`` on a real broker, loaded in headless Chromium: what the topics hold is on the page."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from driftline.alerts import Alert, alert_message
from driftline.broker import free_port
from driftline.kafka_clients import make_producer
from driftline.processes import spawn
from driftline.producer import NODE_HEADER, Producer
from driftline.registry import Registry
from schemas import Codec, Table
from schemas.columns import encode_columns
from streams.drift.summary import summarize
from tests.browser import load, screenshot
from tests.integration.helpers import service_env
from tests.integration.test_monitor import BASE, TYPES, WINDOW_MS, columns, publish_profile
from trainers.job import Trigger, run_record

TOKEN = "s3cret-console"


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def publish_alert(settings, producer, window_start: int, message: str) -> Alert:
    alert = Alert.create("driftline.drift", "m", severity="warning", identity=(window_start, message),
                         data={"window_start": window_start, "message": message, "features": []})
    producer.produce(**alert_message(alert, settings))
    assert producer.flush(30) == 0
    return alert


def test_console_shows_models_windows_alerts_and_runs_in_a_real_browser(settings) -> None:
    profile = publish_profile(settings)
    rng = np.random.default_rng(4)
    codec = Codec.default()
    producer = make_producer(settings)
    for i in range(3):  # three merged windows, the last one shifted
        table = Table({k: (np.array(v, dtype=object) if k == "plan" else v)
                       for k, v in columns(rng, 600, shift=1.0 if i == 2 else 0.0).items()}, TYPES)
        summary = summarize(table.to_frame(), profile, BASE + i * WINDOW_MS, BASE + (i + 1) * WINDOW_MS)
        producer.produce(settings.topic("stats"), key=f"m:{summary.window_start}".encode(),
                         value=codec.encode("driftline.WindowSummary", summary.to_avro("merged")))
    producer.produce(settings.topic("quality"), key=b"m:7:0:estimated", value=codec.encode(
        "driftline.QualitySummary", {"model": "m", "model_version": "7", "window_start": BASE, "window_end": BASE + 1,
                                     "task": "classification", "rows": 400, "metrics": {"accuracy": 0.9},
                                     "estimated": True, "lower": {"accuracy": 0.88}, "upper": {"accuracy": 0.92}}))
    first = publish_alert(settings, producer, BASE + 2 * WINDOW_MS, "x drifted <b>loudly</b>")
    run = run_record("m", Trigger(first.id, "drift", "test"), "rejected", "failed accuracy floor")
    run["checks"] = [{"name": "accuracy_floor", "passed": False, "value": 0.5, "threshold": 0.6, "detail": "0.5 < 0.6"}]
    Registry(settings).publish_run(run)
    with Producer(model="m", settings=settings, model_version="7") as application:  # no node: the SDK
        application.predictions(columns(rng, 5), np.full(5, 0.7), request_ids=[f"q{i}" for i in range(5)])
    answered = codec.encode("driftline.Prediction", {  # what a serving node emits, its id in a header
        "model": "m", "model_version": "8", "event_time": int(time.time() * 1000), "request_ids": ["n1", "n2"],
        "segment": None, "columns": encode_columns({"x": np.r_[1.0, 2.0]}), "prediction": np.r_[0.1, 0.9].tobytes(),
        "predicted_class": None})
    producer.produce(settings.topic("predictions"), key=b"n1", value=answered, headers=[(NODE_HEADER, b"node1")])
    assert producer.flush(30) == 0
    port = free_port()
    console = spawn([sys.executable, "-m", "driftline.cli.main", "ui", "--port", str(port), "--token", TOKEN],
                    env=service_env(settings), stdout=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status, body = get(f"{base}/healthz")
                if status == 200 and json.loads(body)["caught_up"]:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("the console did not come up")
        assert get(f"{base}/api/state")[0] == 401, "the token is required"
        status, body = get(f"{base}/api/state?token={TOKEN}")
        state = json.loads(body)
        assert status == 200 and [m["model"] for m in state["models"]] == ["m"]
        assert len(state["windows"]["m"]) == 3 and state["windows"]["m"][-1]["features"]["x"]["drift"]
        assert state["models"][0]["answering"] == {"7@SDK": 5, "8@node1": 2}, "versions answered, per node"

        page = load(f"{base}/?token={TOKEN}")
        assert page.console == [], f"console messages: {page.console}"
        assert 'data-loaded="true"' in page.dom
        assert 'data-model="m"' in page.dom
        for feature in ("x", "y", "plan", "(multivariate)"):
            assert f'data-feature="{feature}"' in page.dom, feature
        assert f'data-alert-id="{first.id}"' in page.dom
        assert "x drifted &lt;b&gt;loudly&lt;/b&gt;" in page.dom, "alert text is text, not markup"
        assert f'data-run="{run["run_id"]}"' in page.dom and "accuracy_floor" in page.dom
        assert "v7 estimated accuracy" in page.dom
        screenshot(f"{base}/?token={TOKEN}", "console", size="1280,1100")

        # A new alert reaches the page's feed and the event stream within seconds.
        seen = max(a["sequence"] for a in state["alerts"])
        second = publish_alert(settings, producer, BASE + 3 * WINDOW_MS, "a second alert")
        deadline = time.monotonic() + 20
        fresh: list = []
        while time.monotonic() < deadline and not fresh:
            fresh = json.loads(get(f"{base}/api/alerts?after={seen}&token={TOKEN}")[1])
            time.sleep(0.3)
        assert [a["id"] for a in fresh] == [second.id]
        with urllib.request.urlopen(f"{base}/api/events?after={seen}&token={TOKEN}", timeout=10) as stream:
            lines = [stream.readline().decode() for _ in range(5)]
        assert "event: alert\n" in lines and any(second.id in line for line in lines)
    finally:
        console.send_signal(signal.SIGTERM)
        code = console.wait(timeout=30)
    assert code == 0, "SIGTERM stops the console cleanly"


def test_a_console_open_to_the_network_needs_a_token(settings) -> None:
    done = subprocess.run([sys.executable, "-m", "driftline.cli.main", "ui", "--host", "0.0.0.0"],
                          env={**service_env(settings), "DRIFTLINE_UI_TOKEN": ""}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "give --token" in done.stderr and "Traceback" not in done.stderr
