"""The Avro codec: single-object encoding, fingerprints, resolution, refusals."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fastavro import parse_schema, schemaless_writer

from schemas import Codec, DecodeError, EncodeError, encode_rows
from schemas.codec import MAGIC, SCHEMA_DIR

CRC64_EMPTY = 0xC15D213AA4D7A795


def reference_crc64(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification writes it (independent of fastavro)."""
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (CRC64_EMPTY & -(fp & 1))
        table.append(fp)
    fp = CRC64_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def deployment(**overrides):
    return {"model": "churn", "version": "3", "created_at": 1_700_000_000_000,
            "action": "deploy", **overrides}


def prediction_record(rows: int = 2):
    return {
        "model": "churn", "model_version": "1", "event_time": 1, "request_ids": [f"r{i}" for i in range(rows)],
        "columns": encode_rows([{"age": 30 + i, "plan": "pro"} for i in range(rows)]),
        "prediction": np.arange(rows, dtype="<f8").tobytes(),
    }


def test_spec_vector_for_int_schema_matches_reference_crc64():
    assert reference_crc64(b'"int"') == 0x7275D51A3F395C8F  # value given in the Avro spec's test suite
    from schemas.codec import crc64_fingerprint

    assert crc64_fingerprint(parse_schema("int")) == (0x7275D51A3F395C8F).to_bytes(8, "little")


def test_message_header_is_magic_plus_little_endian_fingerprint():
    codec = Codec.default()
    data = codec.encode("driftline.Deployment", deployment())
    assert data[:2] == MAGIC
    from fastavro.schema import to_parsing_canonical_form

    canonical = to_parsing_canonical_form(codec.schema("driftline.Deployment"))
    assert data[2:10] == reference_crc64(canonical.encode()).to_bytes(8, "little")


@pytest.mark.parametrize("name", Codec.default().names)
def test_every_shipped_schema_has_a_distinct_fingerprint(name):
    codec = Codec.default()
    others = {codec.fingerprint_of(n) for n in codec.names if n != name}
    assert codec.fingerprint_of(name) not in others


def test_prediction_round_trip():
    codec = Codec.default()
    record = prediction_record()
    decoded = codec.decode(codec.encode("driftline.Prediction", record), "driftline.Prediction")
    assert decoded["request_ids"] == ["r0", "r1"]
    assert decoded["columns"]["numeric_names"] == ["age"]
    assert decoded["segment"] is None


def test_garbage_bytes_are_refused_with_the_header_they_had():
    with pytest.raises(DecodeError, match="expected header c3 01, got de ad be ef"):
        Codec.default().decode(b"\xde\xad\xbe\xef" * 4)


def test_empty_message_is_refused():
    with pytest.raises(DecodeError, match="got empty"):
        Codec.default().decode(b"")


def test_unknown_fingerprint_is_refused():
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint 0102030405060708"):
        Codec.default().decode(MAGIC + bytes(range(1, 9)) + b"\x00")


def test_truncated_body_is_refused():
    codec = Codec.default()
    data = codec.encode("driftline.Prediction", prediction_record())
    with pytest.raises(DecodeError, match="invalid driftline.Prediction body"):
        codec.decode(data[: len(data) // 2])


def test_trailing_bytes_are_refused():
    codec = Codec.default()
    data = codec.encode("driftline.Deployment", deployment())
    with pytest.raises(DecodeError, match="3 trailing bytes"):
        codec.decode(data + b"abc")


def test_event_of_another_kind_is_refused_when_a_kind_is_expected():
    codec = Codec.default()
    data = codec.encode("driftline.Deployment", deployment())
    with pytest.raises(DecodeError, match="expected a driftline.Label event, got driftline.Deployment"):
        codec.decode(data, "driftline.Label")


def test_record_missing_a_required_field_cannot_be_encoded():
    record = deployment()
    del record["version"]
    with pytest.raises(EncodeError, match="driftline.Deployment"):
        Codec.default().encode("driftline.Deployment", record)


def test_wrong_type_cannot_be_encoded():
    with pytest.raises(EncodeError):
        Codec.default().encode("driftline.Deployment", deployment(created_at="yesterday"))


def test_older_writer_schema_decodes_into_the_current_shape():
    """Schema resolution: fields added since the writer's version take their defaults."""
    current = json.loads((SCHEMA_DIR / "deployment.avsc").read_text())
    old = dict(current, fields=[f for f in current["fields"]
                                if f["name"] not in ("reason", "actor", "previous_version", "rollout")])
    codec = Codec(Codec.default()._current)
    writer = codec.register_writer(old)
    body = io.BytesIO()
    schemaless_writer(body, writer.parsed, {"model": "m", "version": "1", "created_at": 5, "action": "rollback"})
    decoded = codec.decode(MAGIC + writer.fingerprint + body.getvalue(), "driftline.Deployment")
    assert decoded == {"model": "m", "version": "1", "created_at": 5, "action": "rollback",
                       "previous_version": None, "reason": "", "actor": "", "rollout": None}


def test_writer_missing_a_field_without_default_does_not_resolve():
    current = json.loads((SCHEMA_DIR / "deployment.avsc").read_text())
    old = dict(current, fields=[f for f in current["fields"] if f["name"] != "version"])
    codec = Codec(Codec.default()._current)
    writer = codec.register_writer(old)
    body = io.BytesIO()
    schemaless_writer(body, writer.parsed, {"model": "m", "created_at": 5, "action": "deploy"})
    with pytest.raises(DecodeError, match="invalid driftline.Deployment body"):
        codec.decode(MAGIC + writer.fingerprint + body.getvalue())


def test_unknown_schema_name_names_the_known_ones():
    with pytest.raises(EncodeError, match="known: driftline.Calibration, driftline.Columns"):
        Codec.default().encode("driftline.Nope", {})


@pytest.mark.parametrize("model", ["churn", "", "m" * 300, "prêt-à-porter"])
def test_peek_model_reads_the_first_field_as_a_full_decode_does(model) -> None:
    codec = Codec.default()
    data = codec.encode("driftline.Prediction", {**prediction_record(), "model": model})
    assert codec.peek_model(data, "driftline.Prediction") == codec.decode(data)["model"] == model
    assert codec.peek_model(data, "driftline.Label") is None, "another kind is left to a full decode"
    if model:
        assert codec.peek_model(data[:11], "driftline.Prediction") is None, "a cut-off body is not guessed"
    assert codec.peek_model(b"\x00\x01garbage", "driftline.Prediction") is None


def test_events_written_before_the_dictionary_form_still_decode():
    """A Prediction written with the schema of before ``categorical_levels``/``codes`` (its history copy)."""
    codec = Codec.default()
    old = json.loads((SCHEMA_DIR / "history" / "prediction.v1.avsc").read_text())
    writer = codec.register_writer(old)
    record = prediction_record(3)
    for field in ("categorical_levels", "categorical_codes"):
        del record["columns"][field]
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(old), record)
    decoded = codec.decode(MAGIC + writer.fingerprint + body.getvalue(), "driftline.Prediction")
    assert decoded["columns"]["categorical_values"] == ["pro"] * 3
    assert not decoded["columns"]["categorical_codes"] and decoded["columns"]["categorical_levels"] == []
