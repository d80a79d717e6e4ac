"""Plain one-row bodies scanned together (schemas.plainscan) read every event as fastavro reads it.

fastavro is the independent reader: every event the scan takes must give,
row for row, what fastavro reads from the same bytes; every event it
leaves must be one the one-at-a-time path reads (or names the fault of).
The bodies are random texts (any Unicode, NUL bytes, up to 70 characters),
times over the whole long range, several layouts, and bodies broken on
purpose (cut short, a byte too many, bad UTF-8).
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Codec, DecodeError
from schemas.rows import FEATURES, PREDICTION, Rows
from tests.unit.test_batch_decode import fastavro_read, framed, one_row

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=70)


def assert_event_is(rows: Rows, k: int, record: dict) -> None:
    """Event ``k`` of ``rows`` (one row each) holds exactly what fastavro read."""
    assert rows.models[k] == record["model"] and rows.times[k] == record["event_time"]
    assert rows.versions[k] == record.get("model_version", "")
    assert rows.request_ids[k] == record["request_ids"][0]
    columns = record["columns"]
    frame = rows.frame
    assert list(frame.numeric_names) == columns["numeric_names"]
    assert frame.numeric[k].tobytes() == columns["numeric_values"]
    assert list(frame.categorical_names) == columns["categorical_names"]
    assert frame.categorical[k].tolist() == columns["categorical_values"]
    if frame.dictionary is not None:
        levels, codes = frame.dictionary
        assert [levels[c] for c in codes[k].tolist()] == columns["categorical_values"]
    if rows.scores is not None:
        assert rows.scores[k:k + 1].tobytes() == record["prediction"]


def broken(value: bytes, how: int) -> bytes:
    if how == 1:
        return value[:-1]  # cut short
    if how == 2:
        return value + b"\x00"  # a byte too many
    if how == 3:
        return value[:-12] + b"\xff" + value[-11:]  # a byte of the numbers or texts changed
    return value


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(texts, texts, st.integers(-2**63, 2**63 - 1), texts, st.integers(0, 2),
                          st.booleans(), st.integers(0, 12)), min_size=1, max_size=40),
       st.lists(texts, min_size=1, max_size=4), st.integers(0, 2**32))
def test_every_event_the_scan_takes_reads_as_fastavro_reads_it(items: list, plans: list[str], seed: int) -> None:
    codec = Codec(Codec.default()._current)  # a fresh reader: nothing learnt yet
    rng = random.Random(seed)
    values = []
    for model, version, event_time, request_id, layout, features, how in items:
        record = one_row(rng, layout, model, version, event_time, request_id, plans)
        name = PREDICTION
        if features:
            name = FEATURES
            record = {k: record[k] for k in ("model", "event_time", "request_ids", "segment", "columns")}
        values.append(broken(framed(codec, name, record), how))
    for value in values[:3]:  # read alone first: the reader learns the layouts it then scans for
        with contextlib.suppress(DecodeError):
            codec.decode(value)
    taken: set[int] = set()
    for schema, indices, rows in codec.decode_rows(values):
        assert indices == sorted(indices) and rows.events == len(indices)
        assert not taken & set(indices)
        taken |= set(indices)
        for k, i in enumerate(indices):
            assert codec.writer_name(values[i]) == schema
            assert_event_is(rows, k, fastavro_read(codec, schema, values[i]))
    for i, value in enumerate(values):
        if i in taken:
            continue
        try:  # left to be read alone: it reads so, or it is refused with a reason
            name, record = codec.decode_named(value)
        except DecodeError:
            continue
        assert record == fastavro_read(codec, name, value)


def test_the_common_batch_is_taken_whole_and_texts_that_padding_would_hide_are_left() -> None:
    codec = Codec(Codec.default()._current)
    rng = random.Random(4)
    plans = [f"plan-{k}" for k in range(30)] + ["", "ü" * 20, "x" * 63]  # many levels, empty, non-ASCII, longest
    records = [one_row(rng, 2, f"m{k % 3}", "v1", k * 7919 - 10**6, f"id-{k}", plans) for k in range(700)]
    records[5]["request_ids"] = ["ends-in-nul\x00"]  # S-padding would drop it: read alone
    records[6]["request_ids"] = [""]
    records[7]["model"] = "m\x00"  # a NUL inside a distinct text is kept
    values = [framed(codec, PREDICTION, r) for r in records]
    codec.decode(values[0])
    [(schema, indices, rows)] = codec.decode_rows(values)
    assert schema == PREDICTION and indices == [i for i in range(700) if i != 5]
    for k, i in enumerate(indices):
        assert_event_is(rows, k, records[i])
    assert codec.decode_named(values[5]) == (PREDICTION, records[5])
    assert len(set(rows.frame.categorical.ravel().tolist())) > 20


def test_colliding_hashes_still_give_exact_distinct_texts() -> None:
    """The fallback when two texts share a hash: forced here by zero weights."""
    from schemas import plainscan

    saved = plainscan._WEIGHTS.copy()
    plainscan._WEIGHTS[:] = 0
    try:
        test_the_common_batch_is_taken_whole_and_texts_that_padding_would_hide_are_left()
    finally:
        plainscan._WEIGHTS[:] = saved
    assert np.array_equal(plainscan._WEIGHTS, saved)
