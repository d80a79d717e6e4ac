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

It writes *runs*, not events: the events of one source partition, model,
model version and window in a polled batch (and, for predictions, with or
without predicted classes) go out as one Prediction (or Label) event of
many rows, features included (a regression's label-free estimate reads
them). The decay stage therefore decodes each row once in a compact event
instead of each event a second time, and the topic carries one message per
run. Predictions arrive here as columns (:class:`~schemas.rows.Rows`), so a
run is found with numpy and merged with one take of its rows; labels, a
join's other side, arrive as events and run through
:func:`~streams.decay.coalesce.coalesce` as the decay stage does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from driftline.consumer import Event
from driftline.contract import EventCodec
from schemas.columns import unique_texts
from schemas.rows import Rows
from streams.decay.coalesce import coalesce, merge_parts

BY_MODEL_TOPIC = "monitor.by-model"


# A forwarded run is split so no event nears the broker's message limit (16 MiB by default): a batch
# of wide 100-row events merged whole could pass it, and a refused produce aborts the transaction.
MAX_RUN_BYTES = 2 * 1024 * 1024


def prediction_messages(rows: Rows, window_ms: int, codec: EventCodec,
                        max_bytes: int = MAX_RUN_BYTES) -> list[tuple[bytes, bytes]]:
    """(key, value) messages for ``monitor.by-model`` of one partition's polled predictions.

    Runs are found with numpy over the events (a key per event from the
    codes of its model, version, window and whether it has classes), in
    order of their first event, rows in event order; a run larger than
    ``max_bytes`` (bounded from lengths, see :func:`_row_chunks`) goes out as
    several events.
    """
    if not rows.events:
        return []
    models, model_of = unique_texts(rows.models)
    versions, version_of = unique_texts(rows.versions)
    windows = rows.times // window_ms
    window_of = windows - windows.min()
    classed = rows.classed if rows.classed is not None else np.zeros(rows.events, dtype=bool)
    key = ((model_of * len(versions) + version_of) * (int(window_of.max()) + 1) + window_of) * 2 + classed
    _, first, run_of = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(run_of, kind="stable")  # the events of each run together, in offset order
    ends = np.cumsum(np.bincount(run_of))
    messages = []
    for run in np.argsort(first).tolist():  # runs in order of their first event
        events = order[ends[run - 1] if run else 0:ends[run]]
        key_bytes = models[model_of[events[0]]].encode()
        for chunk in _row_chunks(rows.take(events), max_bytes):
            messages.append((key_bytes, codec.encode("driftline.Prediction", _run_record(chunk))))
    return messages


def _run_record(rows: Rows) -> dict[str, Any]:
    """One Prediction event holding every row of ``rows`` (one model, version and window)."""
    assert rows.scores is not None and rows.classed is not None and rows.classes is not None
    return {"model": rows.models[0], "model_version": rows.versions[0], "event_time": int(rows.times.max()),
            "request_ids": rows.request_ids, "segment": rows.segments[0], "columns": rows.frame.to_record(),
            "prediction": np.ascontiguousarray(rows.scores, dtype="<f8").tobytes(),
            "predicted_class": rows.classes if bool(rows.classed[0]) else None}


def _row_chunks(rows: Rows, max_bytes: int) -> list[Rows]:
    """``rows`` in pieces of whole events whose merged event stays under ``max_bytes``.

    The size is an upper bound from lengths alone (no encode): a string is at
    most 4 bytes per character (UTF-8) plus a 10-byte length; numbers, null
    maps and codes travel as the bytes they are; the distinct texts (the
    dictionary) and type mismatches count once per piece. The bound, not a
    guess, keeps a piece under ``max_bytes`` however long an application's
    request ids or categories are.
    """
    frame = rows.frame
    texts = set(frame.categorical.ravel().tolist())
    fixed = 4 * sum(map(len, texts)) + 10 * len(texts) + 200 * len(frame.mismatched) + 200
    per_row = 8 * len(frame.numeric_names) + 5 * len(frame.categorical_names) + 8 + 1  # numbers, codes, nulls
    row_bytes = 4 * np.fromiter(map(len, rows.request_ids), dtype=np.int64, count=rows.rows) + 10 + per_row
    if rows.classes is not None and rows.classed is not None and rows.classed.any():
        row_bytes += 10 + 4 * np.fromiter((len(c or "") for c in rows.classes), dtype=np.int64, count=rows.rows)
    if fixed + int(row_bytes.sum()) <= max_bytes:
        return [rows]
    event_bytes = np.bincount(rows.row_events(), weights=row_bytes, minlength=rows.events).astype(np.int64)
    chunks, start, used = [], 0, fixed
    for i, size in enumerate(event_bytes.tolist()):  # rare (a run of megabytes): a pass per event is fine
        if i > start and used + size > max_bytes:
            chunks.append(rows.take(np.arange(start, i)))
            start, used = i, fixed
        used += size
    chunks.append(rows.take(np.arange(start, rows.events)))
    return chunks


def label_messages(events: Sequence[Event], window_ms: int, codec: EventCodec,
                   max_bytes: int = MAX_RUN_BYTES) -> tuple[list[tuple[bytes, bytes]], list[Event]]:
    """(key, value) messages for ``monitor.by-model`` of decoded Label events, and the events left out
    as inconsistent (labels that disagree with their request ids: merged, they would break their run)."""
    runs, inconsistent = coalesce(events, window_ms)
    messages = []
    for run in runs:
        for parts in _label_chunks(run.parts, max_bytes):
            record = merge_parts(run.kind, parts)
            messages.append((record["model"].encode(), codec.encode("driftline.Label", record)))
    return messages, inconsistent


def _label_size(record: dict[str, Any]) -> int:
    """An upper bound of the bytes a label record's rows take in a merged event (as :func:`_row_chunks`)."""
    ids = record["request_ids"]
    texts = [v for v in record["labels"] if isinstance(v, str)]
    return 4 * sum(map(len, ids)) + 10 * len(ids) + 11 * len(record["labels"]) + 4 * sum(map(len, texts))


def _label_chunks(parts: list[dict[str, Any]], max_bytes: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    size = 200
    for part in parts:
        part_size = _label_size(part)
        if chunk and size + part_size > max_bytes:
            yield chunk
            chunk, size = [], 200
        chunk.append(part)
        size += part_size
    if chunk:
        yield chunk
