"""The compiled Prediction/Features reader and the one-row writer agree with fastavro, byte for byte.

fastavro is the independent implementation here: every body the compiled
writer makes must equal fastavro's encoding of the same record, and every
body fastavro writes must read back through the compiled reader as the
record fastavro itself reads. Odd bodies (other writers' blocked arrays,
truncation, trailing bytes, bad UTF-8) must fall back to fastavro, whose
errors they keep.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Codec, DecodeError, encode_rows
from schemas import encode_columns as encode_rows_columns
from schemas.codec import HEADER_LEN
from schemas.compiled import (
    BodyReader,
    RowWriter,
    avro_string,
    avro_strings,
    features_body,
    native_body,
    plain_columns,
    prediction_body,
    predictions_body,
)
from schemas.featurespec import FeatureSpec
from tests.native import built

CODEC = Codec.default()
PREDICTION = CODEC.schema("driftline.Prediction")
FEATURES = CODEC.schema("driftline.Features")

names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
numbers = st.one_of(st.floats(allow_nan=False), st.integers(-2**53, 2**53))
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)
values = st.one_of(numbers, texts, st.none(), st.booleans(), st.lists(st.integers(), max_size=2))


def fastavro_body(schema: dict, record: dict) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, schema, record)
    return out.getvalue()


def fastavro_read(schema: dict, body: bytes) -> dict:
    return schemaless_reader(io.BytesIO(body), schema, None)


@st.composite
def prediction_records(draw: st.DrawFn) -> dict:
    rows = draw(st.integers(1, 4))
    keys = draw(st.lists(names, min_size=0, max_size=6, unique=True))
    table = [{k: draw(values) for k in keys if draw(st.booleans()) or rows == 1} for _ in range(rows)]
    if not any(table):
        table[0]["x"] = 1.0
    classes = draw(st.one_of(st.none(), st.lists(texts, min_size=rows, max_size=rows)))
    return {"model": draw(names), "model_version": draw(texts), "event_time": draw(st.integers(-2**63, 2**63 - 1)),
            "request_ids": draw(st.lists(texts, min_size=rows, max_size=rows)),
            "segment": draw(st.one_of(st.none(), texts)), "columns": encode_rows(table),
            "prediction": np.asarray(draw(st.lists(st.floats(), min_size=rows, max_size=rows)), "<f8").tobytes(),
            "predicted_class": classes}


def readers() -> list[bool]:
    """The Python reader, and the C one (:mod:`schemas._bodies`) where it is built (:mod:`tests.native`)."""
    return [False, True] if built(native_body, "schemas._bodies") else [False]


@pytest.mark.parametrize("native", readers())
@settings(max_examples=150, deadline=None)
@given(record=prediction_records())
def test_compiled_reader_reads_what_fastavro_wrote(native: bool, record: dict) -> None:
    reader = BodyReader(native=native)
    body = fastavro_body(PREDICTION, record)
    for _ in range(2):  # the second read goes through the remembered layouts
        assert reader.prediction(body, 0) == fastavro_read(PREDICTION, body)
    features = {k: record[k] for k in ("model", "event_time", "request_ids", "segment", "columns")}
    body = fastavro_body(FEATURES, features)
    assert reader.features(body, 0) == fastavro_read(FEATURES, body) == features


@st.composite
def plain_rows(draw: st.DrawFn) -> dict:
    keys = draw(st.lists(names, min_size=0, max_size=8, unique=True))
    return {k: draw(st.one_of(st.floats(), st.integers(-2**60, 2**60), texts)) for k in keys}


@settings(max_examples=150, deadline=None)
@given(plain_rows(), st.integers(-2**63, 2**63 - 1), texts, st.one_of(st.none(), texts), st.floats())
def test_one_row_writer_matches_fastavro_byte_for_byte(row: dict, event_time: int, request_id: str,
                                                        segment: str | None, score: float) -> None:
    writer = RowWriter()
    columns = writer.columns(row)
    assert columns is not None, "a plain row takes the compiled path"
    assert writer.columns(row) == columns  # the remembered shape writes the same bytes
    head = avro_string("m") + avro_string("")  # model, model_version
    record = {"model": "m", "model_version": "", "event_time": event_time, "request_ids": [request_id],
              "segment": segment, "columns": encode_rows([row]),
              "prediction": np.float64(score).tobytes(), "predicted_class": None}
    assert prediction_body(head, event_time, request_id, segment, columns, score) == fastavro_body(PREDICTION, record)
    features = {k: record[k] for k in ("model", "event_time", "request_ids", "segment", "columns")}
    assert features_body(avro_string("m"), event_time, request_id, segment, columns) == fastavro_body(FEATURES, features)


@pytest.mark.parametrize("row", [
    {"age": None, "plan": "pro"},  # a null
    {"age": True, "plan": "pro"},  # a bool is a category, not a number
    {"age": np.float32(1.5), "plan": "pro"},  # a numpy scalar
    {"age": 2**1100, "plan": "pro"},  # beyond float64
    {"age": [1, 2], "plan": "pro"},  # no block carries a list
])
def test_rows_the_compiled_writer_leaves_to_the_general_path(row: dict) -> None:
    writer = RowWriter()
    assert writer.columns({"age": 30.0, "plan": "pro"}) is not None
    assert writer.columns(row) is None


def test_spec_decides_the_blocks_and_a_misfit_goes_the_general_way() -> None:
    spec = FeatureSpec.from_dict({"model": "m", "features": [{"name": "zip", "type": "string"}, {"name": "age", "type": "int"}]})
    writer = RowWriter(spec)
    row = {"age": 30, "zip": "10115"}
    columns = writer.columns(row)
    record = {"model": "m", "event_time": 0, "request_ids": ["r"], "segment": None,
              "columns": encode_rows([row], spec)}
    assert features_body(b"\x02m", 0, "r", None, columns) == fastavro_body(FEATURES, record)
    assert writer.columns({"age": "30", "zip": "10115"}) is None  # a mismatch: the general path records it
    assert writer.columns({"age": 30}) is None  # a spec feature missing: a null


def test_unusual_bodies_fall_back_to_fastavro_and_keep_its_errors() -> None:
    record = {"model": "m", "model_version": "", "event_time": 5, "request_ids": ["a", "b"], "segment": None,
              "columns": encode_rows([{"x": 1.0}, {"x": 2.0}]), "prediction": bytes(16), "predicted_class": None}
    body = fastavro_body(PREDICTION, record)
    reader = BodyReader()
    assert reader.prediction(body, 0) == record
    assert reader.prediction(body + b"\x00", 0) is None  # trailing bytes
    assert reader.prediction(body[:-3], 0) is None  # truncated
    # the request ids as a blocked array (a negative count and a byte size, as other writers may write it)
    blocked = body.replace(b"\x04\x02a\x02b\x00", b"\x03\x08\x02a\x02b\x00")
    assert reader.prediction(blocked, 0) is None
    assert fastavro_read(PREDICTION, blocked)["request_ids"] == ["a", "b"]
    message = CODEC.header("driftline.Prediction") + blocked
    assert CODEC.decode(message, "driftline.Prediction")["request_ids"] == ["a", "b"]  # fastavro read it
    bad_utf8 = CODEC.header("driftline.Prediction") + body.replace(b"\x02a", b"\x02\xff")
    with pytest.raises(DecodeError, match="invalid driftline.Prediction body"):
        CODEC.decode(bad_utf8, "driftline.Prediction")


def test_codec_decodes_through_the_compiled_reader_and_fastavro_alike() -> None:
    record = {"model": "churn", "model_version": "2", "event_time": 1_700_000_000_000, "request_ids": ["r1"],
              "segment": "eu", "columns": encode_rows([{"age": 31.0, "plan": "pro"}]),
              "prediction": np.float64(0.25).tobytes(), "predicted_class": ["yes"]}
    message = CODEC.encode("driftline.Prediction", record)
    assert CODEC.compiled_body("driftline.Prediction", message, HEADER_LEN) == record
    assert CODEC.decode(message, "driftline.Prediction") == fastavro_read(PREDICTION, message[HEADER_LEN:])


@pytest.mark.parametrize("ids", [
    [f"{i:032x}" for i in range(40)],  # one length, ASCII: read at a fixed stride
    [f"{i:02d}\x00" for i in range(40)],  # NUL inside is text like any other
    ["é" + f"{i:02d}" for i in range(40)],  # same byte length, not ASCII: the loop reads them
    [f"{i}" for i in range(40)],  # lengths differ
    ["x" * 63] * 9, [""] * 9,
])
def test_request_id_arrays_read_alike_at_a_stride_or_in_a_loop(ids: list[str]) -> None:
    record = {"model": "m", "model_version": "", "event_time": 5, "request_ids": ids, "segment": None,
              "columns": encode_rows([{"x": 1.0}] * len(ids)), "prediction": bytes(8 * len(ids)),
              "predicted_class": None}
    body = fastavro_body(PREDICTION, record)
    assert BodyReader().prediction(body, 0) == fastavro_read(PREDICTION, body) == record


def test_a_key_set_seen_with_a_null_is_left_to_the_general_path_then_tried_again() -> None:
    writer = RowWriter()
    assert writer.columns({"age": None, "plan": "pro"}) is None
    plain = {"age": 30.0, "plan": "pro"}
    skipped = [writer.columns(plain) for _ in range(64)]
    assert skipped == [None] * 64  # no second encode per row while the key set is suspect
    assert writer.columns(plain) is not None  # then learned again, and remembered
    assert writer.columns(plain) is not None



@st.composite
def column_groups(draw: st.DrawFn) -> tuple[dict, int]:
    rows = draw(st.integers(1, 40))
    keys = draw(st.lists(names, min_size=0, max_size=6, unique=True))
    kinds = [draw(st.sampled_from(["float", "int", "text", "mixed"])) for _ in keys]
    cell = {"float": st.floats(), "int": st.integers(-2**70, 2**70), "text": texts,
            "mixed": st.one_of(st.floats(), texts, st.none(), st.booleans())}
    return {k: draw(st.lists(cell[kind], min_size=rows, max_size=rows)) for k, kind in zip(keys, kinds, strict=True)}, rows


def test_an_int_beyond_float64_is_left_to_the_general_path_which_names_the_feature() -> None:
    """The direct writer steps aside; the general encoders refuse with an EncodeError, not an OverflowError."""
    from schemas import EncodeError

    for column in ([2**1100], [1.5, 2**1100], [3, None, -(2**1100)]):
        assert plain_columns({"age": column}, len(column)) is None
        with pytest.raises(EncodeError, match="'age' does not fit a float64"):
            encode_rows_columns({"age": column})
    with pytest.raises(EncodeError, match="does not fit a float64"):
        encode_rows([{"age": 2**1100}])


@settings(max_examples=200, deadline=None)
@given(column_groups(), st.integers(-2**63, 2**63 - 1), texts, st.booleans())
def test_whole_columns_written_directly_equal_the_general_encoding(group: tuple[dict, int], event_time: int,
                                                                  version: str, with_classes: bool) -> None:
    """A serving node's grouped requests: the direct writer's bytes are fastavro's, or it steps aside."""
    columns, rows = group
    request_ids = [f"id{i}" for i in range(rows)]
    scores = np.linspace(0, 1, rows).astype("<f8").tobytes()
    classes = [str(i % 3) for i in range(rows)] if with_classes else None
    block = plain_columns(columns, rows)
    plain = all(v and (set(map(type, v)) <= {float, int} or set(map(type, v)) == {str}) for v in columns.values())
    fits = all(abs(x) < 2**1023 for v in columns.values() for x in v if type(x) is int)
    assert (block is not None) == (plain and fits and bool(columns))
    if block is None:
        return
    record = {"model": "m", "model_version": version, "event_time": event_time, "request_ids": request_ids,
              "segment": None, "columns": encode_rows_columns(columns), "prediction": scores,
              "predicted_class": classes}
    assert CODEC.header("driftline.Prediction") + predictions_body(
        "m", version, event_time, request_ids, block, scores, classes) == CODEC.encode("driftline.Prediction", record)


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.builds(lambda size, n, alphabet: [("".join(alphabet) * size)[:size] for _ in range(n)],  # one length
              st.integers(0, 70), st.integers(0, 40), st.lists(st.sampled_from("ab\x00é\x48\x7f"), min_size=1)),
    st.lists(st.text(max_size=70), max_size=40),
    st.builds(lambda ids: [*ids, ids[0][:-1]] if ids else ids,  # one shorter than the others
              st.lists(st.text("0123456789abcdef-", min_size=36, max_size=36), min_size=8, max_size=30)),
    # one a character short, the next a character long and starting with the length byte's character ("H"
    # for 36): every stride still lands on that character
    st.builds(lambda ids, at: [*ids[:at], ids[at][:-1], "H" + ids[at + 1], *ids[at + 2:]],
              st.lists(st.text("0123456789abcdef-", min_size=36, max_size=36), min_size=10, max_size=30),
              st.integers(0, 8))))
def test_an_array_of_strings_is_written_as_fastavro_writes_it(texts: list[str]) -> None:
    """``avro_strings`` (the uniform ASCII ids joined with their length byte, or one text at a time) against
    fastavro: one length under and at 64, non-ASCII, NULs, the length byte's own character inside a text."""
    buffer = io.BytesIO()
    schemaless_writer(buffer, {"type": "array", "items": "string"}, texts)
    assert avro_strings(texts) == buffer.getvalue()


def mutants(body: bytes, draw: st.DrawFn) -> bytes:
    """``body`` truncated, extended, or with a few bytes changed, inserted or removed."""
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["set", "insert", "delete", "truncate", "append"]))
        byte = draw(st.sampled_from([0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF, 0xC3, draw(st.integers(0, 255))]))
        if kind == "set" and at < len(data):
            data[at] = byte
        elif kind == "insert":
            data.insert(at, byte)
        elif kind == "delete" and at < len(data):
            del data[at]
        elif kind == "truncate":
            del data[at:]
        else:
            data.append(byte)
    return bytes(data)


@pytest.mark.skipif(not built(native_body, "schemas._bodies"), reason="schemas._bodies is not built")
@settings(max_examples=600, deadline=None)
@given(st.data(), prediction_records(), st.booleans())
def test_the_c_reader_decides_every_body_as_the_python_reader_does(data: st.DataObject, record: dict,
                                                                    prediction: bool) -> None:
    """The same record or the same None (fastavro decides) on broken bodies too: truncated, extended, bytes
    changed (bad UTF-8, lengths and counts past the end, negative counts, a second block, a wrong tag)."""
    assert native_body is not None, "schemas._bodies was not built"
    if not prediction:
        record = {k: record[k] for k in ("model", "event_time", "request_ids", "segment", "columns")}
    body = fastavro_body(PREDICTION if prediction else FEATURES, record)
    python = BodyReader(native=False)
    assert native_body(body, 0, prediction) == python._general(body, 0, prediction) == record
    broken = data.draw(st.builds(lambda _: mutants(body, data.draw), st.none()))
    start = data.draw(st.integers(0, 2))
    assert native_body(broken, start, prediction) == python._general(broken, start, prediction)


@pytest.mark.parametrize("varint", [
    b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # the largest long: read
    b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x03",  # a 65th bit
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00",  # an eleventh byte
])
def test_a_long_past_64_bits_is_left_to_fastavro_by_both_readers(varint: bytes) -> None:
    record = {"model": "m", "event_time": 0, "request_ids": ["a"], "segment": None,
              "columns": encode_rows([{"x": 1.0}])}
    body = fastavro_body(FEATURES, record).replace(b"\x02m\x00", b"\x02m" + varint, 1)
    expected = {**record, "event_time": 2**63 - 1} if varint.endswith(b"\x01") else None
    for native in readers():
        assert BodyReader(native=native).features(body, 0) == expected


def test_a_broken_count_is_a_decode_error_not_an_allocation_of_its_size() -> None:
    """A corrupted array count of 25 billion: the Python reader built a 25-GB bytes to check the items'
    stride (a MemoryError a worker did not catch); now both readers step aside and fastavro refuses it."""
    record = {"model": "m", "model_version": "", "event_time": 5, "request_ids": ["a", "b"], "segment": None,
              "columns": encode_rows([{"x": 1.0}, {"x": 2.0}]), "prediction": bytes(16), "predicted_class": None}
    body = fastavro_body(PREDICTION, record)
    broken = body.replace(b"\x04\x02a\x02b", b"\xaa\x81\x96\xa8\xbd\x01\x02a\x02b", 1)
    for native in readers():
        assert BodyReader(native=native).prediction(broken, 0) is None
    with pytest.raises(DecodeError):
        CODEC.decode(CODEC.header("driftline.Prediction") + broken, "driftline.Prediction")
