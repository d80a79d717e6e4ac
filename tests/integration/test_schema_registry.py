"""Confluent wire format through a Schema Registry, end to end on the real broker.

No registry server ships with this repo, so a minimal one (the two REST calls
the serializer path uses: register a subject version, fetch a schema by id)
runs in-process. Kafka itself is the real broker.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from driftline import Producer
from driftline.consumer import EventReader
from schemas.codec import MAGIC

pytestmark = pytest.mark.integration


class MiniRegistry(BaseHTTPRequestHandler):
    schemas: list[str] = []
    calls: list[str] = []
    unavailable_gets = 0  # the next this many schema fetches answer 503 (an outage)

    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        self.calls.append(f"POST {self.path}")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if "/versions" not in self.path:
            return self._reply(404, {"error_code": 404, "message": "not found"})
        if body["schema"] not in self.schemas:
            self.schemas.append(body["schema"])
        self._reply(200, {"id": self.schemas.index(body["schema"]) + 1})

    def do_GET(self):
        self.calls.append(f"GET {self.path}")
        if MiniRegistry.unavailable_gets:
            MiniRegistry.unavailable_gets -= 1
            return self._reply(503, {"error_code": 50003, "message": "registry is restarting"})
        if self.path.startswith("/schemas/ids/"):
            schema_id = int(self.path.split("/")[3].split("?")[0])
            if 0 < schema_id <= len(self.schemas):
                return self._reply(200, {"schema": self.schemas[schema_id - 1], "schemaType": "AVRO"})
        self._reply(404, {"error_code": 40403, "message": "Schema not found"})


@pytest.fixture
def registry_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), MiniRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_events_use_confluent_wire_format_when_a_registry_is_configured(settings, registry_url):
    from driftline import contract

    contract._registry_codec.cache_clear()
    with_registry = settings.replace(schema_registry_url=registry_url)
    with Producer(model="m", settings=with_registry) as producer:
        producer.prediction({"a": 1.0, "b": "x"}, 0.5, request_id="r1")
    with Producer(model="m", settings=settings) as producer:  # an older single-object writer
        producer.prediction({"a": 2.0}, 0.6, request_id="r2")
    topic = with_registry.topic("predictions")
    reader = EventReader(with_registry, "g", [topic], expect={topic: "driftline.Prediction"})
    events = []
    for _ in range(20):
        events += reader.poll(10, 0.5)
        if len(events) == 2:
            break
    reader.close()
    assert sorted(e.record["request_ids"][0] for e in events) == ["r1", "r2"]
    assert "POST /subjects/driftline.Prediction/versions" in [c.split("?")[0] for c in MiniRegistry.calls]
    from tests.integration.helpers import read_topic

    first_bytes = sorted(m.value()[:1] for m in read_topic(settings, topic, 2))
    assert first_bytes == [b"\x00", MAGIC[:1]]


def _write_with_registry(settings, registry_url, request_id: str):
    from driftline import contract

    contract._registry_codec.cache_clear()
    with_registry = settings.replace(schema_registry_url=registry_url)
    with Producer(model="m", settings=with_registry) as producer:
        producer.prediction({"a": 1.0}, 0.5, request_id=request_id)
    contract._registry_codec.cache_clear()  # the reader starts with no schema cached: it must ask
    return with_registry


def test_a_registry_outage_pauses_the_reader_and_condemns_nothing(settings, registry_url):
    with_registry = _write_with_registry(settings, registry_url, "during-outage")
    MiniRegistry.unavailable_gets = 3  # ~1.4 s of backoff before the registry answers again
    topic = with_registry.topic("predictions")
    reader = EventReader(with_registry, "g-outage", [topic], expect={topic: "driftline.Prediction"})
    try:
        events = []
        for _ in range(20):
            events += reader.poll(10, 0.5)
            if events:
                break
        assert [e.record["request_ids"][0] for e in events] == ["during-outage"]
        assert reader.deadletters.count == 0, "a good event is never dead-lettered for an outage"
        assert MiniRegistry.unavailable_gets == 0
    finally:
        reader.close()


def test_a_registry_that_stays_down_stops_the_reader_instead_of_dead_lettering(settings, registry_url):
    from schemas.errors import RegistryUnavailable

    with_registry = _write_with_registry(settings, registry_url, "never-decoded")
    with_registry = with_registry.replace(schema_registry_retry_seconds=1.0)
    MiniRegistry.unavailable_gets = 1000
    topic = with_registry.topic("predictions")
    reader = EventReader(with_registry, "g-down", [topic], expect={topic: "driftline.Prediction"})
    try:
        with pytest.raises(RegistryUnavailable, match="did not answer"):
            for _ in range(20):
                reader.poll(10, 0.5)
        assert reader.deadletters.count == 0
    finally:
        MiniRegistry.unavailable_gets = 0
        reader.close()
