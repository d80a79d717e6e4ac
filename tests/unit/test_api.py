"""driftline.profile / driftline.check on in-memory data: the offline gate without files."""

from __future__ import annotations

import numpy as np
import pytest

import driftline


class FrameLike:
    """The part of a DataFrame the API relies on: ``columns`` and ``frame[name].to_numpy()``."""

    class Column:
        def __init__(self, values):
            self.values = values

        def to_numpy(self):
            return np.asarray(self.values)

    def __init__(self, data: dict):
        self.data = data
        self.columns = list(data)

    def __getitem__(self, name):
        return self.Column(self.data[name])


def test_profile_and_check_take_columns_frames_and_paths(tmp_path):
    rng = np.random.default_rng(0)
    reference = {"income": rng.normal(50, 10, 5_000), "age": rng.integers(18, 80, 5_000),
                 "plan": rng.choice(["free", "pro"], 5_000)}
    profile = driftline.profile(FrameLike(reference), "churn")
    assert profile.spec["age"].type == "int" and profile.spec["plan"].kind == "categorical"
    profile.save(tmp_path / "churn.profile")
    same = driftline.check({"income": rng.normal(50, 10, 2_000), "age": rng.integers(18, 80, 2_000),
                            "plan": rng.choice(["free", "pro"], 2_000)}, tmp_path / "churn.profile")
    assert not same.drift and not same.skew


def test_dirty_values_in_an_object_column_are_mismatches_not_a_text_column():
    rng = np.random.default_rng(1)
    profile = driftline.profile({"n": rng.normal(size=3_000)}, "m")
    values = rng.normal(size=1_000).astype(object)
    values[np.arange(0, 1_000, 33)] = "oops"  # 31 dirty cells: above the 1 % skew rate
    report = driftline.check({"n": values}, profile)
    n = report.features["n"]
    assert n.kind == "numeric" and n.rows == 969
    [finding] = n.skew
    assert finding.kind == "type_mismatch" and finding.count == 31
    assert finding.examples == [f"row {r}: 'oops'" for r in (0, 33, 66, 99, 132)]


def test_unknown_data_is_one_clear_error():
    with pytest.raises(TypeError, match="give a path, a mapping of columns or a DataFrame"):
        driftline.check(42, driftline.profile({"x": np.arange(100.0)}, "m"))


def frames(columns: dict):
    """The same columns as every container the API takes."""
    import pandas as pd
    import polars as pl
    import pyarrow as pa

    return {"dict": columns, "pandas": pd.DataFrame(columns), "polars": pl.DataFrame(columns),
            "arrow": pa.table(columns)}


def test_pandas_polars_arrow_and_dicts_give_the_same_report():
    """One reference, one current window, four containers: identical statistics and verdicts."""
    rng = np.random.default_rng(5)
    reference = {"income": rng.normal(50, 10, 4_000), "age": rng.integers(18, 80, 4_000),
                 "plan": rng.choice(["free", "pro", "team"], 4_000)}
    current = {"income": rng.normal(54, 10, 1_500), "age": rng.integers(18, 80, 1_500),
               "plan": rng.choice(["free", "pro", "team"], 1_500, p=[0.6, 0.3, 0.1])}
    profiles = {kind: driftline.profile(data, "churn") for kind, data in frames(reference).items()}
    assert len({p.spec for p in profiles.values()}) == 1
    reports = {kind: driftline.check(data, profiles["dict"]).to_dict() for kind, data in frames(current).items()}
    for kind, report in reports.items():
        for name in reference:
            assert report["features"][name]["value"] == pytest.approx(reports["dict"]["features"][name]["value"]), kind
            assert report["features"][name]["rows"] == 1_500
        assert report["drift"] is True and {n for n, f in report["features"].items() if f["drift"]} == {"income", "plan"}


def test_pandas_dtypes_nulls_and_dirty_object_columns():
    import pandas as pd

    rng = np.random.default_rng(6)
    reference = pd.DataFrame({"income": rng.normal(50, 10, 4_000), "age": rng.integers(18, 80, 4_000),
                              "plan": pd.Categorical(rng.choice(["free", "pro"], 4_000))})
    profile = driftline.profile(reference, "churn")
    assert profile.spec["plan"].kind == "categorical" and profile.spec["age"].type == "int"
    current = reference.iloc[:2_000].copy()
    current["age"] = current["age"].astype("Int64")
    current.loc[:99, "age"] = pd.NA  # 100 nulls in a nullable integer column
    current["plan"] = current["plan"].astype("string")
    current["income"] = current["income"].astype(object)
    current.loc[current.index[::40], "income"] = "oops"  # 50 dirty cells in an object column
    report = driftline.check(current, profile)
    age, income, plan = (report.features[n] for n in ("age", "income", "plan"))
    assert age.rows == 1_900 and [s.kind for s in age.skew] == ["null_rate"]
    assert income.kind == "numeric" and income.rows == 1_950
    assert [(s.kind, s.count) for s in income.skew] == [("type_mismatch", 50)]
    assert income.skew[0].examples[:2] == ["row 0: 'oops'", "row 40: 'oops'"]
    assert plan.rows == 2_000 and not plan.skew and not plan.drift
