"""Bad events reach the dead-letter topic with their bytes and reason; the consumer carries on."""

from __future__ import annotations

import numpy as np
import pytest

from driftline import Producer
from driftline.consumer import EventReader
from driftline.deadletter import DeadLetter
from driftline.kafka_clients import make_producer
from schemas import Codec, FeatureDef, FeatureFrame, FeatureSpec, encode_rows
from schemas.codec import MAGIC
from tests.integration.helpers import read_topic

pytestmark = pytest.mark.integration

SPEC = FeatureSpec("m", (FeatureDef("age", "float"),))


def validate_against_spec(record):
    frame = FeatureFrame.from_record(record["columns"], len(record["request_ids"]))
    SPEC.validate(frame)


def test_every_kind_of_bad_event_is_dead_lettered_and_good_ones_flow(settings):
    topic = settings.topic("predictions")
    codec = Codec.default()
    good = Producer(model="m", settings=settings)
    good.prediction({"age": 1.0}, 0.1, request_id="good-1")
    good.flush()

    raw = make_producer(settings)
    bad_shape = {"model": "m", "model_version": "", "event_time": 0, "request_ids": ["x", "y"],
                 "columns": encode_rows([{"age": 1.0}]), "prediction": np.zeros(2).tobytes()}
    nan_row = {"model": "m", "model_version": "", "event_time": 0, "request_ids": ["n"],
               "columns": encode_rows([{"age": float("nan")}]), "prediction": np.zeros(1).tobytes()}
    truncated = codec.encode("driftline.Prediction", nan_row)[:20]
    other_kind = codec.encode("driftline.Deployment", {"model": "m", "version": "1", "created_at": 0,
                                                       "action": "deploy"})
    bad = {
        b"garbage": b"\x00\x01garbage",
        b"unknown-fp": MAGIC + b"\xff" * 8 + b"\x00",
        b"truncated": truncated,
        b"other-kind": other_kind,
        b"bad-shape": codec.encode("driftline.Prediction", bad_shape),
        b"nan": codec.encode("driftline.Prediction", nan_row),
    }
    for key, value in bad.items():
        raw.produce(topic, key=key, value=value, headers=[("trace", b"abc")])
    raw.flush()
    good.prediction({"age": 2.0}, 0.2, request_id="good-2")
    good.close()

    def validate(record):
        validate_against_spec(record)

    reader = EventReader(settings, "dlq-test", [topic], expect={topic: "driftline.Prediction"},
                         validate=validate, stage="test")
    seen = []
    for _ in range(40):
        seen.extend(reader.poll(100, 0.5))
        reader.commit()
        if len(seen) >= 2 and reader.consumed >= 8:
            break
    reader.close()
    assert sorted(e.record["request_ids"][0] for e in seen) == ["good-1", "good-2"]

    letters = {m.key(): (m, DeadLetter.from_message(m.value(), m.key(), m.headers()))
               for m in read_topic(settings, settings.topic("deadletter"), len(bad))}
    assert set(letters) == set(bad)
    for key, (message, letter) in letters.items():
        assert letter.value == bad[key], "original bytes are kept intact"
        assert letter.source_topic == topic and letter.stage == "test"
        assert letter.source_offset >= 0 and letter.source_partition >= 0
        assert ("trace", b"abc") in message.headers(), "original headers are kept"
    reasons = {key: letters[key][1].reason for key in letters}
    assert "expected header c3 01" in reasons[b"garbage"]
    assert "unknown writer schema fingerprint" in reasons[b"unknown-fp"]
    assert "invalid driftline.Prediction body" in reasons[b"truncated"]
    assert "expected a driftline.Prediction event, got driftline.Deployment" in reasons[b"other-kind"]
    assert "numeric block has 8 bytes, 16 expected" in reasons[b"bad-shape"]
    assert "NaN or infinite" in reasons[b"nan"]


def test_offsets_are_committed_only_after_dead_letters_are_durable(settings):
    """A second reader in the same group resumes after what the first committed: nothing re-read."""
    topic = settings.topic("labels")
    raw = make_producer(settings)
    for i in range(5):
        raw.produce(topic, key=str(i).encode(), value=b"junk")
    raw.flush()
    first = EventReader(settings, "g", [topic], stage="t")
    while first.consumed < 5:
        first.poll(10, 0.5)
    first.commit()
    first.close()
    assert len(read_topic(settings, settings.topic("deadletter"), 5)) == 5
    second = EventReader(settings, "g", [topic], stage="t")
    assert second.poll(10, 3.0) == [] and second.consumed == 0
    second.close()
