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
