"""Rows <-> columnar block <-> numpy frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    DecodeError,
    EncodeError,
    FeatureDef,
    FeatureFrame,
    FeatureSpec,
    encode_columns,
    encode_rows,
)
from schemas.columns import pack_mask, unique_texts, unpack_mask


def frame_of(rows, spec=None) -> FeatureFrame:
    return FeatureFrame.from_record(encode_rows(rows, spec), len(rows))


def test_numbers_and_text_land_in_their_blocks():
    frame = frame_of([{"age": 42, "plan": "pro", "vip": True}])
    assert frame.numeric_names == ("age",)
    assert frame.categorical_names == ("plan", "vip")
    assert frame.numeric[0, 0] == 42.0
    assert frame.categorical[0].tolist() == ["pro", "true"]


def test_none_is_a_null_and_nan_is_a_value():
    frame = frame_of([{"x": None}, {"x": math.nan}, {"x": 1.5}])
    assert frame.numeric_null[:, 0].tolist() == [True, False, False]
    assert math.isnan(frame.numeric[1, 0]) and frame.numeric[2, 0] == 1.5


def test_feature_absent_from_a_row_is_null_in_that_row():
    frame = frame_of([{"a": 1.0, "b": "x"}, {"a": 2.0}])
    assert frame.categorical_null[:, 0].tolist() == [False, True]


def test_value_of_the_wrong_type_for_the_spec_is_kept_as_mismatched():
    spec = FeatureSpec("m", (FeatureDef("age", "int"), FeatureDef("plan", "string")))
    frame = frame_of([{"age": "42", "plan": 7}], spec)
    kept = {(m["name"], m["type"], m["text"]) for m in frame.mismatched}
    assert kept == {("age", "str", "'42'"), ("plan", "int", "7")}
    assert frame.numeric_null[0, 0] and frame.categorical_null[0, 0]


def test_unsupported_value_types_are_mismatched_not_dropped():
    frame = frame_of([{"a": 1.0, "tags": ["x", "y"]}])
    assert frame.mismatched == [{"row": 0, "name": "tags", "type": "list", "text": "['x', 'y']"}]


def test_numpy_columns_take_the_fast_path_unchanged():
    values = np.random.default_rng(0).normal(size=(1000,))
    record = encode_columns({"x": values, "plan": ["a"] * 1000})
    frame = FeatureFrame.from_record(record, 1000)
    np.testing.assert_array_equal(frame.numeric_column("x"), values)


def test_columns_of_different_lengths_are_refused():
    with pytest.raises(EncodeError, match="different lengths"):
        encode_columns({"a": [1, 2], "b": [1]})


def test_empty_events_are_refused():
    with pytest.raises(EncodeError, match="at least one row"):
        encode_rows([])


def test_block_of_the_wrong_size_is_a_decode_error():
    record = encode_rows([{"a": 1.0}, {"a": 2.0}])
    with pytest.raises(DecodeError, match="numeric block has 16 bytes, 24 expected"):
        FeatureFrame.from_record(record, 3)


def test_duplicate_names_across_blocks_are_a_decode_error():
    record = encode_rows([{"a": 1.0, "b": "x"}])
    record["categorical_names"] = ["a"]
    with pytest.raises(DecodeError, match="duplicate feature names"):
        FeatureFrame.from_record(record, 1)


def test_concat_aligns_features_by_name():
    left = frame_of([{"a": 1.0, "c": "x"}])
    right = frame_of([{"b": 2.0, "a": 3.0}])
    both = FeatureFrame.concat([left, right])
    assert both.numeric_names == ("a", "b")
    np.testing.assert_array_equal(both.numeric_null, [[False, True], [False, False]])
    assert both.categorical_null[:, 0].tolist() == [False, True]


@given(st.lists(st.booleans(), min_size=1, max_size=200), st.integers(1, 7))
def test_null_bitmap_round_trips(bits, width):
    mask = np.resize(np.array(bits), (len(bits), width))
    np.testing.assert_array_equal(unpack_mask(pack_mask(mask), len(bits), width), mask)


row_values = st.one_of(
    st.none(), st.floats(allow_nan=False, allow_infinity=False, width=64), st.text(max_size=5)
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.fixed_dictionaries({}, optional={"a": st.floats(allow_nan=False), "b": st.text(max_size=4),
                                                     "c": st.integers(-10**9, 10**9)}),
                min_size=1, max_size=30))
def test_rows_round_trip_through_the_wire_form(rows):
    frame = frame_of(rows)
    back = frame.to_rows()
    assert len(back) == len(rows)
    for original, decoded in zip(rows, back, strict=True):
        assert decoded == {k: (float(v) if isinstance(v, int) else v) for k, v in original.items()}


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.lists(st.sampled_from(["free", "pro", "team", "", "é"]), min_size=1, max_size=400),
       st.floats(0, 1))
def test_batch_categories_travel_as_codes_and_decode_to_the_same_texts(rows, pool, null_share):
    rng = np.random.default_rng(rows)
    texts = {name: [pool[0]] + [pool[k] if rng.random() >= null_share else None  # first a text: a category column
                                for k in rng.integers(0, len(pool), rows - 1)]
             for name in ("plan", "region")}
    columns = encode_columns({**texts, "x": rng.normal(size=rows)})
    assert bool(columns["categorical_codes"]) == (rows >= 16)
    assert (columns["categorical_values"] == []) == (rows >= 16)
    frame = FeatureFrame.from_record(columns, rows)
    for j, name in enumerate(frame.categorical_names):  # independent: the texts as sent, None as a null
        sent = texts[name]
        assert frame.categorical_null[:, j].tolist() == [v is None for v in sent]
        assert [t for t, v in zip(frame.categorical[:, j].tolist(), sent, strict=True) if v is not None] == \
            [v for v in sent if v is not None]
    again = FeatureFrame.from_record(frame.to_record(), rows)  # the frame back to the wire form: the same frame
    assert again.categorical.tolist() == frame.categorical.tolist()
    assert again.categorical_null.tolist() == frame.categorical_null.tolist()
    assert np.array_equal(again.numeric, frame.numeric, equal_nan=True)


def test_codes_that_do_not_fit_their_levels_are_decode_errors():
    columns = encode_columns({"plan": ["a", "b"] * 10})
    with pytest.raises(DecodeError, match="levels"):
        FeatureFrame.from_record({**columns, "categorical_levels": ["a"]}, 20)
    with pytest.raises(DecodeError, match="codes have"):
        FeatureFrame.from_record(columns, 19)
    with pytest.raises(DecodeError, match="both values and codes"):
        FeatureFrame.from_record({**columns, "categorical_values": ["a"] * 20}, 20)


def test_events_stacked_together_check_each_code_against_its_own_events_levels():
    """Batch events' dictionaries are joined for the whole batch at once. A code past its own event's levels
    would still fall inside the joined levels (the next event's): it must be refused, and the event named."""
    good = encode_columns({"plan": ["a", "b"] * 10})
    bad = {**good, "categorical_levels": ["a"]}  # its code 1 ("b") has no level of its own
    wider = encode_columns({"plan": ["c", "d", "e", "f"] * 5})
    stacked = FeatureFrame.from_records([(good, 20), (wider, 20)])
    assert stacked.texts is None  # the texts are built from the dictionary when read, and views keep them so
    picked = stacked.take(np.array([39, 0, 25]))
    assert picked.texts is None and stacked.span(18, 22).texts is None
    assert picked.categorical[:, 0].tolist() == ["f", "a", "d"]
    assert stacked.span(18, 22).categorical[:, 0].tolist() == ["a", "b", "c", "d"]
    assert stacked.categorical[:, 0].tolist() == ["a", "b"] * 10 + ["c", "d", "e", "f"] * 5
    levels, codes = stacked.dictionary
    assert np.array(levels, dtype=object)[codes].tolist() == stacked.categorical.tolist()
    again = FeatureFrame.from_records([(good, 20), (wider, 20), (good, 20)])  # "a" and "b" twice, counted once
    assert sorted(again.dictionary[0]) == ["a", "b", "c", "d", "e", "f"]
    assert np.array(again.dictionary[0], dtype=object)[again.dictionary[1]].tolist() == again.categorical.tolist()
    assert FeatureFrame.concat([stacked, again]).dictionary[0] == again.dictionary[0]
    with pytest.raises(DecodeError, match="a categorical code is 1; there are 1 levels"):
        FeatureFrame.from_records([(good, 20), (bad, 20), (wider, 20)])
    with pytest.raises(DecodeError, match="codes have"):
        FeatureFrame.from_records([(good, 20), (good, 19), (wider, 20)])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 30), st.booleans()), min_size=1, max_size=6),
       st.lists(st.sampled_from(["a", "b\x00", "é", "", "zz"]), min_size=1, max_size=5))
def test_many_records_as_one_block_hold_the_rows_of_their_parts_in_order(parts, pool):
    """What stage 1 forwards: records of rows and of columns stacked (Rows), written back as one block."""
    from schemas.rows import FEATURES, Rows

    rng = np.random.default_rng(len(parts))
    items, expected_text, expected_x = [], [], []
    for rows, as_columns in parts:
        texts = [pool[k] for k in rng.integers(0, len(pool), rows)]
        x = rng.normal(size=rows)
        columns = encode_columns({"x": x, "plan": texts}) if as_columns else \
            encode_rows([{"x": float(v), "plan": t} for v, t in zip(x, texts, strict=True)])
        items.append((columns, rows))
        expected_text += texts
        expected_x += x.tolist()
    total = sum(r for _, r in items)
    records = [{"model": "m", "event_time": 0, "request_ids": [str(i) for i in range(rows)], "segment": None,
                "columns": columns} for columns, rows in items]
    frame = FeatureFrame.from_record(Rows.from_records(FEATURES, records).frame.to_record(), total)
    assert frame.categorical[:, 0].tolist() == expected_text  # a trailing NUL kept, order kept
    assert frame.numeric[:, 0].tolist() == expected_x


@given(st.one_of(st.lists(st.text(max_size=6), max_size=60),
                 st.builds(lambda text, n: ["".join(text) for _ in range(n)],  # one text, equal but not identical
                           st.text(max_size=6), st.integers(1, 40))))
def test_unique_texts_equals_numpy_unique(texts: list[str]) -> None:
    distinct, index = unique_texts(texts)
    expected, inverse = np.unique(np.array(texts, dtype=object), return_inverse=True)
    assert distinct == expected.tolist()
    assert index.tolist() == inverse.ravel().tolist()


@pytest.mark.parametrize("events", [1, 2, 37])
def test_events_numbers_stacked_column_major_equal_the_row_major_join(events, monkeypatch):
    """schemas._bodies.column_major (each feature's values contiguous, for the summaries) against the join it
    replaces: the same matrix, events of different row counts; a value of the wrong size is refused and the
    events are read one by one, which names the bad one."""
    import schemas.columns as columns_module
    from schemas.columns import DICTIONARY_ROWS, native_column_major, native_dictionary_codes
    from tests.native import built

    if not built(native_column_major, "schemas._bodies"):
        pytest.skip("schemas._bodies is not built")
    rng = np.random.default_rng(events)
    plans = ["free", "pro", "team", "b\x00", "é"]
    tables = [{"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.integers(0, 9, n).astype(float),
               "plan": rng.choice(plans[:int(rng.integers(1, 6))], n), "zone": rng.choice(plans, n)}
              for n in rng.integers(DICTIONARY_ROWS, 120, events)]  # the categories as dictionaries
    items = [(encode_columns(t), len(t["a"])) for t in tables]
    native = FeatureFrame.from_records(items)
    monkeypatch.setattr(columns_module, "native_column_major", None)
    monkeypatch.setattr(columns_module, "native_dictionary_codes", None)
    joined = FeatureFrame.from_records(items)
    assert native.numeric.shape == joined.numeric.shape
    assert (native.numeric.strides[0] == 8) == (events > 1)  # one event is read as it is
    assert np.array_equal(native.numeric, joined.numeric)
    texts = np.column_stack([np.concatenate([t[k] for t in tables]).astype(object) for k in ("plan", "zone")])
    for frame in native, joined:  # the codes into the joined levels: each event's own texts
        levels, codes = frame.dictionary
        assert np.array(levels, dtype=object)[codes].tolist() == frame.categorical.tolist() == texts.tolist()
    assert native.dictionary[0] == joined.dictionary[0] and np.array_equal(native.dictionary[1], joined.dictionary[1])
    assert np.array_equal(native.numeric, np.column_stack([np.concatenate([t[k] for t in tables]) for k in "abc"]))
    assert native_column_major([b"\0" * 24, b"\0" * 16], 3, 2) is None  # 16 bytes: not a row of three
    assert native_column_major([b"\0" * 24], 3, 2) is None  # fewer rows than said
    assert native_column_major([bytearray(24)], 3, 1) is None  # not bytes: read one by one
    if events > 1:
        monkeypatch.setattr(columns_module, "native_column_major", native_column_major)
        monkeypatch.setattr(columns_module, "native_dictionary_codes", native_dictionary_codes)
        broken = [({**items[0][0], "numeric_values": items[0][0]["numeric_values"][:-8]}, items[0][1]), *items[1:]]
        with pytest.raises(DecodeError, match="numeric block has"):
            FeatureFrame.from_records(broken)
        levels = items[-1][0]["categorical_levels"]  # a code past its own event's levels
        broken = [*items[:-1], ({**items[-1][0], "categorical_levels": levels[:-1]}, items[-1][1])]
        with pytest.raises(DecodeError, match="a categorical code is"):
            FeatureFrame.from_records(broken)
