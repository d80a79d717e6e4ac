"""Trainer figures: alert to published model, and dataset assembly from Kafka beside a raw baseline.

* ``alert_to_published_s``: a drift alert lands on the alerts topic; wall time
  until the Deployment of the retrained model is on the deployments topic
  (trigger debounce 0), for a model trained on ``rows`` labelled rows
  (50,000 in the full run; 20 features: Agrawal's 9 plus 11 noise columns).
* ``rows_per_s``: labelled rows assembled from Kafka per second (offset
  ranges, decode, join of predictions to labels, ordering), beside two
  baselines over the same offset ranges: ``baseline_rows_per_s``,
  confluent-kafka consuming the bytes with no decoding (nothing any reader
  that looks at the rows can reach), and ``decode_baseline_rows_per_s``,
  confluent-kafka consuming plus fastavro decoding each message (the floor
  of any Python reader of these events; the monitor's baseline too).
  Each figure is the median of five reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from _common import bench_settings, parser, report

from driftline import Producer
from driftline.alerts import Alert
from driftline.contract import codec_for
from driftline.kafka_clients import make_producer
from driftline.offsets import read_ranges
from driftline.registry import Registry
from driftline.synthetic import agrawal
from schemas import Table
from trainers.dataset import from_table, read_dataset, training_ranges
from trainers.job import TrainingJob, Trigger
from trainers.modelfile import parse_model_config
from trainers.service import Trainer


def columns_for(rows: int, function: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    columns, labels = agrawal(rows, function=function, seed=seed)
    rng = np.random.default_rng(seed)
    columns.update({f"noise{i}": rng.normal(size=rows) for i in range(11)})
    return columns, labels


def median_seconds(read: Callable[[], object], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        read()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main() -> None:
    args = parser(__doc__).parse_args()
    rows = 10_000 if args.quick else 50_000
    settings = bench_settings().replace(signing_key="bench-signing-secret-0123")
    config = parse_model_config({"name": "bench", "pipeline": "logistic_regression", "training_window": "1h",
                                 "holdout_fraction": 0.2,
                                 "validation": {"max_regression": 1.0, "max_latency_p99_ms": 50},
                                 "trigger": {"debounce": 0, "cooldown": 0, "min_new_labels": 1}})
    columns, labels = columns_for(2000, 0, 1)
    table = Table({**columns, "label": labels.astype(np.int64)}, {**{n: "float" for n in columns}, "label": "int"})
    TrainingJob(settings, config).run(Trigger("init", "init"), dataset=from_table(table, "label"))

    columns, labels = columns_for(rows, 2, 2)
    start_ms = int(time.time() * 1000) - 1000
    with Producer(model="bench", settings=settings) as producer:
        for start in range(0, rows, 100):
            part = {k: v[start:start + 100] for k, v in columns.items()}
            ids = [f"b{i}" for i in range(start, start + 100)]
            producer.predictions(part, np.zeros(100), request_ids=ids)
            producer.labels(ids, labels[start:start + 100].astype(int).tolist())

    ranges = training_ranges(settings, start_ms, int(time.time() * 1000) + 1000)
    codec = codec_for(settings)

    def consume_only() -> int:
        return sum(len(batch) for batch in read_ranges(settings, ranges))

    def consume_and_decode() -> int:
        return sum(len(codec.decode(m.value())["request_ids"]) for batch in read_ranges(settings, ranges)
                   for m in batch)

    messages = consume_only()
    baseline_s = median_seconds(consume_only)
    decode_baseline_s = median_seconds(consume_and_decode)
    assembly_s = median_seconds(lambda: read_dataset(settings, "bench", ranges))
    assert read_dataset(settings, "bench", ranges).rows == rows

    trainer = Trainer(settings, [config])
    alert = Alert.create("driftline.drift", "bench", severity="warning", identity=("bench",),
                         data={"message": "bench drift"})
    producer = make_producer(settings)
    sent = time.perf_counter()
    producer.produce(settings.topic("alerts"), key=b"bench", value=alert.to_json())
    producer.flush(10)
    run = None
    while run is None and time.perf_counter() - sent < 120:
        finished = trainer.step(0.05)
        run = finished[0] if finished else None
    registry = Registry(settings)
    while registry.deployments().get("bench", {}).get("version") != (run or {}).get("candidate_version"):
        time.sleep(0.05)
    published_s = time.perf_counter() - sent
    trainer.close()
    report({"rows": rows, "messages": messages, "run_status": run["status"] if run else "none",
            "alert_to_published_s": published_s,
            "rows_per_s": rows / assembly_s,
            "baseline_rows_per_s": rows / baseline_s,
            "assembly_ratio": baseline_s / assembly_s,
            "decode_baseline_rows_per_s": rows / decode_baseline_s,
            "decode_assembly_ratio": decode_baseline_s / assembly_s,
            "candidate_accuracy": (run or {}).get("candidate_metrics", {}).get("accuracy", float("nan")),
            "champion_accuracy": (run or {}).get("champion_metrics", {}).get("accuracy", float("nan"))})


if __name__ == "__main__":
    main()
