"""Runs of small prediction and label events merged into one join block each.

Applications often send one row per event. The label join and the score
windows are vectorised per block, so a block per one-row event spends its
time on per-block bookkeeping (measured: 14 µs of 20 per event). Within one
consumed batch, events of the same kind, source partition, model, model
version and window become one block: the arrays concatenate, the block's
event time is the run's latest (same window, so the same quality and score
windows; a TTL a few milliseconds longer), and its offset is the run's
lowest, so the offsets committed behind it stay conservative. Order inside a
batch does not matter to the join (either side waits for the other), and
predictions and labels interleave on the topic, so runs are grouped by key,
not only when adjacent.

Events whose arrays disagree with their request ids are left out and
returned apart, for the caller to count: merged, they would break a whole
run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from driftline.consumer import Event


@dataclass
class Run:
    kind: str  # "prediction" | "label"
    source: tuple[str, int]
    offset: int  # the first event's
    record: dict[str, Any]
    events: int = 1
    parts: list[dict[str, Any]] = field(default_factory=list)


def _key(kind: str, event: Event, window_ms: int) -> tuple:
    record = event.record
    window = record["event_time"] // window_ms
    if kind == "label":
        return kind, event.topic, event.partition, record["model"], window
    return (kind, event.topic, event.partition, record["model"], record.get("model_version") or "", window,
            record.get("predicted_class") is None)


def _consistent(kind: str, record: dict[str, Any]) -> bool:
    rows = len(record["request_ids"])
    if kind == "label":
        return len(record["labels"]) == rows
    classes = record.get("predicted_class")
    return len(record["prediction"]) == 8 * rows and (classes is None or len(classes) == rows)


def _merged(run: Run) -> dict[str, Any]:
    parts = run.parts
    first = parts[0]
    if len(parts) == 1:
        return first
    merged = {**first, "event_time": max(p["event_time"] for p in parts),
              "request_ids": [r for p in parts for r in p["request_ids"]]}
    if run.kind == "label":
        merged["labels"] = [v for p in parts for v in p["labels"]]
    else:
        merged["prediction"] = b"".join(p["prediction"] for p in parts)
        if first.get("predicted_class") is not None:
            merged["predicted_class"] = [c for p in parts for c in p["predicted_class"]]
    return merged


def coalesce(events: Iterable[Event], window_ms: int) -> tuple[list[Run], list[Event]]:
    """(runs in order of their first event, inconsistent events left out)."""
    runs: dict[tuple, Run] = {}
    bad: list[Event] = []
    for event in events:
        kind = "label" if event.schema == "driftline.Label" else "prediction"
        if not _consistent(kind, event.record):
            bad.append(event)
            continue
        key = _key(kind, event, window_ms)
        run = runs.get(key)
        if run is None:
            runs[key] = Run(kind, (event.topic, event.partition), event.offset, {}, parts=[event.record])
        else:
            run.parts.append(event.record)
            run.events += 1
            run.offset = min(run.offset, event.offset)
    for run in runs.values():
        run.record = _merged(run)  # parts stay: a regression's loss model reads each event's columns
    return list(runs.values()), bad
