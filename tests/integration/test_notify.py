"""``driftline notify`` (faust-streaming) on a real broker: once per alert id across a SIGKILL and a graceful
restart, a sink down 30 s, a dead sink."""

from __future__ import annotations

import collections
import http.server
import json
import signal
import subprocess
import sys
import threading
import time

from driftline.alerts import Alert, alert_message
from driftline.broker import free_port
from driftline.deadletter import REASON
from driftline.kafka_clients import make_producer
from driftline.processes import spawn
from tests.integration.helpers import read_topic, service_env


class Sink:
    """A local webhook that records every delivery's CloudEvent id, and can be taken down (503)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.down = False
        self.refused = 0
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if sink.down:
                    sink.refused += 1
                    self.send_response(503)
                else:
                    sink.ids.append(json.loads(body)["id"])
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, ids: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not ids <= set(self.ids):
            time.sleep(0.2)


def start_notifier(settings, config) -> subprocess.Popen:
    log = (config.parent / "notify.log").open("ab")
    return spawn([sys.executable, "-m", "driftline.cli.main", "notify", str(config)],
                 env={**service_env(settings), "TERM": "dumb"}, stdout=log)


def send_alerts(settings, producer, model: str, count: int, tag: str, pause: float = 0.0) -> list[str]:
    ids = []
    for i in range(count):
        alert = Alert.create("driftline.drift", model, severity="warning", identity=(tag, i),
                             data={"message": f"{tag} {i}", "features": []})
        producer.produce(**alert_message(alert, settings))
        producer.poll(0)
        ids.append(alert.id)
        time.sleep(pause)
    assert producer.flush(30) == 0
    return ids


def test_each_alert_once_across_restarts_and_a_sink_down_for_30_s_gets_everything_after(settings, tmp_path) -> None:
    sink = Sink()
    config = tmp_path / "notify.yaml"
    config.write_text(json.dumps({"sinks": [
        {"name": "hook", "type": "webhook", "url": sink.url, "rate": "100/s", "attempts": 10, "models": ["m"]},
        {"name": "broken", "type": "webhook", "url": f"http://127.0.0.1:{free_port()}/nothing", "attempts": 2,
         "models": ["other"]}]}))
    producer = make_producer(settings)
    notifier = start_notifier(settings, config)
    try:
        first = send_alerts(settings, producer, "m", 10, "before")
        sink.wait_for(set(first), 60)
        assert set(first) <= set(sink.ids), "the notifier delivers (it started and joined its group)"
        assert all(collections.Counter(sink.ids)[i] == 1 for i in first)

        # 2. SIGKILL while alerts are being delivered, alerts while it is down, a restart: nothing lost, and
        # only the one alert whose delivery was in flight (answered, not yet in the table) can come twice.
        second: list[str] = []
        stream = threading.Thread(target=lambda: second.extend(send_alerts(settings, producer, "m", 30, "during",
                                                                           pause=0.05)))
        stream.start()
        deadline = time.monotonic() + 30
        while len(sink.ids) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        notifier.send_signal(signal.SIGKILL)
        notifier.wait()
        stream.join()
        while_down = send_alerts(settings, producer, "m", 5, "while-down")
        notifier = start_notifier(settings, config)
        sink.wait_for(set(second + while_down), 90)
        counts = collections.Counter(sink.ids)
        assert set(first + second + while_down) <= set(counts), "nothing lost across the SIGKILL"
        twice = [i for i, n in counts.items() if n > 1]
        assert len(twice) <= 1 and max(counts.values()) <= 2, f"delivered twice: {twice}"

        # 3. A graceful restart repeats nothing.
        notifier.send_signal(signal.SIGTERM)
        assert notifier.wait(timeout=60) == 0
        before_restart = collections.Counter(sink.ids)
        after_stop = send_alerts(settings, producer, "m", 3, "after-stop")
        notifier = start_notifier(settings, config)
        sink.wait_for(set(after_stop), 60)
        counts = collections.Counter(sink.ids)
        assert all(counts[i] == 1 for i in after_stop), "each alert sent while stopped arrives once"
        assert counts - collections.Counter(after_stop) == before_restart, "nothing is delivered again"

        # 4. The sink is down for 30 s: every alert of that time arrives once after it comes back.
        sink.down = True
        third = send_alerts(settings, producer, "m", 8, "outage")
        dead_letter = send_alerts(settings, producer, "other", 1, "to-a-broken-sink")
        time.sleep(30)
        assert sink.refused > 0 and not set(third) & set(sink.ids), "the sink was tried while down"
        sink.down = False
        sink.wait_for(set(third), 60)
        counts = collections.Counter(sink.ids)
        assert set(third) <= set(counts) and all(counts[i] == 1 for i in third), "each once after the outage"
        dead = [m for m in read_topic(settings, settings.topic("deadletter"), expected=1, timeout=30)]
        assert [json.loads(m.value())["id"] for m in dead] == dead_letter
        reason = dict(m for m in dead[0].headers() or [])[REASON].decode()
        assert "sink broken failed 2 times" in reason
    finally:
        notifier.send_signal(signal.SIGTERM)
        code = notifier.wait(timeout=60)
        sink.server.shutdown()
    assert code == 0, "SIGTERM stops the notifier cleanly"
