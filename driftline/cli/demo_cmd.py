"""``driftline demo``: start a local broker, create the topics and stream sample traffic.

Traffic comes from river's Agrawal generator (a loan-approval stream), so no
data is downloaded. Each row is produced as a prediction event through the
SDK, its label follows, and the demo reads the topics back to show that every
event arrived.
"""

from __future__ import annotations

import argparse
import itertools
import time

from driftline.broker import broker_up
from driftline.producer import Producer
from driftline.settings import Settings
from driftline.topics import create_topics, message_count


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run driftline end to end on a local broker")
    parser.add_argument("--rows", type=int, default=20_000, help="rows of sample traffic (default 20000)")
    parser.add_argument("--batch", type=int, default=100, help="rows per prediction event (default 100)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from river.datasets import synth

    if args.rows <= 0 or args.batch <= 0:
        print("driftline: error: --rows and --batch must be positive")
        return 2
    choice = broker_up(settings)
    print(f"[broker]  {choice.kind} Kafka at {choice.bootstrap}")
    created = create_topics(settings)
    print(f"[topics]  {sum(v == 'created' for v in created.values())} created, "
          f"{sum(v == 'exists' for v in created.values())} already there")
    before = {t: message_count(settings, settings.topic(t)) for t in ("predictions", "labels")}
    stream = synth.Agrawal(classification_function=0, seed=7)
    started = time.perf_counter()
    sent = 0
    with Producer(model="loans", settings=settings, model_version="0") as producer:
        rows = iter(stream.take(args.rows))
        while batch := list(itertools.islice(rows, args.batch)):
            features = [x for x, _ in batch]
            labels = [int(y) for _, y in batch]
            ids = producer.predictions(features, [0.5] * len(batch))
            producer.labels(ids, labels)
            sent += len(batch)
    elapsed = time.perf_counter() - started
    after = {t: message_count(settings, settings.topic(t)) for t in ("predictions", "labels")}
    print(f"[produce] {sent} rows in {elapsed:.2f}s ({sent / elapsed:,.0f} rows/s), "
          f"{after['predictions'] - before['predictions']} prediction events and "
          f"{after['labels'] - before['labels']} label events on the topics")
    expected = -(-args.rows // args.batch)
    ok = all(after[t] - before[t] == expected for t in after)
    print("[demo]    ok: every event arrived" if ok else "[demo]    FAILED: events missing")
    return 0 if ok else 1
