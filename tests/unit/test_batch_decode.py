"""A polled batch decoded together reads every event as fastavro does, or leaves it to be read alone.

fastavro is the independent reader: each record the batch decode gives
must equal fastavro's read of the same bytes, and a body it refuses must be
one the one-at-a-time path reads (or names the fault of).
"""

from __future__ import annotations

import io
import random

import numpy as np
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Codec, DecodeError, encode_rows
from schemas.codec import HEADER_LEN

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=70)


def fastavro_read(codec: Codec, name: str, value: bytes) -> dict:
    return schemaless_reader(io.BytesIO(value[HEADER_LEN:]), codec.schema(name), None)


def framed(codec: Codec, name: str, record: dict) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, codec.schema(name), record)
    return codec.header(name) + out.getvalue()


def one_row(rng: random.Random, layout: int, model: str, version: str, event_time: int, request_id: str,
            plans: list[str]) -> dict:
    row = {**{f"n{layout}_{i}": rng.gauss(0, 1) for i in range(3 + layout)},
           **{f"c{i}": rng.choice(plans) for i in range(layout)}}
    return {"model": model, "model_version": version, "event_time": event_time, "request_ids": [request_id],
            "segment": None, "columns": encode_rows([row]), "prediction": np.float64(rng.random()).tobytes(),
            "predicted_class": None}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(texts, texts, st.integers(-2**63, 2**63 - 1), texts, st.integers(0, 2),
                          st.sampled_from(["plain", "features", "two_rows", "segment", "class"])),
                min_size=1, max_size=40),
       st.lists(texts, min_size=1, max_size=4), st.integers(0, 2**32))
def test_every_event_of_a_batch_reads_as_fastavro_reads_it(items: list, plans: list[str], seed: int) -> None:
    codec = Codec(Codec.default()._current)  # a fresh reader: nothing learnt yet
    rng = random.Random(seed)
    values, names = [], []
    for model, version, event_time, request_id, layout, kind in items:
        record = one_row(rng, layout, model, version, event_time, request_id, plans)
        if kind == "two_rows":
            record.update(request_ids=[request_id, "b"], prediction=record["prediction"] * 2,
                          columns=encode_rows([{"x": 1.0}, {"x": 2.0}]))
        elif kind == "segment":
            record["segment"] = request_id
        elif kind == "class":
            record["predicted_class"] = [version]
        name = "driftline.Prediction"
        if kind == "features":
            name = "driftline.Features"
            record = {k: record[k] for k in ("model", "event_time", "request_ids", "segment", "columns")}
        values.append(framed(codec, name, record))
        names.append(name)
    for value in values[:3]:  # read alone first: the reader learns the layouts it then matches in batches
        codec.decode(value)
    decoded = codec.decode_batch(values)
    assert len(decoded) == len(values)
    for value, name, got in zip(values, names, decoded, strict=True):
        if got is not None:
            assert got == (name, fastavro_read(codec, name, value))
        else:
            assert codec.decode_named(value) == (name, fastavro_read(codec, name, value))


def test_a_batch_of_one_layout_is_decoded_together_and_exactly() -> None:
    """The common case must really take the batch path (else the test above proves nothing about it)."""
    codec = Codec(Codec.default()._current)
    rng = random.Random(1)
    records = [one_row(rng, 2, "churn", "v3", 1_700_000_000_000 + rng.randrange(-10**9, 10**9), f"r{i}",
                       ["free", "pro", "ünïcode", ""]) for i in range(500)]
    records += [{**r, "event_time": t} for r, t in zip(records[:6], [0, -1, 1, 2**62 - 1, -2**62, 63], strict=True)]
    values = [framed(codec, "driftline.Prediction", r) for r in records]
    codec.decode(values[0])
    decoded = codec.decode_batch(values)
    assert all(d is not None for d in decoded)
    assert [d[1] for d in decoded if d is not None] == records
    features = [framed(codec, "driftline.Features", {k: r[k] for k in ("model", "event_time", "request_ids",
                                                                        "segment", "columns")}) for r in records]
    assert [d[1] for d in codec.decode_batch(features) if d is not None] == \
        [fastavro_read(codec, "driftline.Features", v) for v in features]


def test_a_reader_that_learnt_nothing_learns_a_batchs_layouts_from_the_batch() -> None:
    """A worker's first batch: nothing learnt, three layouts interleaved and a two-row event first. Each
    layout is learnt from one of its bodies and the batch is taken whole but for the two-row event; a batch
    of more new layouts than one batch may teach leaves the rest to be read alone (and learnt then)."""
    from schemas.batchread import NEW_SHAPES_PER_BATCH

    rng = random.Random(4)
    codec = Codec(Codec.default()._current)
    two_rows = one_row(rng, 0, "m", "v", 1, "pair", ["a"])
    two_rows["columns"] = encode_rows([{"n0_0": 1.0, "n0_1": 2.0, "n0_2": 3.0}] * 2)
    two_rows["request_ids"], two_rows["prediction"] = ["p1", "p2"], np.zeros(2).tobytes()
    records = [two_rows] + [one_row(rng, i % 3, "m", "v", i, f"r{i}", ["a", "b"]) for i in range(300)]
    decoded = codec.decode_batch([framed(codec, "driftline.Prediction", r) for r in records])
    assert decoded[0] is None, "the two-row event is read alone"
    assert [d[1] for d in decoded[1:] if d is not None] == records[1:]

    fresh = Codec(Codec.default()._current)
    layouts = NEW_SHAPES_PER_BATCH + 2
    many = [one_row(rng, i % layouts, "m", "v", i, f"r{i}", ["a"]) for i in range(10 * layouts)]
    decoded = fresh.decode_batch([framed(fresh, "driftline.Prediction", r) for r in many])
    learnt = {len(r["columns"]["numeric_names"]) for r, d in zip(many, decoded, strict=True) if d is not None}
    assert len(learnt) == NEW_SHAPES_PER_BATCH, "the first layouts are learnt and scanned, the rest left"
    assert all(d is None or d[1] == r for r, d in zip(many, decoded, strict=True))


def test_bad_text_and_other_kinds_are_left_to_be_read_alone() -> None:
    codec = Codec(Codec.default()._current)
    rng = random.Random(2)
    good = framed(codec, "driftline.Prediction", one_row(rng, 1, "m", "", 5, "r", ["abc"]))
    codec.decode(good)
    broken = good.replace(b"\x06abc", b"\x06a\xffc")  # invalid UTF-8 in the category text
    assert broken != good
    label = codec.encode("driftline.Label", {"model": "m", "event_time": 1, "request_ids": ["r"],
                                             "labels": [1.0]})
    got = codec.decode_batch([good, broken, label, b"", good[:-1]])
    assert got[0] is not None and got[1:] == [None, None, None, None]
    for bad in (broken, good[:-1]):
        try:
            codec.decode_named(bad)
        except DecodeError:
            continue
        raise AssertionError("a broken body decoded")
    # the same bad text among good ones: only the bad body is left to be read alone
    mixed = codec.decode_batch([good, broken, good])
    assert mixed[1] is None
    assert mixed[0] == mixed[2] == ("driftline.Prediction", fastavro_read(codec, "driftline.Prediction", good))


def test_the_longest_plain_body_of_a_layout_is_scanned_and_longer_bodies_are_not_joined() -> None:
    """The scan's buffer leaves out bodies longer than any plain one-row body of a known layout (batch events:
    copying them cost a fifth of a worker's time on 100-row events). The bound must hold for the longest
    plain body there is: every text at 63 bytes, a nine-byte time."""
    from schemas.codec import HEADER_LEN
    from schemas.plainscan import Joined

    rng = random.Random(5)
    codec = Codec(Codec.default()._current)
    longest = one_row(rng, 2, "m" * 63, "v" * 63, -2**62, "r" * 63, ["c" * 63])
    value = framed(codec, "driftline.Prediction", longest)
    codec.decode(value)  # learnt
    limit = codec._batch.max_plain_bytes()
    assert len(value) == HEADER_LEN + limit, "the bound is the longest plain body, exactly"
    batch = [one_row(rng, 0, "m", "v", i, f"r{i}", ["a"]) for i in range(2)]
    batch[1]["columns"] = encode_rows([{"n0_0": 1.0, "n0_1": 2.0, "n0_2": 3.0}] * 40)
    batch[1]["request_ids"], batch[1]["prediction"] = [f"p{i}" for i in range(40)], np.zeros(40).tobytes()
    values = [value, *(framed(codec, "driftline.Prediction", r) for r in batch)]
    codec.decode(values[1])
    decoded = codec.decode_batch(values)
    assert decoded[0] == ("driftline.Prediction", longest) and decoded[1] is not None and decoded[2] is None
    joined = Joined(values, limit=HEADER_LEN + codec._batch.max_plain_bytes())
    assert joined.lengths.tolist() == [len(values[0]), len(values[1]), 0]
    assert joined.buffer.size == len(values[0]) + len(values[1]) + 64, "the 40-row body is not copied"
    assert codec.decode_named(values[2]) == ("driftline.Prediction", fastavro_read(codec, "driftline.Prediction",
                                                                                   values[2]))
