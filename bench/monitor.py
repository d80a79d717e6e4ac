"""Monitor throughput, detection latency and memory, beside a raw consume+decode baseline.

* ``events_per_s``: single-row 20-feature events through the monitor's stage 1
  and 2 in one process (decode, window deltas, transactions), against
  ``baseline_events_per_s``: confluent-kafka consume + decode of the same
  events into records and one frame, no statistics (what an application
  reading the topic gets), and ``rows_baseline_events_per_s``: consume +
  the columnar decode the worker itself uses (:meth:`Codec.decode_rows`,
  the stricter yardstick: the least any reader of these events can do).
* ``all_stages_events_per_s``: the same events through everything a worker
  runs (``driftline monitor``): stages 1 and 2 (stage 1 also forwards the
  predictions by model) and the decay stage (which holds the predictions for
  labels that never come here), until the decay stage has read every row;
  in rounds, each beside its own baseline (:func:`paired_rounds`):
  ``all_stages_ratio_to_baseline`` is their median ratio, ``_min``/``_max``
  the range.
* ``batch_rows_per_s``: the same as ``events_per_s`` with 100-row events of a
  calibrated classifier (whose predictions stage 1 forwards without their
  features), beside ``batch_baseline_rows_per_s`` (consume + decode of those
  events), in rounds as above (``batch_ratio_to_baseline``, ``_min``, ``_max``).
* Every rate is timed in steady state, the worker's as its baseline's: from
  the end of the first batch, counting the events after it (:func:`drain`).
* ``detect_latency_p50_s`` / ``_p99_s``: wall time from a drifted window's
  close (its end + grace) to its alert on the alerts topic, with live traffic.
* ``rss_mb`` after the run, and ``rss_mb_half`` halfway: memory is bounded by
  models x features x open windows, not by events.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import numpy as np
from _common import bench_consumer, bench_settings, parser, report, rss_mb
from confluent_kafka import Consumer

from driftline import Producer
from driftline.consumer import DECODE_SLICE
from driftline.estimation import calibrate
from driftline.kafka_clients import common_config, make_producer
from driftline.runtime import single_threaded_blas, tune_gc
from schemas import Codec, FeatureFrame, Table
from schemas.rows import Rows
from streams.drift.profile import Profile
from streams.stages.monitor import STAGE1_BATCH_BYTES, STAGE1_BATCH_EVENTS, Monitor

NUMERIC = [f"n{i}" for i in range(16)]
CATEGORICAL = [f"c{i}" for i in range(4)]
PLANS = np.array(["free", "pro", "team", "enterprise"], dtype=object)


def batch_columns(rng, rows, shift=0.0):
    return {**{n: rng.normal(size=rows) + (shift if n == "n0" else 0.0) for n in NUMERIC},
            **{c: rng.choice(PLANS, rows) for c in CATEGORICAL}}


def publish_profile(settings, rng, *, calibrated=False):
    """The model's profile; ``calibrated``: a deployed binary classifier's, with its calibration as
    ``driftline profile`` writes it for a model, so stage 1 knows the decay stage reads none of its features
    (and forwards its predictions without them).

    The whole-worker rounds run without one: the decay stage's estimate costs per closed window (a band of
    400 draws on up to 50,000 rows, 35-70 ms here), and this bench's event time runs ~100x faster than
    its clock (10-s windows closing every 0.1 s), so a per-window cost would read as 3.5 µs an event.
    """
    types = {**{n: "float" for n in NUMERIC}, **{c: "string" for c in CATEGORICAL}}
    profile = Profile.build(Table(batch_columns(rng, 20_000), types), "bench")
    if calibrated:
        own = np.random.default_rng(1)  # not the caller's: its draws stay the events'
        scores = own.random(5_000)
        profile.calibration = calibrate(np.where(own.random(5_000) < scores, "1", "0"), scores)
    producer = make_producer(settings)
    producer.produce(settings.topic("profiles"), key=b"bench", value=profile.to_bytes())
    producer.flush()


def produce(settings, events, rows, rng, start_ms):
    rows_list = [dict(zip(NUMERIC + CATEGORICAL, values, strict=True)) for values in zip(
        *[rng.normal(size=events).tolist() for _ in NUMERIC],
        *[rng.choice(PLANS, events).tolist() for _ in CATEGORICAL], strict=True)] if rows == 1 else None
    with Producer(model="bench", settings=settings) as producer:
        for i in range(events):
            t = start_ms + i  # 1 ms apart: many windows, all in order
            if rows == 1:
                producer.prediction(rows_list[i], 0.5, event_time=t)
            else:
                producer.predictions(batch_columns(rng, rows), np.zeros(rows), event_time=t)


def consume_rate(settings, topic, events, decode):
    """Events/s of consuming ``topic`` from the start and handing each polled batch's values to ``decode``.

    Batches are bounded as stage 1 bounds its own (events and bytes): 5,000 single-row events, or as many
    100-row events as fill ``STAGE1_BATCH_BYTES``. Unbounded, a call returned 5,000 events of 18 KB
    (93 MB, and a frame of 500,000 rows) once consumers stopped idling on their fetch backoff, and the
    baseline then measured page faults: 243,800 rows/s where the worker itself read 328,300.
    """
    consumer = bench_consumer(settings)
    consumer.subscribe([topic])
    seen = 0
    start, first = None, 0
    batch = 500  # until the first batch says how large its events are
    while seen < events:
        messages = consumer.consume(min(batch, events - seen), 1.0)
        values = [m.value() for m in messages if not m.error()]
        if values:
            decode(values)
            batch = max(1, min(5000, STAGE1_BATCH_BYTES * len(values) // sum(map(len, values))))
        seen += len(values)
        if values and start is None:  # steady state, as :func:`drain` measures the worker
            start, first = time.perf_counter(), seen
    elapsed = time.perf_counter() - start
    consumer.close()
    return (events - first) / elapsed


def decode_records(codec, values):
    """As an application reading the topic decodes a polled batch: records (together, the odd one alone),
    then one frame of all their rows."""
    records = [d[1] if d else codec.decode(v, "driftline.Prediction")
               for d, v in zip(codec.decode_batch(values), values, strict=True)]
    FeatureFrame.from_records([(r["columns"], len(r["request_ids"])) for r in records])


def decode_columns(codec, values):
    """As the worker decodes a polled batch: plain events straight to columns, in its slices."""
    taken = np.zeros(len(values), dtype=bool)
    for at in range(0, len(values), DECODE_SLICE):
        for _, found, _ in codec.decode_rows(values[at:at + DECODE_SLICE]):
            taken[at + np.asarray(found)] = True
    left = np.flatnonzero(~taken).tolist()  # the first of a layout is read alone (and learnt)
    if left:
        Rows.from_records("driftline.Prediction", [codec.decode(values[i], "driftline.Prediction") for i in left])


def baseline(settings, topic, events):
    codec = Codec.default()
    return consume_rate(settings, topic, events, lambda values: decode_records(codec, values))


def rows_baseline(settings, topic, events):
    codec = Codec.default()
    return consume_rate(settings, topic, events, lambda values: decode_columns(codec, values))


def drain(monitor, events, half=None):
    """Run the monitor until stage 1 consumed ``events``; its events/s from the end of its first batch.

    Timed as :func:`consume_rate` times the baseline: the clock starts when the first batch is done and
    counts the events after it, and no call asks for more events than are left. Before, the worker's
    clock started before the call that returned its first batch (so it counted the wait for the first
    fetch, which the baseline's did not), and its last call waited out its timeout for a whole batch
    while only the last few events were left: together 75 ms of a 1.05-s run of 100-row events.
    Returns (events/s, RSS halfway).
    """
    start, first = None, 0
    consumed = 0
    rss_half = 0.0
    while consumed < events:
        n = monitor.step_stage1(max_messages=min(STAGE1_BATCH_EVENTS, events - consumed), timeout=0.05)
        consumed += n
        if n and start is None:
            start, first = time.perf_counter(), consumed
        monitor.step_stage2(timeout=0.0 if n else 0.05)
        if half and not rss_half and consumed >= half:
            rss_half = rss_mb()
    return (consumed - first) / (time.perf_counter() - start), rss_half


def drain_all(monitor, events):
    """Every stage of one worker, in Monitor.run's order, until each has read every event.

    Stage 2 and the decay stage join their groups (and restore their state) before the clock starts, as
    stage 1 has by its first events, when the clock starts: a worker's start-up is no part of its throughput.
    """
    joined_by = time.monotonic() + 60
    while not (monitor.stage2.consumer.assignment() and monitor.decay.reader.consumer.assignment()):
        assert time.monotonic() < joined_by, "stage 2 and the decay stage joined their groups in 60 s"
        monitor.step_stage2(timeout=0.1)
        monitor.decay.step(timeout=0.1)
    start, first = None, 0
    forwarded = 0  # by-model events carry runs of rows: the decay stage is done when it joined every row
    while monitor.stage1.consumed < events or forwarded < events:
        left = events - monitor.stage1.consumed
        n = monitor.step_stage1(max_messages=max(1, min(STAGE1_BATCH_EVENTS, left)), timeout=0.05 if left else 0.0)
        if n and start is None:  # timed as :func:`drain` times stages 1 and 2
            start, first = time.perf_counter(), n
        monitor.step_stage2(timeout=0.0)
        monitor.decay.step(timeout=0.0)
        forwarded = monitor.decay.rows_read
    return (events - first) / (time.perf_counter() - start)


def paired_rounds(rng, events, rounds, *, rows=1, run=None):
    """``run(monitor, events)`` (events/s; default the whole worker, :func:`drain_all`) beside the baseline,
    in ``rounds`` rounds of ``events / rounds`` events of ``rows`` rows, each on topics of its own with its
    baseline read just before the worker reads the same events; (rates, baseline rates), in events/s.

    This machine's speed drifts by a third between minutes (another VM's load): one baseline taken
    before a million events were produced and read by others measured the machine then, not beside the
    worker. The median of neighbouring ratios does; the range says how far one round can stray.
    100-row events are a calibrated classifier's (see :func:`publish_profile`).
    """
    per = events // rounds
    rates, baselines = [], []
    for number in range(rounds):
        settings = bench_settings(partitions=4)
        publish_profile(settings, rng, calibrated=rows > 1)
        produce(settings, per, rows, rng, start_ms=1_700_000_000_000)
        baselines.append(baseline(settings, settings.topic("predictions"), per))
        monitor = Monitor(settings.replace(window_seconds=10.0, grace_seconds=1.0), instance=f"bench-{rows}-{number}")
        try:
            rates.append((run or drain_all)(monitor, per))
        finally:
            monitor.close()
    return np.array(rates), np.array(baselines)


def median_and_range(prefix, unit, rates, baselines, per=1):
    """``{prefix}_{unit}_per_s``: the rounds' median rate (x ``per``, the rows of an event), its baseline's,
    and the median, least and greatest ratio of a round's rate to its own baseline."""
    ratios = rates / baselines
    return {f"{prefix}_{unit}_per_s": float(np.median(rates)) * per,
            f"{prefix}_baseline_{unit}_per_s": float(np.median(baselines)) * per,
            f"{prefix}_ratio_to_baseline": float(np.median(ratios)),
            f"{prefix}_ratio_min": float(ratios.min()), f"{prefix}_ratio_max": float(ratios.max()),
            f"{prefix}_rounds": len(ratios)}


def detection_latency(settings, seconds: float, window_s: float, grace_s: float) -> list[float]:
    rng = np.random.default_rng(9)
    monitor = Monitor(settings.replace(window_seconds=window_s, grace_seconds=grace_s),
                      instance="bench-live", idle_seconds=2)  # the features partitions get nothing here:
    # a window waits for every source partition until its reader declares it idle (verified quiet this long)
    stop = threading.Event()
    thread = threading.Thread(target=monitor.run, args=(stop.is_set,))
    thread.start()
    alerts = Consumer({**common_config(settings), "group.id": f"bench-{uuid.uuid4().hex}",
                       "auto.offset.reset": "latest"})
    alerts.subscribe([settings.topic("alerts")])
    latencies = []
    try:
        with Producer(model="bench", settings=settings) as producer:
            end = time.time() + seconds
            while time.time() < end:
                producer.predictions(batch_columns(rng, 200, shift=2.0), np.zeros(200))
                producer.flush()
                for m in alerts.consume(100, 0.02):
                    if m.error():
                        continue
                    alert = json.loads(m.value())
                    if alert["type"] == "driftline.drift":
                        closes = (alert["data"]["window_end"] / 1000) + grace_s
                        latencies.append(time.time() - closes)
    finally:
        stop.set()
        thread.join()
        monitor.close()
        alerts.close()
    return latencies


def main() -> None:
    args = parser(__doc__).parse_args()
    tune_gc()  # as `driftline monitor` does; the baseline runs with it too
    single_threaded_blas()  # likewise (the baseline makes no BLAS call)
    events = 100_000 if args.quick else 1_000_000
    batches = 2_000 if args.quick else 30_000
    rng = np.random.default_rng(0)
    figures: dict[str, float | int] = {"events": events, "batch_events": batches}

    settings = bench_settings(partitions=4)
    publish_profile(settings, rng)
    produce(settings, events, 1, rng, start_ms=1_700_000_000_000)
    figures["baseline_events_per_s"] = baseline(settings, settings.topic("predictions"), events)
    figures["rows_baseline_events_per_s"] = rows_baseline(settings, settings.topic("predictions"), events)
    monitor = Monitor(settings.replace(window_seconds=10.0, grace_seconds=1.0), instance="bench-1")
    figures["events_per_s"], figures["rss_mb_half"] = drain(monitor, events, half=events // 2)
    figures["rss_mb"] = rss_mb()
    monitor.close()
    figures["ratio_to_baseline"] = figures["events_per_s"] / figures["baseline_events_per_s"]
    figures["ratio_to_rows_baseline"] = figures["events_per_s"] / figures["rows_baseline_events_per_s"]

    figures |= median_and_range("all_stages", "events", *paired_rounds(rng, events, rounds=2 if args.quick else 5))
    # stages 1-2 on 100-row events: rounds of 10,000 events (a round of 1M rows lasts about a second here)
    figures |= median_and_range("batch", "rows", *paired_rounds(
        rng, batches, rounds=1 if args.quick else 3, rows=100, run=lambda monitor, n: drain(monitor, n)[0]), per=100)

    live = bench_settings(partitions=2)
    publish_profile(live, rng)
    latencies = detection_latency(live, 12.0 if args.quick else 40.0, window_s=1.0, grace_s=0.2)
    figures["detect_alerts"] = len(latencies)
    if latencies:
        figures["detect_latency_p50_s"] = float(np.percentile(latencies, 50))
        figures["detect_latency_p99_s"] = float(np.percentile(latencies, 99))
    report(figures)


if __name__ == "__main__":
    main()
