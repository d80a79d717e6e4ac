"""Shared bench plumbing: a broker to run against, unique topics, the JSON last line."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from driftline.broker import broker_up
from driftline.settings import Settings, load_settings
from driftline.topics import create_topics


def peers_python() -> str | None:
    """The interpreter of the peers' venv (``make peers``), or ``$DRIFTLINE_PEERS_PYTHON``; None if absent.

    Peers (Evidently, NannyML) pin their own libraries, so they run in their
    own venv, in a subprocess, on the same files.
    """
    import os
    from pathlib import Path

    configured = os.environ.get("DRIFTLINE_PEERS_PYTHON")
    if configured:
        return configured
    local = Path(__file__).resolve().parent.parent / ".venv-peers" / "bin" / "python"
    return str(local) if local.exists() else None


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small run, under 60 s")
    return p


def bench_settings(partitions: int = 4) -> Settings:
    """The configured cluster or the local broker, with this run's own topics."""
    settings = load_settings()
    choice = broker_up(settings)
    settings = settings.replace(bootstrap_servers=choice.bootstrap, partitions=partitions,
                                topic_prefix=f"bench{uuid.uuid4().hex[:8]}.")
    create_topics(settings)
    print(f"# broker: {choice.kind} at {choice.bootstrap}; topics {settings.topic_prefix}*", file=sys.stderr)
    return settings


def bench_consumer(settings: Settings, **overrides: Any) -> Any:
    """A throwaway consumer group reading from the beginning, committing nothing, configured as
    driftline's own consumers are (``consumer_config``): a baseline fetching any other way would make our
    readers look faster or slower than they are."""
    from driftline.kafka_clients import make_consumer

    return make_consumer(settings, f"bench-{uuid.uuid4().hex}", **overrides)


def produce_all(producer: Any, topic: str, values: Iterable[bytes], keys: Iterable[bytes] | None = None) -> None:
    """Produce every value, waiting for queue space instead of failing, then flush."""
    keys = iter(keys) if keys is not None else None
    for value in values:
        key = next(keys) if keys is not None else None
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(figures: dict[str, Any]) -> None:
    """Human lines, then the figures as one flat JSON object on the last line."""
    for key, value in figures.items():
        shown = f"{value:,.1f}" if isinstance(value, float) else value
        print(f"{key:40} {shown}")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))
