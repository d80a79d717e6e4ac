"""Window summaries merge like one pass; profiles round-trip; drift is calibrated."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Codec, FeatureDef, FeatureFrame, FeatureSpec, Table, encode_rows
from streams.drift.decision import compare
from streams.drift.profile import Profile, bin_counts, bin_sums
from streams.drift.summary import WindowSummary, summarize

RNG = np.random.default_rng(7)
TYPES = {**{f"x{i}": "float" for i in range(18)}, "plan": "string", "seg": "string"}
PLANS, PLAN_P = np.array(["free", "pro", "team"], dtype=object), [0.5, 0.3, 0.2]


def stable_columns(rows: int, rng: np.random.Generator, shift: float = 0.0) -> dict:
    columns = {f"x{i}": rng.normal(size=rows) + (shift if i == 0 else 0.0) for i in range(18)}
    columns["plan"] = rng.choice(PLANS, size=rows, p=PLAN_P)
    columns["seg"] = rng.choice(np.array(["u", "v"], dtype=object), size=rows)
    return columns


@pytest.fixture(scope="module")
def profile() -> Profile:
    return Profile.build(Table(stable_columns(20_000, RNG), TYPES), "m")


def frame(columns: dict) -> FeatureFrame:
    return Table(columns, TYPES).to_frame()


def test_merging_partials_equals_one_pass(profile):
    rows = frame(stable_columns(3000, RNG))
    whole = summarize(rows, profile, 0, 60_000)
    parts = [slice(0, 1000), slice(1000, 1700), slice(1700, 3000)]
    merged = None
    for part in parts:
        sub = FeatureFrame(len(range(3000)[part]), rows.numeric_names, rows.numeric[part], rows.numeric_null[part],
                           rows.categorical_names, rows.categorical[part], rows.categorical_null[part])
        s = summarize(sub, profile, 0, 60_000)
        merged = s if merged is None else merged.merge(s)
    assert merged.rows == whole.rows
    for name, one in whole.features.items():
        m = merged.features[name]
        assert (m.count, m.nulls, m.skew) == (one.count, one.nulls, one.skew)
        if one.kind == "numeric":
            np.testing.assert_array_equal(m.histogram, one.histogram)
            np.testing.assert_array_equal(m.fine_counts, one.fine_counts)
            assert m.mean == pytest.approx(one.mean, rel=1e-12, abs=1e-12)
            assert m.m2 == pytest.approx(one.m2, rel=1e-9)
            assert (m.min, m.max) == (one.min, one.max)
        else:
            assert m.categories == one.categories


def test_summary_moments_match_numpy(profile):
    columns = stable_columns(2500, RNG)
    s = summarize(frame(columns), profile, 0, 1).features["x3"]
    assert s.mean == pytest.approx(columns["x3"].mean())
    assert s.variance == pytest.approx(columns["x3"].var(ddof=1))
    assert s.histogram.sum() == 2500


SPEC = FeatureSpec("m", (FeatureDef("a", "float", min=0, max=10), FeatureDef("c", "string", domain=("x", "y"))))
PROFILE_SMALL = Profile.build(Table({"a": np.linspace(0, 10, 200), "c": np.array(["x", "y"] * 100, dtype=object)},
                                    {"a": "float", "c": "string"}), "m", spec=SPEC)
values_a = st.one_of(st.none(), st.floats(-5, 15, allow_nan=False), st.just(float("nan")))
values_c = st.one_of(st.none(), st.sampled_from(["x", "y", "z", "w", "q"]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.fixed_dictionaries({"a": values_a, "c": values_c}), min_size=1, max_size=20),
                min_size=1, max_size=5))
def test_merge_is_order_free_and_equals_one_pass_for_any_batches(batches):
    def summary_of(rows):
        return summarize(FeatureFrame.from_record(encode_rows(rows), len(rows)), PROFILE_SMALL, 0, 1)

    whole = summary_of([r for batch in batches for r in batch])
    forward = backward = None
    for batch in batches:
        forward = summary_of(batch) if forward is None else forward.merge(summary_of(batch))
    for batch in reversed(batches):
        backward = summary_of(batch) if backward is None else summary_of(batch).merge(backward)
    for merged in (forward, backward):
        for name, one in whole.features.items():
            m = merged.features[name]
            assert (m.count, m.nulls, m.skew) == (one.count, one.nulls, one.skew)
            if one.kind == "numeric":
                np.testing.assert_array_equal(m.histogram, one.histogram)
                assert m.mean == pytest.approx(one.mean, abs=1e-9)
            else:
                assert (m.categories, m.unseen) == (one.categories, one.unseen)


def test_window_summary_round_trips_through_avro(profile):
    s = summarize(frame(stable_columns(500, RNG)), profile, 60_000, 120_000, partition=3)
    codec = Codec.default()
    back = WindowSummary.from_avro(codec.decode(codec.encode("driftline.WindowSummary", s.to_avro())))
    assert back.rows == 500 and back.partition == 3
    np.testing.assert_array_equal(back.features["x1"].fine_counts, s.features["x1"].fine_counts)
    assert back.features["plan"].categories == s.features["plan"].categories


def test_profile_round_trips_through_its_file(profile, tmp_path):
    profile.save(tmp_path / "m.profile")
    back = Profile.load(tmp_path / "m.profile")
    assert back.spec == profile.spec
    np.testing.assert_array_equal(back.features["x2"].fine_edges, profile.features["x2"].fine_edges)
    np.testing.assert_array_equal(back.features["plan"].counts, profile.features["plan"].counts)


# The false-alarm promise itself is tested against direct simulation in test_calibration.py.


def test_quarter_std_mean_shift_is_flagged_in_the_first_window(profile):
    rng = np.random.default_rng(3)
    detected = 0
    for _ in range(50):
        report = compare(summarize(frame(stable_columns(2000, rng, shift=0.25)), profile, 0, 1), profile)
        detected += report.features["x0"].drift
    print(f"detection rate of a 0.25 std shift in one 2,000-row window: {detected / 50:.0%}")
    assert detected == 50


def test_skew_findings_name_kinds_and_examples():
    rows = [{"a": 20.0, "c": "z", "extra": 1.0}] * 10 + [{"a": None, "c": "x"}] * 10 + [{"c": "x"}] * 5
    s = summarize(FeatureFrame.from_record(encode_rows(rows), len(rows)), PROFILE_SMALL, 0, 1)
    report = compare(s, PROFILE_SMALL)
    kinds = {name: {f.kind for f in r.skew} for name, r in report.features.items()}
    assert kinds["a"] == {"out_of_range", "null_rate"}
    assert kinds["c"] == {"unseen_category"}
    assert kinds["extra"] == {"unexpected"}
    [unseen] = report.features["c"].skew
    assert unseen.examples == ["z"] and unseen.count == 10
    assert report.skew


def skew_kinds(rows, spec=None):
    s = summarize(FeatureFrame.from_record(encode_rows(rows, spec), len(rows)), PROFILE_SMALL, 0, 1)
    return {name: {f.kind for f in r.skew} for name, r in compare(s, PROFILE_SMALL).features.items()}


def test_feature_absent_from_events_is_missing_and_wrong_type_is_a_mismatch():
    kinds = skew_kinds([{"c": 3}] * 10)  # no spec at the producer: 'c' travels as a number
    assert kinds["a"] == {"missing"}
    assert kinds["c"] == {"type_mismatch"}


def test_with_a_spec_at_the_producer_absent_features_are_nulls():
    kinds = skew_kinds([{"c": 3}] * 10, SPEC)  # the SDK fills spec features: absent means null
    assert kinds["a"] == {"null_rate"}
    assert kinds["c"] == {"type_mismatch"}


@pytest.mark.parametrize("native", [True, False])
def test_whole_columns_summarised_together_equal_one_feature_at_a_time(native, monkeypatch):
    """Columns without a null or a non-finite value are summarised in one pass over the matrix; each must
    equal the one-feature path (itself checked against numpy above) and numpy's own counts of the skew.
    ``native``: their moments and bins in C (streams.drift._column) where it is built, else in numpy."""
    import streams.drift.summary as summary_module
    from streams.drift.bins import native_moments
    from streams.drift.summary import _numeric_part
    from tests.native import built

    if native and not built(native_moments, "streams.drift._column"):
        pytest.skip("streams.drift._column is not built")
    if not native:
        monkeypatch.setattr(summary_module, "native_moments", None)

    spec = FeatureSpec("m", (FeatureDef("a", "float", min=-1, max=1), FeatureDef("k", "int", min=0, max=8),
                             FeatureDef("b", "float"), FeatureDef("gap", "float"), FeatureDef("spike", "float")))
    rng = np.random.default_rng(12)
    reference = {"a": rng.normal(size=3000), "k": rng.integers(0, 9, 3000).astype(float),
                 "b": rng.normal(size=3000), "gap": rng.normal(size=3000), "spike": rng.normal(size=3000)}
    types = {"a": "float", "k": "int", "b": "float", "gap": "float", "spike": "float"}
    profile = Profile.build(Table(reference, types), "m", spec=spec)
    rows = 700
    k = rng.integers(-2, 11, rows).astype(float)
    k[::37] += 0.5  # not whole numbers: a type mismatch each
    gap = rng.normal(size=rows)
    gap[::11] = np.nan  # a null: this column takes the one-feature path
    spike = rng.normal(size=rows)
    spike[5], spike[400] = np.inf, -np.inf  # present but not finite: so does this one
    columns = {"a": rng.normal(scale=1.5, size=rows), "k": k, "b": rng.normal(size=rows), "gap": gap, "spike": spike}
    rows_frame = Table(columns, types).to_frame()
    got = summarize(rows_frame, profile, 0, 1).features
    for f in spec.features:
        j = rows_frame.numeric_names.index(f.name)
        null = rows_frame.numeric_null[:, j]
        want = _numeric_part(profile.features[f.name], f.name, rows_frame.numeric[:, j][~null], int(null.sum()),
                             f.min, f.max, f.allow_nan, f.type == "int")
        g = got[f.name]
        assert (g.count, g.nulls, g.skew, g.min, g.max) == (want.count, want.nulls, want.skew, want.min, want.max)
        assert g.mean == pytest.approx(want.mean, rel=1e-12, abs=1e-12)
        assert g.m2 == pytest.approx(want.m2, rel=1e-12)
        np.testing.assert_array_equal(g.histogram, want.histogram)
        np.testing.assert_array_equal(g.fine_counts, want.fine_counts)
        np.testing.assert_allclose(g.fine_sums, want.fine_sums, rtol=1e-12, atol=1e-12)
        values = columns[f.name][np.isfinite(columns[f.name])]  # and both against a search per value
        ref = profile.features[f.name]
        np.testing.assert_array_equal(g.histogram, bin_counts(values, ref.edges))
        np.testing.assert_array_equal(g.fine_counts, bin_counts(values, ref.fine_edges))
        np.testing.assert_allclose(g.fine_sums, bin_sums(values, ref.fine_edges), rtol=1e-12, atol=1e-12)
        assert (g.min, g.max) == (values.min(), values.max())
        assert g.m2 == pytest.approx(values.var() * values.size, rel=1e-12)
    a = columns["a"]
    assert got["a"].skew["out_of_range"] == int(((a < -1) | (a > 1)).sum()) > 0
    assert got["k"].skew["type_mismatch"] == int((k != np.round(k)).sum()) > 0
    assert got["k"].skew["out_of_range"] == int(((k < 0) | (k > 8)).sum()) > 0
    assert got["gap"].nulls == int(np.isnan(gap).sum()) > 0


def test_a_columns_moments_in_c_equal_numpys_where_naive_sums_lose_digits():
    """streams.drift._column.moments against numpy: a large offset with a small spread (a naive sum of the
    squares loses the spread), strided columns, one value, and None for NaN, infinities and no values."""
    from streams.drift.bins import native_moments
    from tests.native import built

    if not built(native_moments, "streams.drift._column"):
        pytest.skip("streams.drift._column is not built")
    rng = np.random.default_rng(21)
    columns = [rng.normal(size=50_000), 1e9 + rng.normal(size=50_000), rng.standard_cauchy(20_000),
               rng.lognormal(0, 4, 10_000), np.full(7, 3.25), np.array([-0.0]), rng.normal(size=(3000, 5))[:, 2]]
    for values in columns:
        low, high, mean, m2 = native_moments(values)
        assert (low, high) == (values.min(), values.max())
        assert mean == pytest.approx(values.mean(), rel=1e-13, abs=1e-300)
        assert m2 == pytest.approx(((values - values.mean()) ** 2).sum(), rel=1e-9, abs=1e-300)
    shifted = 1e9 + rng.normal(size=50_000)
    exact_mean = float(np.sum(shifted.astype(np.longdouble)) / shifted.size)
    assert native_moments(shifted)[2] == pytest.approx(exact_mean, rel=1e-15)
    for broken in ([1.0, np.nan], [np.inf, 1.0], [-np.inf], []):
        assert native_moments(np.array(broken, dtype=float)) is None
