"""SDK produce and consume+decode rates beside raw confluent-kafka, on a real broker.

Two shapes of traffic: single-row events with 20 features (16 numbers, 4
categories) and 100-row batch events. For each: the SDK's produce rate
(``Producer.prediction`` / ``Producer.predictions``, encoding included) beside
a raw confluent-kafka producer sending the same bytes with the same
durability settings; consume+decode beside a raw consume of the same
messages; and decode alone on one core (a polled batch as a worker decodes it, beside
fastavro and a frame per event: what the codec did before its compiled
reader). Run: ``python bench/produce_consume.py [--quick]``.
"""

from __future__ import annotations

import io
import random
import time

import numpy as np
from _common import bench_consumer, bench_settings, parser, produce_all, report, timed
from confluent_kafka import TopicPartition
from fastavro import schemaless_reader

from driftline import Producer
from driftline.kafka_clients import make_producer
from driftline.runtime import tune_gc
from schemas import Codec, FeatureFrame
from schemas.codec import HEADER_LEN

NUMERIC = [f"n{i}" for i in range(16)]
CATEGORICAL = [f"c{i}" for i in range(4)]
PLANS = ["free", "pro", "team", "enterprise"]


def make_rows(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {**{n: rng.gauss(0, 1) for n in NUMERIC}, **{c: rng.choice(PLANS) for c in CATEGORICAL}}
        for _ in range(count)
    ]


def consume_all(settings, topic: str, expected: int, decode=None) -> tuple[float, int]:
    """Seconds from the first message to the last, and rows (or messages) read.

    The clock starts at the first message so the figure is the steady rate,
    not the consumer's start-up (metadata, first fetch).
    """
    consumer = bench_consumer(settings, **{"fetch.min.bytes": 1, "queued.min.messages": 200000})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    seen = rows = 0
    started = None
    while seen < expected:
        messages = consumer.consume(5000, 1.0)
        if started is None and messages:
            started = time.perf_counter()
        for message in messages:
            if message.error():
                continue
            seen += 1
            if decode is not None:
                rows += decode(message.value())
    seconds = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return seconds, rows or seen


def main() -> None:
    args = parser(__doc__).parse_args()
    tune_gc()  # as every driftline service does once started; the baselines run with it too
    events = 40_000 if args.quick else 200_000
    batches = 3_000 if args.quick else 10_000
    settings = bench_settings()
    codec = Codec.default()
    figures: dict[str, float | int] = {"events": events, "batch_events": batches, "batch_rows": 100}

    # ---- single-row events
    rows = make_rows(events)
    sdk_topic = settings.topic("predictions")

    def sdk_produce() -> None:
        with Producer(model="bench", settings=settings) as producer:
            for i, row in enumerate(rows):
                producer.prediction(row, 0.5, request_id=f"r{i}")

    payloads = [codec.encode("driftline.Prediction", {
        "model": "bench", "model_version": "", "event_time": 0, "request_ids": [f"r{i}"],
        "columns": _columns(row), "prediction": np.float64(0.5).tobytes()})
        for i, row in enumerate(rows)]
    raw_topic = settings.topic("features")

    def raw_produce(topic: str = raw_topic) -> None:
        produce_all(make_producer(settings), topic, payloads, (f"r{i}".encode() for i in range(events)))

    # The broker's own produce path warmed first (its JIT, its log segments): measured cold, whichever of the
    # two went first paid for it (the SDK's ratio was 0.35-0.47 in a first run after a broker start, 1.0 after).
    raw_produce(settings.topic("alerts"))
    seconds, _ = timed(sdk_produce)
    figures["sdk_produce_events_per_s"] = events / seconds
    seconds, _ = timed(raw_produce)
    figures["raw_produce_events_per_s"] = events / seconds
    figures["sdk_produce_ratio"] = figures["sdk_produce_events_per_s"] / figures["raw_produce_events_per_s"]

    seconds, _ = consume_all(settings, sdk_topic, events)
    figures["raw_consume_events_per_s"] = events / seconds

    def decode_one(value: bytes) -> int:
        record = codec.decode(value, "driftline.Prediction")
        rows_in = len(record["request_ids"])
        FeatureFrame.from_record(record["columns"], rows_in)
        return rows_in

    schema = codec.schema("driftline.Prediction")

    def fastavro_one(value: bytes) -> int:
        """The decode this codec did before its compiled reader: fastavro, then a frame per event."""
        record = schemaless_reader(io.BytesIO(value[HEADER_LEN:]), schema, None)
        rows_in = len(record["request_ids"])
        FeatureFrame.from_record(record["columns"], rows_in)
        return rows_in

    def decode_batch(values: list[bytes]) -> int:
        """As a worker decodes a polled batch: the events together (an odd one alone), then one frame."""
        records = [d[1] if d else codec.decode(v, "driftline.Prediction")
                   for d, v in zip(codec.decode_batch(values), values, strict=True)]
        frame = FeatureFrame.from_records([(r["columns"], len(r["request_ids"])) for r in records])
        return frame.rows

    seconds, _ = consume_all(settings, sdk_topic, events, decode_one)
    figures["consume_decode_events_per_s"] = events / seconds
    figures["consume_decode_ratio"] = (
        figures["consume_decode_events_per_s"] / figures["raw_consume_events_per_s"])

    seconds, _ = timed(lambda: [decode_batch(payloads[i:i + 5000]) for i in range(0, events, 5000)])
    figures["decode_events_per_s"] = events / seconds
    seconds, _ = timed(lambda: [decode_one(p) for p in payloads])
    figures["decode_one_by_one_events_per_s"] = events / seconds
    seconds, _ = timed(lambda: [fastavro_one(p) for p in payloads])
    figures["fastavro_decode_events_per_s"] = events / seconds
    figures["decode_ratio_to_fastavro"] = figures["decode_events_per_s"] / figures["fastavro_decode_events_per_s"]

    # ---- 100-row batch events
    rng = np.random.default_rng(0)
    batch_columns = [
        {**{n: rng.normal(size=100) for n in NUMERIC},
         **{c: [PLANS[k] for k in rng.integers(0, 4, 100)] for c in CATEGORICAL}}
        for _ in range(min(batches, 50))
    ]
    batch_settings = bench_settings()  # batch events get topics of their own
    batch_topic = batch_settings.topic("predictions")

    def sdk_batches() -> None:
        with Producer(model="bench", settings=batch_settings) as producer:
            for i in range(batches):
                producer.predictions(batch_columns[i % len(batch_columns)], rng.random(100))

    seconds, _ = timed(sdk_batches)
    figures["sdk_batch_produce_rows_per_s"] = batches * 100 / seconds
    batch_payloads = [m.value() for m in _first_messages(settings, batch_topic, min(batches, 50))]
    raw_batch_topic = settings.topic("stats")

    def raw_batches() -> None:
        produce_all(make_producer(settings), raw_batch_topic,
                    (batch_payloads[i % len(batch_payloads)] for i in range(batches)))

    seconds, _ = timed(raw_batches)
    figures["raw_batch_produce_rows_per_s"] = batches * 100 / seconds
    figures["sdk_batch_produce_ratio"] = (
        figures["sdk_batch_produce_rows_per_s"] / figures["raw_batch_produce_rows_per_s"])
    seconds, decoded_rows = consume_all(settings, batch_topic, batches, decode_one)
    figures["batch_consume_decode_rows_per_s"] = decoded_rows / seconds
    one_batch = [m.value() for m in _first_messages(settings, batch_topic, 200)]
    seconds, total = timed(lambda: decode_batch(one_batch))
    figures["batch_decode_rows_per_s"] = total / seconds
    seconds, total = timed(lambda: sum(fastavro_one(v) for v in one_batch))
    figures["fastavro_batch_decode_rows_per_s"] = total / seconds
    report(figures)


def _columns(row: dict) -> dict:
    from schemas import encode_rows

    return encode_rows([row])


def _first_messages(settings, topic: str, count: int) -> list:
    consumer = bench_consumer(settings)
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    out = []
    while len(out) < count:
        out.extend(m for m in consumer.consume(500, 1.0) if not m.error())
    consumer.close()
    return out[:count]


if __name__ == "__main__":
    main()
