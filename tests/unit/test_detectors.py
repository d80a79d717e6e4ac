"""river detectors over window means: quiet on stable data, catch what single windows miss."""

from __future__ import annotations

import numpy as np
import pytest

from schemas import Table
from streams.drift.decision import compare
from streams.drift.detectors import WindowMeanDetectors
from streams.drift.profile import Profile
from streams.drift.summary import summarize

TYPES = {"x": "float", "y": "float"}


@pytest.fixture(scope="module")
def profile():
    rng = np.random.default_rng(0)
    return Profile.build(Table({"x": rng.normal(size=20_000), "y": rng.normal(size=20_000)}, TYPES), "m")


def window(profile, rng, start, shift=0.0, rows=500):
    cols = {"x": rng.normal(size=rows) + shift, "y": rng.normal(size=rows)}
    return summarize(Table(cols, TYPES).to_frame(), profile, start, start + 1)


def test_detectors_stay_quiet_on_stable_windows(profile):
    rng = np.random.default_rng(1)
    detectors = WindowMeanDetectors()
    detections = [d for i in range(300) for d in detectors.update(window(profile, rng, i), profile)]
    print(f"detections in 300 stable windows x 2 features x 3 detectors: {len(detections)}")
    assert len(detections) <= 2


def test_small_sustained_shift_is_caught_by_detectors_not_by_single_windows(profile):
    rng = np.random.default_rng(2)
    detectors = WindowMeanDetectors()
    for i in range(30):
        detectors.update(window(profile, rng, i), profile)
    caught_at, single_window_flags = None, 0
    for i in range(30, 60):
        summary = window(profile, rng, i, shift=0.1)
        single_window_flags += compare(summary, profile).features["x"].drift
        found = [d for d in detectors.update(summary, profile) if d.feature == "x"]
        if found and caught_at is None:
            caught_at = i - 30
    print(f"0.1-std shift, 500-row windows: detector after {caught_at} windows; "
          f"single-window test flagged {single_window_flags} of 30")
    assert caught_at is not None and caught_at < 20
    assert single_window_flags < 15, "the shift is small enough that single windows mostly miss it"


def test_replayed_windows_do_not_feed_twice(profile):
    rng = np.random.default_rng(3)
    detectors = WindowMeanDetectors()
    summary = window(profile, rng, 10)
    detectors.update(summary, profile)
    assert detectors.update(summary, profile) == []


def test_rolling_view_catches_a_shift_single_windows_miss_and_equals_one_merge(profile):
    from streams.drift.windows import RollingView

    rng = np.random.default_rng(4)
    view = RollingView(10)
    assert all(view.add(window(profile, rng, i)) is None for i in range(9))
    shifted = [window(profile, rng, i, shift=0.12) for i in range(9, 19)]
    single = sum(compare(s, profile).features["x"].drift for s in shifted)
    rolled = [view.add(s) for s in shifted]
    last = rolled[-1]
    assert last.rows == 10 * 500 and last.window_start == 9
    assert last.features["x"].count == sum(s.features["x"].count for s in shifted)
    report = compare(last, profile)
    print(f"0.12-std shift: single 500-row windows flagged {single}/10; rolling 10-window view: "
          f"{'flagged' if report.features['x'].drift else 'missed'} ({report.features['x'].method})")
    assert report.features["x"].drift and single < 5
    assert not compare(last, profile).features["y"].drift


def test_merger_keeps_a_window_on_the_profile_version_it_started_with(profile):
    from streams.drift.windows import WindowMerger

    rng = np.random.default_rng(5)
    merger = WindowMerger(1, 0)
    first = window(profile, rng, 0)
    other = window(profile, rng, 0)
    other.reference_version = "2"
    assert merger.add_delta(first, 0, 0)
    assert not merger.add_delta(other, 0, 1)
    assert merger.mismatched_reference_rows == 500
    assert merger.open[("m", 0)].summary.rows == 500
