"""Events as columns (Rows): decoded from the wire, taken, joined, and windowed by stage 1.

Each is checked against an independent path: the batch decode's records
(themselves checked against fastavro), the FeatureFrame of the records one
by one, and :func:`~streams.drift.summary.summarize` over the rows a direct
numpy reckoning puts in each window.
"""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest

from schemas import Codec, DecodeError, FeatureFrame, Table, encode_columns
from schemas.rows import FEATURES, PREDICTION, Rows, inconsistency
from streams.drift.profile import Profile
from streams.drift.summary import summarize
from streams.drift.windows import PartitionWindows
from tests.unit.test_batch_decode import framed, one_row


def assert_same_rows(got: Rows, want: Rows) -> None:
    assert got.schema == want.schema
    assert (got.models, got.versions, got.segments) == (want.models, want.versions, want.segments)
    assert got.times.tolist() == want.times.tolist() and got.counts.tolist() == want.counts.tolist()
    assert got.request_ids == want.request_ids
    assert got.frame.numeric_names == want.frame.numeric_names
    assert np.array_equal(got.frame.numeric, want.frame.numeric)
    assert got.frame.categorical.tolist() == want.frame.categorical.tolist()
    if want.scores is None:
        assert got.scores is None
    else:
        assert got.scores is not None and np.array_equal(got.scores, want.scores)
        assert got.classes == want.classes


def test_plain_events_decode_to_the_rows_of_their_records() -> None:
    codec = Codec(Codec.default()._current)  # a fresh reader: nothing learnt yet
    rng = random.Random(5)
    records = [one_row(rng, k % 3, f"m{k % 2}", "v1", 1_700_000_000_000 + k, f"id-{k}", ["free", "pro", "ü"])
               for k in range(300)]
    values = [framed(codec, PREDICTION, r) for r in records]
    values.insert(7, codec.encode("driftline.Label", {"model": "m", "event_time": 1, "request_ids": ["r"],
                                                       "labels": [1.0]}))
    values.insert(9, framed(codec, PREDICTION, {**records[0], "segment": "s"}))  # not plain: read alone
    for layout in range(3):
        codec.decode(values[layout])  # the reader learns the layouts it then matches together
    batch = codec.decode_batch(values)
    found = codec.decode_rows(values)
    covered = sorted(i for _, indices, _ in found for i in indices)
    assert covered == [i for i, d in enumerate(batch) if d is not None]
    assert 7 not in covered and 9 not in covered and len(covered) == 300
    assert len(found) == 3  # one per layout
    for schema, indices, rows in found:
        assert indices == sorted(indices)
        assert_same_rows(rows, Rows.from_records(schema, [batch[i][1] for i in indices]))  # type: ignore[index]
    features = [framed(codec, FEATURES, {k: r[k] for k in ("model", "event_time", "request_ids", "segment",
                                                            "columns")}) for r in records]
    for schema, indices, rows in codec.decode_rows(features):
        assert schema == FEATURES and rows.scores is None
        assert_same_rows(rows, Rows.from_records(FEATURES, [codec.decode(features[i]) for i in indices]))


EMPTY_COLUMNS = {"numeric_names": ["x"], "numeric_values": b"", "numeric_nulls": b"", "categorical_names": ["plan"],
                 "categorical_values": [], "categorical_nulls": b"", "mismatched": [], "categorical_levels": [],
                 "categorical_codes": b""}  # an event of no rows (an application's empty batch)


def prediction_records(rng: np.random.Generator, n: int) -> list[dict]:
    out = []
    for k in range(n):
        rows = int(rng.integers(0, 4))
        x = rng.normal(size=rows)
        plans = rng.choice(np.array(["a", "b", "c"], dtype=object), rows).tolist()
        columns = encode_columns({"x": x, "plan": plans}) if rows else EMPTY_COLUMNS
        out.append({"model": f"m{k % 3}", "model_version": str(k % 2), "event_time": int(rng.integers(0, 10**6)),
                    "request_ids": [f"{k}-{i}" for i in range(rows)], "segment": None if k % 4 else "s",
                    "columns": columns, "prediction": rng.random(rows).tobytes(),
                    "predicted_class": [f"k{i}" for i in range(rows)] if k % 5 == 0 else None})
    return out


def test_take_and_concat_keep_each_event_with_its_own_rows() -> None:
    rng = np.random.default_rng(2)
    records = prediction_records(rng, 60)
    rows = Rows.from_records(PREDICTION, records)
    order = rng.permutation(len(records))
    assert_same_rows(rows.take(order), Rows.from_records(PREDICTION, [records[i] for i in order.tolist()]))
    halves = Rows.concat([Rows.from_records(PREDICTION, records[:25]), Rows.from_records(PREDICTION, records[25:])])
    assert_same_rows(halves, rows)
    for start, stop in ((0, 60), (7, 31), (59, 60), (12, 14)):  # neighbours: taken as slices, not gathered
        assert_same_rows(rows.take(np.arange(start, stop)), Rows.from_records(PREDICTION, records[start:stop]))
    mismatched = {**records[3], "request_ids": ["a", "b"], "prediction": np.zeros(2).tobytes(),
                  "predicted_class": None,
                  "columns": encode_columns({"x": [1.0, 2.0]}) | {"mismatched": [{"name": "x", "row": 1, "value": "?"}]}}
    both = Rows.from_records(PREDICTION, [records[0], mismatched, records[1]])
    assert both.take(np.arange(1, 3)).frame.mismatched == \
        Rows.from_records(PREDICTION, [mismatched, records[1]]).frame.mismatched == [{"name": "x", "row": 1, "value": "?"}]


def test_events_of_several_layouts_keep_their_rows_in_event_order() -> None:
    """Two models (other features) interleaved on one partition: every row stays beside its request id.
    (The frame used to stack each layout's events together, so a row's features belonged to another event.)"""
    records = []
    for k in range(12):
        rows = 1 + k % 3
        columns = encode_columns({"x": [100.0 * k + r for r in range(rows)], "plan": ["a"] * rows}) if k % 2 else \
            encode_columns({"y": [-100.0 * k - r for r in range(rows)]})
        columns["mismatched"] = [{"name": "z", "row": rows - 1, "value": f"{k}"}]
        records.append({"model": f"m{k % 2}", "model_version": "1", "event_time": k, "request_ids":
                        [f"{k}-{r}" for r in range(rows)], "segment": None, "columns": columns,
                        "prediction": np.zeros(rows).tobytes(), "predicted_class": None})
    rows = Rows.from_records(PREDICTION, records)
    x, y = rows.frame.numeric_column("x"), rows.frame.numeric_column("y")
    for i, request_id in enumerate(rows.request_ids):
        k, r = map(int, request_id.split("-"))
        assert (x[i], np.isnan(y[i])) == (100.0 * k + r, True) if k % 2 else (np.isnan(x[i]), y[i]) == (True, -100.0 * k - r)
        assert rows.frame.categorical_null[i, 0] == (k % 2 == 0)
    ends = np.cumsum(rows.counts) - 1
    assert sorted((m["row"], m["value"]) for m in rows.frame.mismatched) == [(int(ends[k]), f"{k}") for k in range(12)]


def test_an_event_whose_arrays_disagree_with_its_ids_is_named() -> None:
    rng = np.random.default_rng(3)
    good = prediction_records(rng, 5)[1]
    good = {**good, "request_ids": ["a", "b"], "columns": encode_columns({"x": [1.0, 2.0]}),
            "prediction": np.zeros(2).tobytes()}
    assert inconsistency(PREDICTION, good) is None
    cases = {"scores do not match": {**good, "prediction": b"\x00" * 8},
             "classes do not match": {**good, "predicted_class": ["k"]},
             "numeric block has 16 bytes, 24 expected": {**good, "request_ids": ["a", "b", "c"],
                                                          "prediction": np.zeros(3).tobytes()}}
    for reason, record in cases.items():
        assert reason in (inconsistency(PREDICTION, record) or "")
        with pytest.raises(DecodeError):
            Rows.from_records(PREDICTION, [good, record])


@pytest.mark.parametrize("alone_from", [20_000, 20])
def test_stage_one_windows_equal_a_direct_summary_of_each_windows_on_time_rows(alone_from, monkeypatch) -> None:
    """Late rows decided by each partition's own running watermark, the rest of every partition summarised
    together per model and window (or, from ``alone_from`` rows, a partition's piece alone): the deltas of
    two batches merged equal summarize() over the rows numpy picks directly."""
    import streams.drift.windows

    monkeypatch.setattr(streams.drift.windows, "SUMMARISED_ALONE_ROWS", alone_from)
    rng = np.random.default_rng(11)
    window_ms, grace_ms = 1_000, 200
    reference = {"x": rng.normal(size=2000), "plan": rng.choice(np.array(["a", "b", "c"], dtype=object), 2000)}
    profiles = {m: Profile.build(Table(reference, {"x": "float", "plan": "string"}), m) for m in ("m0", "m1")}
    records = prediction_records(rng, 600)
    partition_of = rng.integers(0, 2, len(records))
    for k, record in enumerate(records):  # mostly ascending, some far behind (late), partition 1 behind 0
        record["event_time"] = k * 20 - (3_000 if k % 17 == 0 else 0) - 600 * int(partition_of[k]) + \
            int(rng.integers(0, 50))
    windows = PartitionWindows(window_ms, grace_ms)
    deltas = {}
    late_rows = 0
    alone = 0  # deltas of one partition's large piece
    for part in (slice(0, 250), slice(250, None)):
        batch = []
        for p in (0, 1):
            mine = [records[k] for k in range(len(records))[part] if partition_of[k] == p]
            batch.append((("predictions", p), Rows.from_records(PREDICTION, mine), 0))
        result = windows.process_batch(batch, profiles)
        late_rows += result.late_rows
        per_window = collections.Counter((d.model, d.window_start) for d in result.deltas)
        if alone_from > len(records):
            assert set(per_window.values()) == {1}, "one per window"
        else:
            alone += sum(d.partition in (0, 1) and d.rows >= alone_from for d in result.deltas)
            assert max(per_window.values()) <= 3, "at most each partition alone and the small ones together"
        for delta in result.deltas:
            key = (delta.model, delta.window_start)
            deltas[key] = deltas[key].merge(delta) if key in deltas else delta
    assert alone or alone_from > len(records), "some piece was large enough to be summarised alone"
    times = np.array([r["event_time"] for r in records])
    late = np.zeros(len(records), dtype=bool)
    starts = times // window_ms * window_ms
    for p in (0, 1):
        mine = np.flatnonzero(partition_of == p)
        before = np.maximum.accumulate(np.concatenate([[np.iinfo(np.int64).min], times[mine]]))[:-1]
        late[mine] = starts[mine] + window_ms + grace_ms <= before
    counts = np.array([len(r["request_ids"]) for r in records])
    assert late_rows == int(counts[late].sum()) > 0
    expected = {}
    for k, record in enumerate(records):
        if not late[k] and record["model"] in profiles and counts[k]:
            expected.setdefault((record["model"], int(starts[k])), []).append(k)
    assert set(deltas) == set(expected)
    for (model, start), picked in expected.items():
        frame = FeatureFrame.concat(FeatureFrame.from_record(records[k]["columns"], int(counts[k])) for k in picked)
        want = summarize(frame, profiles[model], start, start + window_ms)
        got = deltas[(model, start)]
        assert got.rows == want.rows
        for name, w in want.features.items():
            g = got.features[name]
            assert (g.count, g.nulls) == (w.count, w.nulls)
            if w.kind == "numeric":
                assert np.array_equal(g.histogram, w.histogram)
                assert g.mean == pytest.approx(w.mean, rel=1e-9, abs=1e-12)
            else:
                assert g.categories == w.categories


def test_a_frame_keeps_its_categories_as_codes_and_every_use_agrees_with_the_texts() -> None:
    """Frames carry the wire's (levels, codes) through decode, take and concat; summaries counted from the
    codes and blocks written from them equal those of the same frame with only its texts."""
    import dataclasses

    rng = np.random.default_rng(21)
    plans = np.array(["free", "pro", "ünï", "", "free"], dtype=object)  # a repeated level, an empty text
    sizes = (40, 25, 30)
    coded = [encode_columns({"x": rng.normal(size=n), "plan": rng.choice(plans, n).tolist(),
                             "tier": rng.choice(plans[:2], n).tolist()}) for n in sizes]
    assert all(c["categorical_codes"] for c in coded)
    frames = [FeatureFrame.from_record(c, n) for c, n in zip(coded, sizes, strict=True)]
    stacked = FeatureFrame.from_records(list(zip(coded, sizes, strict=True)))
    joined = FeatureFrame.concat(frames)
    picked = joined.take(rng.permutation(joined.rows)[:50])
    codec = Codec(Codec.default()._current)
    plain = [framed(codec, PREDICTION, one_row(random.Random(k), 2, "m", "1", k, f"r{k}", ["a", "b", "ç"]))
             for k in range(60)]
    codec.decode(plain[0])
    [(_, _, from_wire)] = codec.decode_rows(plain)
    for frame in (*frames, stacked, joined, picked, from_wire.frame):
        assert frame.dictionary is not None
        levels, codes = frame.dictionary
        assert np.array(levels, dtype=object)[codes].tolist() == frame.categorical.tolist()
        texts_only = dataclasses.replace(frame, dictionary=None)
        again = FeatureFrame.from_record(frame.to_record(), frame.rows)
        assert again.categorical.tolist() == frame.categorical.tolist()
        assert frame.to_record()["categorical_levels"] == texts_only.to_record()["categorical_levels"]
        reference = {"x": rng.normal(size=500), **{n: rng.choice(plans, 500) for n in frame.categorical_names}}
        types = {"x": "float", **{n: "string" for n in frame.categorical_names}}
        if "x" not in frame.numeric_names:
            continue
        profile = Profile.build(Table(reference, types), "m")
        with_codes, with_texts = summarize(frame, profile, 0, 1), summarize(texts_only, profile, 0, 1)
        for name in frame.categorical_names:
            got, want = with_codes.features[name], with_texts.features[name]
            assert (got.count, got.nulls, got.categories, got.unseen, got.skew) == \
                (want.count, want.nulls, want.categories, want.unseen, want.skew)
    mixed = FeatureFrame.concat([frames[0], dataclasses.replace(frames[1], dictionary=None)])
    assert mixed.dictionary is None  # texts only on one side: no codes claimed
