"""The drift decision keeps its false-alarm promise: checked against scipy and direct simulation.

Every rate here is estimated with enough trials to tell a miss of the
[0.5, 1.5] x target band (tens of expected events) from noise; seeds are
fixed, so a pass or a failure is reproducible.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import special, stats

from schemas import Codec, Table
from streams.drift import twosample
from streams.drift.decision import DriftPolicy, compare
from streams.drift.profile import Profile
from streams.drift.segments import SEGMENT_SHARE
from streams.drift.summary import WindowSummary, summarize


def test_chi2_statistic_matches_scipy_contingency():
    rng = np.random.default_rng(0)
    for _ in range(20):
        ref, cur = rng.integers(1, 200, size=7), rng.integers(1, 50, size=7)
        expected = stats.chi2_contingency(np.vstack([ref, cur]), correction=False).statistic
        assert twosample.chi2_statistic(ref, cur)[0] == pytest.approx(expected, rel=1e-12)


def test_pooling_reaches_the_expected_count_from_the_totals_alone():
    reference = np.array([900.0, 10, 10, 10, 10, 10, 10, 30, 5, 5])
    groups = twosample.pool_cells(reference, 200, ordered=False)
    pooled = twosample.pooled(reference, groups) / reference.sum() * 200
    assert pooled.min() >= twosample.MIN_EXPECTED and groups.max() >= 1
    ordered = twosample.pool_cells(reference, 200, ordered=True)
    assert (np.diff(ordered) >= 0).all(), "ordered cells merge with neighbours only"


def test_permutation_p_value_matches_exact_enumeration():
    """A 2 x 3 table small enough to enumerate every table with the same margins (mid-p both ways)."""
    reference, current = np.array([6, 3, 1]), np.array([1, 4, 5])
    totals, n = reference + current, int(current.sum())
    observed = twosample.chi2_statistic(reference, current)[0]
    exact = 0.0
    for cells in itertools.product(*(range(t + 1) for t in totals)):
        if sum(cells) != n:
            continue
        c = np.array(cells)
        value = twosample.chi2_statistic(totals - c, c)[0]
        weight = 1.0 if value > observed + 1e-9 else 0.5 if value >= observed - 1e-9 else 0.0  # mid-p
        exact += weight * stats.multivariate_hypergeom.pmf(c, totals, n)
    _, p, draws = twosample.permutation_p(reference, current, twosample.chi2_statistic, alpha=1.0)
    assert draws == twosample.draws_for(1.0)
    assert abs(p - exact) < 4 * np.sqrt(exact * (1 - exact) / draws) + 2 / draws


def test_chi2_test_holds_its_level_where_the_asymptotic_tail_does_not():
    """Rare cells (nine 1 % categories) in 200-row windows: chi-square's tail is too light there."""
    rng = np.random.default_rng(1)
    p = np.r_[0.91, np.full(9, 0.01)]
    alpha, trials = 0.002, 20_000
    asymptotic = decided = 0
    for _ in range(trials):
        ref, cur = rng.multinomial(2_000, p), rng.multinomial(200, p)
        result = twosample.chi2_test(ref, cur, alpha, ordered=False)
        groups = twosample.pool_cells(ref + cur, 200, ordered=False)
        r, c = twosample.pooled(ref, groups), twosample.pooled(cur, groups)
        keep = (r + c) > 0
        stat = twosample.chi2_statistic(r[keep], c[keep])[0]
        asymptotic += special.chdtrc(keep.sum() - 1, stat) < alpha
        decided += result.p_value < alpha
    print(f"rate / alpha: asymptotic {asymptotic / trials / alpha:.2f}, decided {decided / trials / alpha:.2f}")
    assert asymptotic / trials / alpha > 1.3, "the case must be one the asymptotic p-value gets wrong"
    assert 0.5 <= decided / trials / alpha <= 1.5


def _poisson_table(rows: int, rng: np.random.Generator, features: int, lam: float = 1.3) -> Table:
    columns = {f"n{j}": rng.poisson(lam, size=rows).astype(float) for j in range(features)}
    return Table(columns, dict.fromkeys(columns, "float"))


def test_compare_holds_the_window_rate_on_tied_integer_data_through_summarize():
    """Poisson counts (many ties): 5 features, 1,500 windows of 300 rows, fresh 3,000-row references."""
    rng = np.random.default_rng(2)
    policy = DriftPolicy(false_alarm_rate=0.05)
    alarms = windows = 0
    for _ in range(150):
        profile = Profile.build(_poisson_table(3_000, rng, 5), "m")
        for _ in range(10):
            report = compare(summarize(_poisson_table(300, rng, 5).to_frame(), profile, 0, 1), profile, policy)
            alarms += report.drift
            windows += 1
    ratio = alarms / windows / policy.false_alarm_rate
    print(f"window false-alarm rate {alarms}/{windows} = {ratio:.2f} x target")
    assert 0.5 <= ratio <= 1.5


def test_a_quarter_sd_shift_is_found_at_the_25_feature_level():
    rng = np.random.default_rng(3)
    profile = Profile.build(Table({"x": rng.normal(size=100_000)}, {"x": "float"}), "m")
    found = sum(compare(summarize(Table({"x": rng.normal(0.25, 1.0, size=2_000)}, {"x": "float"}).to_frame(),
                                  profile, 0, 1), profile, tests_per_window=25).drift for _ in range(60))
    assert found >= 54  # >= 90 %


def _segmented(rows: int, rng: np.random.Generator, eu_shift: float = 0.0) -> Table:
    region = rng.choice(np.array(["eu", "us", "apac"], dtype=object), size=rows, p=[0.2, 0.5, 0.3])
    income = rng.normal(50, 10, size=rows) + np.where(region == "eu", eu_shift * 10, 0.0)
    return Table({"region": region, "income": income, "age": rng.gamma(2.0, 10.0, size=rows)},
                 {"region": "string", "income": "float", "age": "float"})


@pytest.fixture(scope="module")
def segmented_profile() -> Profile:
    return Profile.build(_segmented(30_000, np.random.default_rng(4)), "m", segment_by=["region"])


def test_segment_profile_round_trips_and_budget_is_shared(segmented_profile):
    back = Profile.from_bytes(segmented_profile.to_bytes())
    assert sorted(back.segments) == ["region=apac", "region=eu", "region=us"]
    assert set(back.segments["region=eu"]) == {"income", "age"}, "the segment column is not judged inside itself"
    report = compare(summarize(_segmented(3_000, np.random.default_rng(5)).to_frame(), back, 0, 1), back)
    assert report.multivariate is not None, "income and age are numeric: their joint distribution is tested too"
    global_tests = len(report.features) + 1
    segment_tests = sum(len(r) for r in back.segments.values())
    total = report.alpha * global_tests + report.segment_alpha * segment_tests
    assert total == pytest.approx(DriftPolicy().false_alarm_rate)
    assert report.alpha == pytest.approx(DriftPolicy().false_alarm_rate * (1 - SEGMENT_SHARE) / global_tests)


def test_drift_inside_one_segment_is_named_where_the_global_test_misses_it(segmented_profile):
    rng = np.random.default_rng(6)
    global_hits = segment_hits = 0
    for _ in range(30):
        report = compare(summarize(_segmented(2_000, rng, eu_shift=0.5).to_frame(), segmented_profile, 0, 1),
                         segmented_profile)
        global_hits += report.features["income"].drift
        segment_hits += [f.name for f in report.drifted_segments().get("region=eu", [])] == ["income"]
        assert set(report.drifted_segments()) <= {"region=eu"}
    assert segment_hits >= 27 and global_hits < segment_hits


def test_segments_keep_the_window_false_alarm_rate(segmented_profile):
    rng = np.random.default_rng(7)
    policy = DriftPolicy(false_alarm_rate=0.1)
    alarms = sum(compare(summarize(_segmented(1_000, rng).to_frame(), segmented_profile, 0, 1),
                         segmented_profile, policy).drift for _ in range(600))
    ratio = alarms / 600 / policy.false_alarm_rate
    print(f"window false-alarm rate with segments: {ratio:.2f} x target")
    assert 0.5 <= ratio <= 1.5


def test_segment_partials_merge_like_one_pass(segmented_profile):
    rng = np.random.default_rng(8)
    table = _segmented(4_000, rng)
    frame = table.to_frame()
    whole = summarize(frame, segmented_profile, 0, 1)
    halves = [summarize(frame.take(mask), segmented_profile, 0, 1)
              for mask in (np.arange(4_000) < 1_700, np.arange(4_000) >= 1_700)]
    merged = halves[0].merge(halves[1])
    assert sorted(merged.segments) == sorted(whole.segments)
    for key, part in whole.segments.items():
        assert merged.segments[key].rows == part.rows
        np.testing.assert_array_equal(merged.segments[key].features["income"].histogram,
                                      part.features["income"].histogram)
    codec = Codec.default()
    back = WindowSummary.from_avro(codec.decode(codec.encode("driftline.WindowSummary", merged.to_avro())))
    assert back.segments["region=eu"].rows == merged.segments["region=eu"].rows


def test_summaries_written_before_segments_existed_still_decode():
    import io
    import json
    from pathlib import Path

    from fastavro import parse_schema, schemaless_writer

    import schemas

    old = json.loads((Path(schemas.__file__).parent / "history" / "window_summary.v1.avsc").read_text())
    from schemas.codec import MAGIC, crc64_fingerprint

    parsed = parse_schema(old)
    body = io.BytesIO()
    schemaless_writer(body, parsed, {"model": "m", "model_version": "", "window_start": 0, "window_end": 1,
                                     "stage": "merged", "partition": -1, "rows": 0, "reference_version": "1",
                                     "features": []})
    record = Codec.default().decode(MAGIC + crc64_fingerprint(parsed) + body.getvalue(), "driftline.WindowSummary")
    assert WindowSummary.from_avro(record).segments == {}


def test_many_level_features_with_levels_the_reference_never_saw_hold_the_rate():
    """200 Zipf levels: a 2,000-row reference misses many that a 4,000-row window then has."""
    rng = np.random.default_rng(9)
    weights = 1.0 / np.arange(1, 201) ** 1.1
    levels = np.array([f"c{i:03d}" for i in range(200)], dtype=object)

    def table(rows: int) -> Table:
        columns = {f"k{j}": levels[rng.choice(200, size=rows, p=weights / weights.sum())] for j in range(3)}
        return Table(columns, dict.fromkeys(columns, "string"))

    policy = DriftPolicy(false_alarm_rate=0.15)
    alarms = 0
    for _ in range(250):
        profile = Profile.build(table(2_000), "m")
        alarms += compare(summarize(table(4_000).to_frame(), profile, 0, 1), profile, policy).drift
    ratio = alarms / 250 / policy.false_alarm_rate
    print(f"window false-alarm rate, 200 levels: {ratio:.2f} x target")
    assert 0.5 <= ratio <= 1.5


@pytest.mark.parametrize("method", ["ks", "psi", "js", "wasserstein"])
def test_every_statistic_is_judged_by_its_permutation_p_value(method):
    rng = np.random.default_rng(10)
    profile = Profile.build(Table({"x": rng.gamma(2.0, size=20_000)}, {"x": "float"}), "m")
    policy = DriftPolicy(methods={"x": method})

    def judged(shift: float):
        window = Table({"x": rng.gamma(2.0, size=2_000) + shift}, {"x": "float"})
        return compare(summarize(window.to_frame(), profile, 0, 1), profile, policy).features["x"]

    stable, moved = judged(0.0), judged(0.5)
    assert stable.method == moved.method == method
    assert not stable.drift and stable.p_value > 0.01 and stable.how.startswith("permutation")
    assert moved.drift and moved.p_value < moved.alpha and moved.value > stable.value
