"""Feature specs: declare, infer from CSV/Avro, validate rows."""

from __future__ import annotations

import fastavro
import numpy as np
import pytest

from schemas import (
    ContractError,
    FeatureDef,
    FeatureFrame,
    FeatureSpec,
    SpecViolation,
    encode_rows,
    read_table,
)


@pytest.fixture
def reference_csv(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text(
        "age,income,plan,active,note\n"
        "30,1000.5,free,true,\n"
        "45,2000.0,pro,false,hello\n"
        "52,,pro,true,x\n"
        "61,3500.25,team,true,y\n"
    )
    return path


def test_infer_from_csv_types_ranges_domains_and_null_rates(reference_csv):
    spec = FeatureSpec.infer_file(reference_csv, "churn")
    assert [(f.name, f.type) for f in spec.features] == [
        ("age", "int"), ("income", "float"), ("plan", "string"), ("active", "bool"), ("note", "string")]
    assert (spec["age"].min, spec["age"].max) == (30.0, 61.0)
    assert spec["income"].max_null_rate == pytest.approx(0.25 + 0.01)
    assert spec["age"].max_null_rate == 0.0
    assert spec["plan"].domain == ("free", "pro", "team")
    assert spec["active"].domain == ("false", "true")


def test_high_cardinality_text_gets_no_domain(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("id\n" + "\n".join(f"u{i}" for i in range(100)) + "\n")
    assert FeatureSpec.infer_file(path, "m", max_categories=50)["id"].domain is None


def test_infer_from_avro_matches_the_same_data_in_csv(reference_csv, tmp_path):
    table = read_table(reference_csv)
    schema = {"type": "record", "name": "Ref", "fields": [
        {"name": "age", "type": "long"}, {"name": "income", "type": ["null", "double"]},
        {"name": "plan", "type": "string"}, {"name": "active", "type": "boolean"},
        {"name": "note", "type": ["null", "string"]}]}
    rows = []
    for row in table.to_rows():
        rows.append({"age": int(row["age"]), "income": row.get("income"), "plan": row["plan"],
                     "active": row["active"], "note": row.get("note")})
    path = tmp_path / "ref.avro"
    with path.open("wb") as handle:
        fastavro.writer(handle, schema, rows)
    assert FeatureSpec.infer_file(path, "churn") == FeatureSpec.infer_file(reference_csv, "churn")


def test_yaml_and_json_round_trip(tmp_path, reference_csv):
    spec = FeatureSpec.infer_file(reference_csv, "churn", version="3")
    for name in ("spec.yaml", "spec.json"):
        spec.save(tmp_path / name)
        assert FeatureSpec.load(tmp_path / name) == spec


def test_declared_spec_with_a_bad_type_names_the_feature(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("model: m\nfeatures:\n  - {name: age, type: integer}\n")
    with pytest.raises(ContractError, match="feature 'age': type 'integer' is not one of float, int"):
        FeatureSpec.load(path)


def test_declared_spec_with_an_unknown_key_names_it(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("model: m\nfeatures:\n  - {name: age, type: int, maximum: 3}\n")
    with pytest.raises(ContractError, match="unknown key.*maximum"):
        FeatureSpec.load(path)


def test_content_hash_ignores_the_version_label():
    spec = FeatureSpec("m", (FeatureDef("a", "float"),))
    assert spec.content_hash() == spec.with_version("9").content_hash()
    assert spec.content_hash() != FeatureSpec("m", (FeatureDef("a", "int"),)).content_hash()


SPEC = FeatureSpec("m", (FeatureDef("age", "int"), FeatureDef("score", "float"),
                         FeatureDef("plan", "string", domain=("a", "b")),
                         FeatureDef("opt", "float", required=False, allow_nan=True)))


def violations(rows):
    return SPEC.violations(FeatureFrame.from_record(encode_rows(rows, SPEC), len(rows)))


def test_good_rows_have_no_violations():
    assert violations([{"age": 3, "score": 0.5, "plan": "a"}]) == []


def test_missing_required_feature_is_a_violation():
    frame = FeatureFrame.from_record(encode_rows([{"age": 3, "plan": "a"}]), 1)
    assert "required feature 'score' is missing" in SPEC.violations(frame)


def test_nan_and_inf_where_forbidden_are_violations_but_allowed_where_declared():
    problems = violations([{"age": 3, "score": np.inf, "plan": "a", "opt": np.nan}])
    assert problems == ["feature 'score' has NaN or infinite values, which its spec forbids"]


def test_non_integral_int_and_wrong_types_are_violations():
    problems = violations([{"age": 3.5, "score": "high", "plan": "a"}])
    assert "feature 'age' is int but non-integral numbers were sent" in problems
    assert any("feature 'score' row 0: got str 'high', expected float" in p for p in problems)


def test_unknown_feature_is_a_violation_and_validate_raises():
    frame = FeatureFrame.from_record(encode_rows([{"age": 1, "score": 1.0, "plan": "a", "zzz": 1}]), 1)
    with pytest.raises(SpecViolation, match="feature 'zzz' is not in the spec"):
        SPEC.validate(frame)


def test_a_broken_parquet_file_is_one_sentence(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(ContractError, match="x.parquet: Parquet file size is 4 bytes"):
        read_table(path)


def test_csv_with_ragged_rows_names_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3\n")
    with pytest.raises(ContractError, match="bad.csv:3 has 1 cells but the header names 2"):
        read_table(path)


def test_unsupported_file_type_is_refused(tmp_path):
    path = tmp_path / "x.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(ContractError, match="unsupported file type '.xlsx'"):
        read_table(path)
