"""The application SDK against the real broker."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from driftline import DeliveryError, Producer
from schemas import Codec, FeatureDef, FeatureFrame, FeatureSpec, SpecViolation
from schemas.columns import read_float_buffer
from tests.integration.helpers import read_topic, topic_count

pytestmark = pytest.mark.integration


def test_prediction_features_and_label_arrive_and_decode(settings):
    with Producer(model="churn", settings=settings, model_version="7") as producer:
        rid = producer.prediction(features={"age": 42, "plan": "pro"}, prediction=0.83, request_id="r1")
        producer.features(features={"age": 30, "plan": "free"}, request_id="f1")
        producer.label(request_id="r1", label=1)
    assert rid == "r1"
    codec = Codec.default()
    [pred] = read_topic(settings, settings.topic("predictions"), 1)
    record = codec.decode(pred.value(), "driftline.Prediction")
    assert pred.key() == b"r1"
    assert (record["model"], record["model_version"], record["request_ids"]) == ("churn", "7", ["r1"])
    frame = FeatureFrame.from_record(record["columns"], 1)
    assert frame.to_rows() == [{"age": 42.0, "plan": "pro"}]
    assert read_float_buffer(record["prediction"], 1).tolist() == [0.83]
    [feat] = read_topic(settings, settings.topic("features"), 1)
    assert codec.decode(feat.value(), "driftline.Features")["request_ids"] == ["f1"]
    [label] = read_topic(settings, settings.topic("labels"), 1)
    assert codec.decode(label.value(), "driftline.Label")["labels"] == [1]


def test_batch_of_numpy_columns_is_one_event(settings):
    rng = np.random.default_rng(1)
    columns = {"x": rng.normal(size=500), "y": rng.normal(size=500), "plan": ["a", "b"] * 250}
    scores = rng.random(500)
    with Producer(model="m", settings=settings) as producer:
        ids = producer.predictions(columns, scores)
    [message] = read_topic(settings, settings.topic("predictions"), 1)
    record = Codec.default().decode(message.value())
    frame = FeatureFrame.from_record(record["columns"], 500)
    np.testing.assert_array_equal(frame.numeric_column("x"), columns["x"])
    np.testing.assert_array_equal(read_float_buffer(record["prediction"], 500), scores)
    assert record["request_ids"] == ids and len(set(ids)) == 500


def test_class_label_predictions_keep_the_class_and_score(settings):
    with Producer(model="m", settings=settings) as producer:
        producer.prediction({"a": 1.0}, "approve", request_id="q", score=0.9)
    [message] = read_topic(settings, settings.topic("predictions"), 1)
    record = Codec.default().decode(message.value())
    assert record["predicted_class"] == ["approve"]
    assert read_float_buffer(record["prediction"], 1).tolist() == [0.9]


def test_client_side_validation_refuses_before_sending(settings):
    spec = FeatureSpec("m", (FeatureDef("age", "int"), FeatureDef("plan", "string")))
    with Producer(model="m", settings=settings, spec=spec, validate=True) as producer:
        with pytest.raises(SpecViolation, match="'age' has NaN"):
            producer.prediction({"age": float("nan"), "plan": "a"}, 0.5)
        producer.prediction({"age": 3, "plan": "a"}, 0.5)
    assert topic_count(settings, settings.topic("predictions")) == 1


def test_delivery_failure_is_raised_not_swallowed(settings):
    missing = settings.replace(topic_prefix="does-not-exist-" + settings.topic_prefix)
    producer = Producer(model="m", settings=missing, **{"delivery.timeout.ms": 2000,
                                                        "topic.metadata.propagation.max.ms": 1000})
    producer.prediction({"a": 1.0}, 0.1)
    with pytest.raises(DeliveryError, match="not delivered"):
        producer.flush(timeout=20)


def test_every_event_survives_a_broker_restart_without_duplicates(kafka, settings):
    """Produce continuously while the broker goes down and comes back: count in = count on topic."""
    if kafka.broker is None:
        pytest.skip("needs the suite's own broker to restart (KAFKA_BOOTSTRAP_SERVERS is set)")
    sent: list[str] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with Producer(model="m", settings=settings) as producer:
                i = 0
                while not stop.is_set():
                    sent.append(producer.prediction({"i": float(i)}, 0.0, request_id=f"req-{i}"))
                    i += 1
                    time.sleep(0.002)
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)

    thread = threading.Thread(target=produce)
    thread.start()
    time.sleep(1.0)
    kafka.broker.down()
    during_outage = len(sent)
    time.sleep(2.0)
    kafka.broker.up(timeout=120)
    time.sleep(1.0)
    stop.set()
    thread.join(timeout=150)
    assert not errors, errors
    assert len(sent) > during_outage > 0, "production went on while the broker was down"
    messages = read_topic(settings, settings.topic("predictions"), len(sent), timeout=60)
    keys = [m.key().decode() for m in messages]
    assert len(keys) == len(sent)
    assert sorted(keys) == sorted(sent), "every produced event is on the topic exactly once"
