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
many rows, with their features only when the decay stage may read them (a
regression's label-free estimate does; the join and the score windows do
not, so a model known only as a classifier goes without them: a 100-row
event of 20 features is 18.6 KB in and 4.1 KB forwarded). The decay stage
therefore decodes each row once in a compact event instead of each event a
second time, and the topic carries one message per run. Predictions arrive
here as columns (:class:`~schemas.rows.Rows`), so a run is found with
numpy and merged with one take of its rows; labels, a join's other side,
arrive as events and run through :func:`~streams.decay.coalesce.coalesce`
as the decay stage does.

An event of ``WHOLE_EVENT_ROWS`` rows or more, of a model whose features
go, is already a run: it goes out as the bytes it came in (one model,
version and time; at most the size the broker took once), so batch traffic
costs no merge and no encode here, and the decay stage decodes it at the
per-row speed of a run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from driftline.consumer import Event
from driftline.contract import EventCodec
from schemas.columns import unique_texts
from schemas.compiled import predictions_body
from schemas.rows import PREDICTION, Rows
from streams.decay.coalesce import coalesce, merge_parts

BY_MODEL_TOPIC = "monitor.by-model"


# A forwarded run is split so no event nears the broker's message limit (16 MiB by default): a batch
# of wide 100-row events merged whole could pass it, and a refused produce aborts the transaction.
MAX_RUN_BYTES = 2 * 1024 * 1024
# An event of this many rows is forwarded as it came: the decay stage's cost per event (a decode, a block in
# its join) is then a small part of the cost of its rows, so merging it into a run would save nothing there.
WHOLE_EVENT_ROWS = 32


def prediction_messages(rows: Rows, window_ms: int, codec: EventCodec, max_bytes: int = MAX_RUN_BYTES,
                        originals: Mapping[int, bytes] | None = None,
                        features: Callable[[str], bool] = lambda model: True) -> list[tuple[bytes, bytes]]:
    """(key, value) messages for ``monitor.by-model`` of one partition's polled predictions.

    Runs are found with numpy over the events (a key per event from the
    codes of its model, version, window and whether it has classes), in
    order of their first event, rows in event order; a run larger than
    ``max_bytes`` goes out as several events (:func:`_pieces`).
    ``originals`` holds, by event index, the bytes an event came in as
    where the caller kept them: such an event of ``WHOLE_EVENT_ROWS`` rows
    or more is a run of its own, sent as those bytes.
    ``features(model)`` says whether the decay stage reads a model's feature
    columns; a model's runs go without them when it does not (then no event
    goes as it came: its bytes hold them).
    """
    if not rows.events:
        return []
    models, model_of = unique_texts(rows.models)
    with_features = np.array([features(model) for model in models], dtype=bool)
    stripped = None if with_features.all() else rows.without_features()
    versions, version_of = unique_texts(rows.versions)
    windows = rows.times // window_ms
    window_of = windows - windows.min()
    classed = rows.classed if rows.classed is not None else np.zeros(rows.events, dtype=bool)
    key = ((model_of * len(versions) + version_of) * (int(window_of.max()) + 1) + window_of) * 2 + classed
    whole = _whole_events(rows, originals) & with_features[model_of]
    if whole.any():  # each its own run: a key no other event has
        key = np.where(whole, -1 - np.arange(rows.events), key)
    _, first, run_of = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(run_of, kind="stable")  # the events of each run together, in offset order
    ends = np.cumsum(np.bincount(run_of))
    messages = []
    for run in np.argsort(first).tolist():  # runs in order of their first event
        events = order[ends[run - 1] if run else 0:ends[run]]
        key_bytes = models[model_of[events[0]]].encode()
        if whole[events[0]]:
            assert originals is not None
            messages.append((key_bytes, originals[int(events[0])]))
            continue
        run_rows = (rows if stripped is None or with_features[model_of[events[0]]] else stripped).take(events)
        for piece in _pieces(run_rows, max_bytes):
            messages += [(key_bytes, value) for value in _encoded_run(piece, codec, max_bytes)]
    return messages


def _whole_events(rows: Rows, originals: Mapping[int, bytes] | None) -> np.ndarray:
    """Which events go out as the bytes they came in (see ``WHOLE_EVENT_ROWS``): only the large ones are
    looked up."""
    out = np.zeros(rows.events, dtype=bool)
    if originals:
        large = np.flatnonzero(rows.counts >= WHOLE_EVENT_ROWS).tolist()
        out[[i for i in large if i in originals]] = True
    return out


def _pieces(rows: Rows, max_bytes: int) -> list[Rows]:
    """``rows`` cut by events into as many equal pieces as their estimated size needs (numbers and codes
    as the bytes they are, ids and the dictionary as their characters); :func:`_encoded_run` makes sure."""
    frame = rows.frame
    ids = rows.request_ids
    sample = ids[::max(1, len(ids) // 64)]  # the ids' length from a sample: a pass over 45,000 cost 1 ms
    estimate = rows.rows * (8 * len(frame.numeric_names) + 4 * len(frame.categorical_names) + 10) + \
        len(ids) * sum(map(len, sample)) // max(1, len(sample))
    pieces = min(rows.events, -(-estimate * 5 // (4 * max_bytes)))  # a fifth of room for what it misses
    if pieces <= 1:
        return [rows]
    return [rows.take(part) for part in np.array_split(np.arange(rows.events), pieces)]


def _encoded_run(rows: Rows, codec: EventCodec, max_bytes: int) -> list[bytes]:
    """The rows as one Prediction event, or, when that comes out larger than ``max_bytes``, its halves (by
    events, each split again while too large): the size is exact. A single event is never split (it came
    in as one message)."""
    value = _run_value(rows, codec)
    if len(value) <= max_bytes or rows.events == 1:
        return [value]
    half = rows.events // 2
    return [*_encoded_run(rows.take(np.arange(half)), codec, max_bytes),
            *_encoded_run(rows.take(np.arange(half, rows.events)), codec, max_bytes)]


# A Columns block of no feature (names, values, nulls, mismatches, levels, codes: each empty)
NO_COLUMNS = b"\x00" * 9


def _run_value(rows: Rows, codec: EventCodec) -> bytes:
    """The rows as one Prediction event. Rows without features (a model whose decay stage reads none) are
    written directly, ids in one join (:func:`~schemas.compiled.avro_strings`): through the general encoder,
    a batch's 45,000 ids cost 0.17 µs a row, as much as forwarding everything as it came."""
    frame = rows.frame
    if frame.numeric_names or frame.categorical_names:
        return codec.encode(PREDICTION, _run_record(rows))
    assert rows.scores is not None and rows.classed is not None and rows.classes is not None
    classes = rows.classes if bool(rows.classed[0]) else None
    return codec.header(PREDICTION) + predictions_body(
        rows.models[0], rows.versions[0], int(rows.times.max()), rows.request_ids, NO_COLUMNS,
        np.ascontiguousarray(rows.scores, dtype="<f8").tobytes(), classes, rows.segments[0])  # type: ignore[arg-type]


def _run_record(rows: Rows) -> dict[str, Any]:
    """One Prediction event holding every row of ``rows`` (one model, version and window)."""
    assert rows.scores is not None and rows.classed is not None and rows.classes is not None
    return {"model": rows.models[0], "model_version": rows.versions[0], "event_time": int(rows.times.max()),
            "request_ids": rows.request_ids, "segment": rows.segments[0], "columns": rows.frame.to_record(),
            "prediction": np.ascontiguousarray(rows.scores, dtype="<f8").tobytes(),
            "predicted_class": rows.classes if bool(rows.classed[0]) else None}


def label_messages(events: Sequence[Event], window_ms: int, codec: EventCodec,
                   max_bytes: int = MAX_RUN_BYTES) -> tuple[list[tuple[bytes, bytes]], list[Event]]:
    """(key, value) messages for ``monitor.by-model`` of decoded Label events, and the events left out
    as inconsistent (labels that disagree with their request ids: merged, they would break their run)."""
    runs, inconsistent = coalesce(events, window_ms)
    messages = []
    for run in runs:
        key = run.parts[0]["model"].encode()
        messages += [(key, value) for value in _encoded_labels(run.parts, codec, max_bytes)]
    return messages, inconsistent


def _encoded_labels(parts: list[dict[str, Any]], codec: EventCodec, max_bytes: int) -> list[bytes]:
    """A run of label records as one Label event, halved while too large (as :func:`_encoded_run`)."""
    value = codec.encode("driftline.Label", merge_parts("label", parts))
    if len(value) <= max_bytes or len(parts) == 1:
        return [value]
    half = len(parts) // 2
    return [*_encoded_labels(parts[:half], codec, max_bytes), *_encoded_labels(parts[half:], codec, max_bytes)]
