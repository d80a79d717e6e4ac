"""`driftline profile -o` and `driftline check` as a CI data-validation gate (no Kafka)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from driftline.cli.main import main


def write_csv(path, rows, rng, shift=0.0, unseen_every=0):
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["age", "income", "plan"])
        for i in range(rows):
            plan = rng.choice(["free", "pro", "team"], p=[0.5, 0.3, 0.2])
            if unseen_every and i % unseen_every == 0:
                plan = "vip"
            out.writerow([int(rng.integers(18, 80)), f"{rng.lognormal(10, 0.5) * (1 + shift):.2f}", plan])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("check")
    rng = np.random.default_rng(0)
    write_csv(d / "ref.csv", 5000, rng)
    write_csv(d / "same.csv", 2000, rng)
    write_csv(d / "drift.csv", 2000, rng, shift=0.3)
    write_csv(d / "skew.csv", 2000, rng, unseen_every=10)
    assert main(["profile", str(d / "ref.csv"), "--model", "churn", "-o", str(d / "churn.profile")]) == 0
    return d


def check(files, name, *extra):
    return main(["check", "--profile", str(files / "churn.profile"), str(files / name), *extra])


def test_stable_data_passes_the_gate(files):
    assert check(files, "same.csv") == 0


def test_drifted_data_fails_the_gate_naming_the_feature(files, capsys):
    assert check(files, "drift.csv", "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["drift"] is True and report["skew"] is False
    assert [n for n, f in report["features"].items() if f["drift"]] == ["income"]
    assert set(report["features"]["income"]["tests"]) == {"psi", "ks", "js", "wasserstein"}
    assert report["features"]["income"]["p_value"] < report["features"]["income"]["alpha"]
    assert set(report["features"]["plan"]["tests"]) == {"psi", "js"}
    assert report["features"]["plan"]["method"] == "chi2"


def test_unseen_categories_are_skew_with_examples(files, capsys):
    assert check(files, "skew.csv", "--json") == 1
    report = json.loads(capsys.readouterr().out)
    [finding] = report["features"]["plan"]["skew"]
    assert finding["kind"] == "unseen_category" and finding["examples"] == ["vip"]
    assert finding["rate"] == pytest.approx(0.1)


def test_bad_input_exits_2_with_one_sentence(files, capsys):
    assert check(files, "missing.csv") == 2
    assert check(files, "same.csv", "--method", "age=median") == 2
    assert check(files, "same.csv", "--false-alarm-rate", "3") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line]
    assert errors == [
        f"driftline: error: {files / 'missing.csv'} does not exist",
        "driftline: error: method 'median' for numeric feature 'age': use one of "
        "('chi2', 'ks', 'psi', 'js', 'wasserstein')",
        "driftline: error: --false-alarm-rate must be between 0 and 1, got 3.0",
    ]


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    """`driftline check ... --json | head -1` must not end in a BrokenPipeError traceback."""
    import subprocess
    import sys

    rng = np.random.default_rng(1)
    names = [f"f{i}" for i in range(300)]  # a report far larger than a pipe's buffer
    for name in ("ref", "cur"):
        with (tmp_path / f"{name}.csv").open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(names)
            out.writerows(rng.normal(size=(300, len(names))).round(3).tolist())
    assert main(["profile", str(tmp_path / "ref.csv"), "--model", "wide", "-o", str(tmp_path / "w.profile")]) == 0
    command = (f"{sys.executable} -m driftline.cli.main check --profile {tmp_path / 'w.profile'} "
               f"{tmp_path / 'cur.csv'} --json | head -1")
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], capture_output=True, text=True, timeout=120)
    assert done.stdout == "{\n"
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_dirty_cells_are_type_mismatches_and_the_rest_of_the_column_is_judged(tmp_path, capsys):
    """199 of 2,000 cells of a numeric column are 'oops': the column stays numeric."""
    rng = np.random.default_rng(2)
    for name, dirty in (("ref", 0), ("dirty", 199)):
        values = rng.normal(size=2000).round(4).astype(object)
        values[rng.choice(2000, dirty, replace=False)] = "oops"
        with (tmp_path / f"{name}.csv").open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["n0", "n1"])
            out.writerows(zip(values, rng.normal(size=2000).round(4), strict=True))
    assert main(["profile", str(tmp_path / "ref.csv"), "--model", "d", "-o", str(tmp_path / "d.profile")]) == 0
    capsys.readouterr()
    assert main(["check", "--profile", str(tmp_path / "d.profile"), str(tmp_path / "dirty.csv"), "--json"]) == 1
    n0 = json.loads(capsys.readouterr().out)["features"]["n0"]
    assert n0["kind"] == "numeric" and n0["rows"] == 1801 and n0["method"] == "chi2"
    [finding] = n0["skew"]
    assert (finding["kind"], finding["count"]) == ("type_mismatch", 199)
    assert len(finding["examples"]) == 5 and all(e.endswith("'oops'") for e in finding["examples"])


def test_parquet_and_batched_csv_give_the_csv_verdict(files, tmp_path, capsys):
    """The same rows as Parquet, and as a CSV read in many small batches, summarise identically."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from driftline.api import check_tables, spec_kinds
    from schemas.readers import read_batches
    from streams.drift.profile import Profile

    pq.write_table(pa_csv.read_csv(files / "drift.csv"), tmp_path / "drift.parquet", row_group_size=500)
    assert check(files, "drift.csv", "--json") == 1
    from_csv = json.loads(capsys.readouterr().out)
    assert main(["check", "--profile", str(files / "churn.profile"), str(tmp_path / "drift.parquet"), "--json"]) == 1
    from_parquet = json.loads(capsys.readouterr().out)
    for name in ("age", "income", "plan"):
        assert from_parquet["features"][name]["value"] == pytest.approx(from_csv["features"][name]["value"])
        assert from_parquet["features"][name]["rows"] == from_csv["features"][name]["rows"] == 2000
    profile = Profile.load(files / "churn.profile")
    batches = list(read_batches(files / "drift.csv", spec_kinds(profile.spec), batch_bytes=4096))
    assert len(batches) > 5 and sum(b.rows for b in batches) == 2000
    report = check_tables(batches, profile, None, where=str)
    assert report.features["income"].value == pytest.approx(from_csv["features"]["income"]["value"])


def write_dirty_avro(path, values) -> None:
    """An Avro file whose numeric field a dirty pipeline wrote as a union of text and numbers."""
    import fastavro

    schema = {"type": "record", "name": "Row", "fields": [
        {"name": "n0", "type": ["null", "string", "double"]}, {"name": "n1", "type": "double"}]}
    with path.open("wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(schema),
                        [{"n0": v, "n1": float(i % 7)} for i, v in enumerate(values)])


def test_avro_union_of_text_and_numbers_is_typed_per_value(tmp_path, capsys):
    rng = np.random.default_rng(3)
    write_dirty_avro(tmp_path / "ref.avro", rng.normal(size=3000).tolist())
    dirty: list = rng.normal(size=2000).tolist()
    for row in range(0, 2000, 40):
        dirty[row] = "n/a?"  # 50 dirty records
    dirty[1] = None
    dirty[2] = "1.5"  # a number written as text is a number
    write_dirty_avro(tmp_path / "cur.avro", dirty)
    assert main(["profile", str(tmp_path / "ref.avro"), "--model", "a", "-o", str(tmp_path / "a.profile")]) == 0
    capsys.readouterr()
    assert main(["check", "--profile", str(tmp_path / "a.profile"), str(tmp_path / "cur.avro"), "--json"]) == 1
    n0 = json.loads(capsys.readouterr().out)["features"]["n0"]
    assert n0["kind"] == "numeric" and n0["rows"] == 2000 - 50 - 1
    mismatch = next(f for f in n0["skew"] if f["kind"] == "type_mismatch")
    assert mismatch["count"] == 50
    assert mismatch["examples"] == [f"record {r}: 'n/a?'" for r in (0, 40, 80, 120, 160)]


def test_null_values_are_configurable(tmp_path, capsys):
    """'-' is a dirty value by default and a null when the user says so."""
    rng = np.random.default_rng(4)
    for name, dashes in (("ref", 0), ("cur", 100)):
        values = rng.normal(size=2000).round(4).astype(object)
        values[:dashes] = "-"
        with (tmp_path / f"{name}.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows([["x"], *([v] for v in values)])
    assert main(["profile", str(tmp_path / "ref.csv"), "--model", "n", "-o", str(tmp_path / "n.profile")]) == 0
    capsys.readouterr()
    base = ["check", "--profile", str(tmp_path / "n.profile"), str(tmp_path / "cur.csv"), "--json"]
    assert main(base) == 1
    [finding] = json.loads(capsys.readouterr().out)["features"]["x"]["skew"]
    assert (finding["kind"], finding["count"]) == ("type_mismatch", 100)
    assert main([*base, "--null-values", ",NA,-"]) == 1
    [finding] = json.loads(capsys.readouterr().out)["features"]["x"]["skew"]
    assert (finding["kind"], finding["count"]) == ("null_rate", 100)


def test_a_dirty_cell_late_in_a_file_switches_to_text_from_there_without_losing_rows(tmp_path):
    """Numbers are parsed by pyarrow until the first dirty cell; the text pass resumes at the row reached."""
    from schemas.readers import read_batches

    values = [f"{v:.4f}" for v in np.random.default_rng(7).normal(size=5_000)]
    values[4_321] = "oops"
    (tmp_path / "late.csv").write_text("x,y\n" + "".join(f"{v},{i}\n" for i, v in enumerate(values)))
    batches = list(read_batches(tmp_path / "late.csv", {"x": "float", "y": "int"}, batch_bytes=8_192))
    assert len(batches) > 5
    assert [b.first_row for b in batches] == list(np.cumsum([0] + [b.rows for b in batches[:-1]]))
    assert sum(b.rows for b in batches) == 5_000
    x = np.concatenate([b.columns["x"] for b in batches])
    y = np.concatenate([b.columns["y"] for b in batches])
    np.testing.assert_array_equal(y, np.arange(5_000))
    assert np.isnan(x[4_321]) and np.allclose(np.delete(x, 4_321), np.delete(np.array(
        [float(v) if v != "oops" else np.nan for v in values]), 4_321))
    assert {row: text for b in batches for row, text in b.mismatches.get("x", {}).items()} == {4_321: "oops"}


def test_blocks_never_cut_a_quoted_cell_that_holds_a_line_break(tmp_path):
    """Our own line-aligned blocks (bounded memory) keep multi-line quoted cells whole."""
    from schemas.readers import read_batches

    rows = [(i, f'"note {i}\nsecond line, with ""quotes"""' if i % 7 == 0 else f"note {i}") for i in range(3_000)]
    (tmp_path / "q.csv").write_text("n,note\n" + "".join(f"{n},{note}\n" for n, note in rows))
    batches = list(read_batches(tmp_path / "q.csv", {"n": "int", "note": "string"}, batch_bytes=1_000))
    assert len(batches) > 20
    notes = np.concatenate([b.columns["note"] for b in batches])
    np.testing.assert_array_equal(np.concatenate([b.columns["n"] for b in batches]), np.arange(3_000))
    assert notes[7] == 'note 7\nsecond line, with "quotes"' and notes[8] == "note 8"
