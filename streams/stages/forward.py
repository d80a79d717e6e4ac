"""Predictions and labels handed to the decay stage, by model, as stage 1 reads them.

A label joins its prediction by request id, and a quality window is one
number per model version, so the decay stage needs every row of a model in
one place. The event topics cannot promise that: applications key batch
events by their first request id, the serving node batches whatever requests
arrived together, and several monitor workers split the partitions. So
stage 1, which reads and decodes every prediction anyway, also reads the
labels and writes both to ``monitor.by-model`` keyed by model (the
repartition step of a stream join, as Kafka Streams does it), in the same
transaction as its window deltas and its input offsets: a crash neither
loses nor duplicates a row downstream.

It writes *runs*, not events (:mod:`streams.decay.coalesce`): one-row
events of one model, version and window in a polled batch go out as one
Prediction (or Label) event of many rows, features included (a regression's
label-free estimate reads them). The decay stage therefore decodes each row
once in a compact event instead of each event a second time, and the topic
carries one message per run. (Until this, a separate router copied every
event's bytes — a third consume and a produce per event, then a second full
decode: two thirds of a monitor worker's time.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from driftline.consumer import Event
from driftline.contract import EventCodec
from schemas.columns import merged_record
from streams.decay.coalesce import coalesce, merge_parts

BY_MODEL_TOPIC = "monitor.by-model"


# A forwarded run is split so no event nears the broker's message limit (16 MiB by default): a batch
# of wide 100-row events merged whole could pass it, and a refused produce aborts the transaction.
MAX_RUN_BYTES = 2 * 1024 * 1024


def by_model_messages(events: Sequence[Event], window_ms: int, codec: EventCodec,
                      max_bytes: int = MAX_RUN_BYTES) -> tuple[list[tuple[bytes, bytes]], list[Event]]:
    """(key, value) messages for ``monitor.by-model``, and the events left out as inconsistent.

    ``events`` are decoded Prediction and Label events; an event whose arrays
    disagree with its request ids is returned apart (merged, it would break
    its whole run) for the caller to count. A run larger than ``max_bytes``
    (estimated from its parts) goes out as several events.
    """
    runs, inconsistent = coalesce(events, window_ms)
    messages = []
    for run in runs:
        for parts in _chunks(run.parts, max_bytes):
            messages.append(_encoded(run.kind, parts, codec))
    return messages, inconsistent


def _size(record: dict[str, Any]) -> int:
    """An upper bound of the bytes a record's rows take in a merged event, from lengths alone (no encode).

    A string is at most 4 bytes per character (UTF-8) plus a 10-byte length;
    numbers, null maps and codes travel as the bytes they are; a label is at
    most a 10-byte union tag and number, or a string. The bound, not a guess,
    keeps a chunk under ``max_bytes`` however long an application's request
    ids or categories are.
    """
    ids = record["request_ids"]
    size = 4 * sum(map(len, ids)) + 10 * len(ids)
    columns = record.get("columns")
    if columns is None:  # a label
        texts = [v for v in record["labels"] if isinstance(v, str)]
        return size + 11 * len(record["labels"]) + 4 * sum(map(len, texts))
    texts = columns["categorical_values"] or columns.get("categorical_levels") or []
    return size + len(columns["numeric_values"]) + len(columns["numeric_nulls"]) + \
        len(columns["categorical_nulls"]) + len(columns.get("categorical_codes") or b"") + \
        4 * sum(map(len, texts)) + 10 * len(texts) + 200 * len(columns.get("mismatched") or ())


def _chunks(parts: list[dict[str, Any]], max_bytes: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    size = 0
    for part in parts:
        part_size = _size(part)
        if chunk and size + part_size > max_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(part)
        size += part_size
    if chunk:
        yield chunk


def _encoded(kind: str, parts: list[dict[str, Any]], codec: EventCodec) -> tuple[bytes, bytes]:
    record = merge_parts(kind, parts)
    if kind == "label":
        return record["model"].encode(), codec.encode("driftline.Label", record)
    if len(parts) > 1:  # the run's features, stacked into the merged event
        record = {**record, "columns": merged_record([(p["columns"], len(p["request_ids"])) for p in parts])}
    return record["model"].encode(), codec.encode("driftline.Prediction", record)
