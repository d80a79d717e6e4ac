"""``driftline demo``: the monitor on a local broker, end to end, in about a minute.

It starts the broker, creates the topics, profiles a reference stream from
river's Agrawal generator (loan applications; nothing is downloaded),
starts a monitor worker, then plays traffic as an application would: stable
at first, then with a known covariate shift (salaries up 30%). The terminal
shows windows closing and alerts arriving, and the demo exits 0 only if the
shift was detected on the feature it was injected into.

This grows into the whole loop (retraining and serving) as those milestones land.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Iterator

import numpy as np

from driftline.alerts import AlertSubscriber
from driftline.broker import broker_up
from driftline.kafka_clients import make_producer
from driftline.producer import Producer
from driftline.settings import Settings
from driftline.topics import create_topics

SHIFTED_FEATURE = "salary"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run driftline end to end on a local broker")
    parser.add_argument("--stable-seconds", type=float, default=12.0, help="seconds of stable traffic (12)")
    parser.add_argument("--drift-seconds", type=float, default=12.0, help="seconds of shifted traffic (12)")
    parser.add_argument("--window", type=float, default=2.0, help="monitor window in seconds (2)")
    parser.set_defaults(handler=run)


def agrawal_rows(count: int | None, seed: int) -> Iterator[dict]:
    """Rows of river's Agrawal stream, generated lazily (an endless stream when count is None)."""
    from river.datasets import synth

    stream = synth.Agrawal(classification_function=0, seed=seed)
    return (x for x, _ in (stream.take(count) if count is not None else stream))


def run(args: argparse.Namespace, settings: Settings) -> int:
    from schemas import Table
    from streams.profile import Profile
    from streams.worker import Monitor

    if min(args.stable_seconds, args.drift_seconds, args.window) <= 0:
        print("driftline: error: --stable-seconds, --drift-seconds and --window must be positive")
        return 2
    choice = broker_up(settings)
    settings = settings.replace(topic_prefix=f"{settings.topic_prefix}demo{int(time.time())}.",
                                window_seconds=args.window, grace_seconds=args.window / 4)
    print(f"[broker]   {choice.kind} Kafka at {choice.bootstrap}")
    create_topics(settings)
    print(f"[topics]   created under {settings.topic_prefix}")

    reference = list(agrawal_rows(20_000, seed=1))
    columns = {name: np.array([r[name] for r in reference], dtype=float) for name in reference[0]}
    table = Table(columns, {name: "float" for name in columns})
    profile = Profile.build(table, "loans", source="river Agrawal(seed=1)")
    publisher = make_producer(settings)
    publisher.produce(settings.topic("profiles"), key=b"loans", value=profile.to_bytes())
    publisher.flush(30)
    print(f"[profile]  loans v1: {table.rows} reference rows, {len(profile.features)} features")

    monitor = Monitor(settings, instance="demo", idle_seconds=3.0)
    stopping = threading.Event()
    worker = threading.Thread(target=monitor.run, args=(stopping.is_set,), daemon=True)
    worker.start()
    alerts = AlertSubscriber(settings, group_id="demo-console", poll_timeout=0.05)
    print(f"[monitor]  windows of {args.window:g}s; traffic: {args.stable_seconds:g}s stable, then "
          f"{SHIFTED_FEATURE} x1.3 for {args.drift_seconds:g}s")

    stream = agrawal_rows(None, seed=2)
    logging.getLogger("streams.worker").setLevel(logging.ERROR)  # alerts are shown below, once
    sent = shown = 0
    detected_at = None
    started = time.time()
    shift_at = started + args.stable_seconds
    end = shift_at + args.drift_seconds
    try:
        with Producer(model="loans", settings=settings, model_version="1") as producer:
            while time.time() < end or (detected_at is None and time.time() < end + 3 * args.window):
                rows = [next(stream) for _ in range(50)]
                if time.time() >= shift_at:
                    for row in rows:
                        row[SHIFTED_FEATURE] *= 1.3
                producer.predictions(rows, np.zeros(len(rows)))
                sent += len(rows)
                alert = alerts.poll(0.05)
                while alert is not None:
                    shown += 1
                    t = time.time() - started
                    print(f"[alert]    +{t:5.1f}s {alert.type} {alert.severity}: {alert.message}")
                    if alert.type == "driftline.drift" and SHIFTED_FEATURE in alert.features and detected_at is None:
                        detected_at = time.time()
                    alert = alerts.poll(0)
    finally:
        stopping.set()
        worker.join(timeout=30)
        windows, dead = len(monitor.merger.closed), monitor.stage1.deadletters.count
        monitor.close()
        alerts.close()
    # Transactional topics hold commit markers, so offsets over-count records: report what was seen.
    print(f"[summary]  {sent} rows sent, {windows} windows judged, {shown} alerts shown, {dead} dead letters")
    if detected_at is None:
        print(f"[demo]     FAILED: the shift in {SHIFTED_FEATURE} was not detected")
        return 1
    print(f"[demo]     ok: {SHIFTED_FEATURE} drift detected {detected_at - shift_at:.1f}s after the shift "
          f"(windows of {args.window:g}s)")
    return 0
