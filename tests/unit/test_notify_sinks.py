"""The notifier's pure parts: its file, its filters, each sink's wire format, backoff and rate (no Kafka)."""

from __future__ import annotations

import asyncio
import http.server
import json
import sys
import threading
import time

import aiohttp
import pytest

from driftline.alerts import Alert
from driftline.broker import free_port
from driftline.errors import ConfigError
from driftline.notify.config import parse_notify_config
from driftline.notify.sinks import DeliveryFailed, RateLimit, backoff, deliver


def test_notify_file_errors_are_one_sentence_each() -> None:
    for data, message in [({}, "non-empty 'sinks'"),
                          ({"sinks": [{"name": "a", "type": "email"}]}, "type out of"),
                          ({"sinks": [{"name": "a", "type": "webhook"}]}, "http(s) url"),
                          ({"sinks": [{"name": "a", "type": "command", "command": "page"}]}, "command: [program"),
                          ({"sinks": [{"name": "a", "type": "slack", "url": "http://x", "rate": "fast"}]}, "30/min"),
                          ({"sinks": [{"name": "a", "type": "slack", "url": "http://x", "min_severity": "loud"}]},
                           "min_severity"),
                          ({"sinks": [{"name": "a", "type": "slack", "url": "http://x"}] * 2}, "unique")]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            parse_notify_config(data)


def test_filters_take_models_types_and_a_minimum_severity() -> None:
    (sink,) = parse_notify_config({"sinks": [{"name": "a", "type": "webhook", "url": "http://x", "models": ["m"],
                                              "types": ["driftline.decay"], "min_severity": "warning",
                                              "rate": "30/min"}]})
    assert sink.rate_per_s == pytest.approx(0.5)
    assert sink.wants("m", "driftline.decay", "critical")
    assert not sink.wants("m", "driftline.decay", "info")
    assert not sink.wants("other", "driftline.decay", "critical")
    assert not sink.wants("m", "driftline.drift", "critical")


def test_backoff_doubles_to_its_cap_and_the_rate_limit_holds_its_rate() -> None:
    assert [round(backoff(a) / min(30, 0.5 * 2 ** (a - 1)), 1) <= 1.2 for a in range(1, 10)] == [True] * 9
    assert max(backoff(a) for a in range(1, 20)) <= 36

    async def burst() -> float:
        limit = RateLimit(rate=20.0, burst=2)
        started = time.monotonic()
        for _ in range(12):
            await limit.acquire()
        return time.monotonic() - started

    assert 0.4 <= asyncio.run(burst()) <= 1.5, "12 tokens at 20/s with a burst of 2 take about 0.5 s"


class Recorder(http.server.BaseHTTPRequestHandler):
    got: list[tuple[dict, bytes]] = []

    def do_POST(self) -> None:
        Recorder.got.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def test_each_sink_type_speaks_its_format(tmp_path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    alert = Alert.create("driftline.decay", "churn", severity="critical", identity=("w",),
                         data={"message": "accuracy fell", "features": []})
    event, raw = alert.to_cloudevent(), alert.to_json()
    out = tmp_path / "stdin.json"
    sinks = parse_notify_config({"sinks": [
        {"name": "s", "type": "webhook", "url": url},
        {"name": "b", "type": "webhook", "url": url, "mode": "binary", "headers": {"X-Team": "risk"}},
        {"name": "k", "type": "slack", "url": url},
        {"name": "c", "type": "command", "command": [sys.executable, "-c",
                                                    f"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read())"]},
        {"name": "f", "type": "command", "command": [sys.executable, "-c", "raise SystemExit(3)"]},
        {"name": "d", "type": "webhook", "url": f"http://127.0.0.1:{free_port()}/down", "timeout": 2}]})

    async def run_all() -> list[str]:
        outcomes = []
        async with aiohttp.ClientSession() as session:
            for sink in sinks:
                try:
                    await deliver(sink, event, raw, session)
                    outcomes.append("ok")
                except DeliveryFailed as exc:
                    outcomes.append(str(exc))
        return outcomes

    outcomes = asyncio.run(run_all())
    server.shutdown()
    assert outcomes[:4] == ["ok"] * 4
    assert "exited 3" in outcomes[4] and "ClientConnectorError" in outcomes[5]
    structured, binary, slack = Recorder.got[-3:]
    assert structured[0]["Content-Type"] == "application/cloudevents+json" and json.loads(structured[1]) == event
    assert binary[0]["ce-id"] == alert.id and binary[0]["ce-type"] == "driftline.decay"
    assert binary[0]["X-Team"] == "risk" and json.loads(binary[1])["message"] == "accuracy fell"
    assert json.loads(slack[1]) == {"text": "*CRITICAL* `driftline.decay` churn: accuracy fell"}
    assert json.loads(out.read_bytes())["id"] == alert.id, "the command got the CloudEvent on stdin"
