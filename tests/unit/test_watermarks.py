"""When windows close: per-model source watermarks, idle declared by the reader only (no closing-side clock)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.drift.watermarks import ANY_MODEL, QuietSources, SourceWatermarks, closes_passed, source_progress

P0, P1, F0 = ("predictions", 0), ("predictions", 1), ("features", 0)


def progress(model: str, source: tuple[str, int], watermark: int) -> dict:
    return {"model": model, "source_topic": source[0], "source_partition": source[1], "watermark": watermark,
            "next_offset": 0, "rows": 1, "late_rows": 0, "dead_lettered": 0}


def test_a_window_waits_for_the_slowest_live_source_however_long_it_is_silent():
    marks = SourceWatermarks()
    marks.apply(progress("m", P0, 500))
    marks.apply(progress("m", P1, 5_000))
    # The merger has no clock: a source that stopped reporting (its worker stalled, restarting, or its
    # leader failing over) holds the window; the old rule closed it after --idle seconds of wall time.
    assert not marks.passed("m", 0, 1_000)
    marks.apply(progress("m", P0, 1_000))
    assert marks.passed("m", 0, 1_000)
    assert not marks.passed("m", 1_000, 2_000)


def test_an_idle_declaration_releases_its_source_for_every_model_and_nothing_else():
    marks = SourceWatermarks()
    marks.apply(progress("m", P0, 500))
    marks.apply(progress("m", P1, 5_000))
    marks.apply(progress("other", P1, 100))
    marks.apply(source_progress(P0, 500, 10, idle=True))
    assert marks.passed("m", 0, 1_000), "P0 is idle: P1 alone decides for m"
    assert not marks.passed("other", 0, 1_000), "P0 is idle for 'other' too, but its P1 is behind"
    marks.apply(progress("m", P0, 600))  # rows again: live again, and behind
    assert not marks.passed("m", 1_000, 2_000)


def test_when_every_source_is_idle_every_window_that_began_closes_and_none_that_did_not():
    marks = SourceWatermarks()
    marks.apply(progress("m", P0, 1_500))
    marks.apply(progress("m", F0, 1_200))
    marks.apply(source_progress(P0, 1_500, 3, idle=True))
    assert not marks.passed("m", 1_000, 2_000)
    marks.apply(source_progress(F0, 1_200, 3, idle=True))
    assert marks.passed("m", 1_000, 2_000), "the stream stopped: the last window closes with what it has"
    assert not marks.passed("m", 2_000, 3_000)
    assert not marks.passed("unknown", 0, 1), "no source ever spoke of this model"


def test_source_progress_is_a_progress_record_for_any_model_and_encodes():
    from schemas import Codec

    record = source_progress(P1, 42, 7, idle=True)
    assert record["model"] == ANY_MODEL and record["watermark"] == 42 and record["next_offset"] == 7
    assert record["rows"] == record["late_rows"] == 0 and record["idle"]
    codec = Codec.default()
    assert codec.decode(codec.encode("driftline.PartitionProgress", record), "driftline.PartitionProgress") == record


def test_a_model_whose_traffic_stopped_hears_its_sources_move_on_through_source_progress():
    marks: SourceWatermarks[int] = SourceWatermarks()
    marks.apply(progress("retired", P0, 900), at=(0, 10))
    marks.apply(progress("busy", P0, 900), at=(1, 10))
    assert not marks.passed("retired", 0, 1_000)
    # P0 goes on carrying 'busy' only; its source progress reaches every partition.
    marks.apply(source_progress(P0, 2_500, 50, idle=False), at=(1, 60))
    assert marks.passed("busy", 1_000, 2_000)
    assert not marks.passed("retired", 0, 1_000), "the copy on partition 1 is not ordered after its rows"
    marks.apply(source_progress(P0, 2_500, 50, idle=False), at=(0, 61))
    assert marks.passed("retired", 0, 1_000)
    assert sorted(marks.holding()) == [(0, 61), (1, 60)], "commits wait only for each source's last word"


def test_commits_hold_back_to_live_sources_last_progress_and_not_to_idle_ones():
    marks: SourceWatermarks[int] = SourceWatermarks()
    marks.apply(progress("m", P0, 100), at=(0, 5))
    marks.apply(progress("m", P1, 100), at=(0, 7))
    marks.apply(progress("m", P1, 200), at=(0, 9))
    assert sorted(marks.holding()) == [(0, 5), (0, 9)]
    marks.apply(source_progress(P0, 100, 3, idle=True), at=(0, 12))
    assert sorted(marks.holding()) == [(0, 9)]


def test_source_progress_is_sent_each_time_the_watermark_passes_a_window_close():
    # windows of 1000 ms, grace 200: closes at 1200, 2200, ...
    assert closes_passed(1_199, 1_000, 200) == 0
    assert closes_passed(1_200, 1_000, 200) == 1
    assert closes_passed(2_199, 1_000, 200) == 1
    assert closes_passed(2_200, 1_000, 200) == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([P0, P1, F0]), st.integers(0, 100)), min_size=1, max_size=60),
       st.integers(0, 5))
def test_a_window_is_closable_exactly_when_the_minimum_over_its_sources_passed_it(steps, grace):
    """Sources advance in any interleaving (each in its own order, as a partition's progress is): checked
    against the minimum computed here over every source seen."""
    marks = SourceWatermarks()
    seen: dict[tuple[str, int], int] = {}
    for source, step in steps:
        watermark = max(seen.get(source, 0), step * 10)
        seen[source] = watermark
        marks.apply(progress("m", source, watermark))
        low = min(seen.values())
        for start in range(0, 1_100, 100):
            closable = marks.passed("m", start, start + 100 + grace)
            assert closable == (low >= start + 100 + grace)


def test_quiet_sources_are_due_after_idle_seconds_of_verified_quiet_and_then_every_idle_seconds():
    quiet = QuietSources(idle_s=3.0)
    quiet.checked(P0, True, now=0.0)
    quiet.checked(P1, True, now=0.0)
    assert quiet.due(2.9) == []
    quiet.saw_records(P1)  # a record: quiet starts again from the next check
    quiet.checked(P1, True, now=2.0)
    assert quiet.due(3.0) == [P0]
    assert quiet.due(4.0) == [], "declared once"
    assert quiet.due(5.0) == [P1]
    assert quiet.due(6.0) == [P0], "repeated every idle_s while quiet (a restarted merger forgot it)"


def test_a_failed_or_behind_check_is_not_quiet_and_restarts_the_clock():
    quiet = QuietSources(idle_s=3.0)
    quiet.checked(P0, True, now=0.0)
    quiet.checked(P0, False, now=2.0)  # the leader did not answer, or the reader is behind
    quiet.checked(P0, True, now=2.5)
    assert quiet.due(5.0) == []
    assert quiet.due(5.5) == [P0]
    quiet.forget({P1})  # revoked
    assert quiet.due(100.0) == []


def test_a_source_never_heard_from_holds_every_window():
    """At start-up one worker's sources report first: a window must not close on them alone."""
    marks: SourceWatermarks[int] = SourceWatermarks(expected={P0, P1})
    marks.apply(progress("m", P0, 9_000), at=(0, 1))
    assert not marks.passed("m", 0, 1_000), "P1's reader has not said anything yet"
    marks.apply(source_progress(P1, -(1 << 63), 0, idle=False), at=(0, 2))  # assigned, nothing read yet
    assert not marks.passed("m", 0, 1_000)
    marks.apply(source_progress(P1, 1_000, 5, idle=False), at=(0, 3))
    assert marks.passed("m", 0, 1_000)
    marks.expect({P0, P1, ("predictions", 2)})  # the topic gained a partition
    assert not marks.passed("m", 0, 1_000)


def test_a_model_first_seen_on_a_partition_starts_from_what_that_partition_heard():
    marks: SourceWatermarks[int] = SourceWatermarks(expected={P0, P1})
    marks.apply(source_progress(P1, 4_000, 5, idle=False), at=(1, 1))
    marks.apply(source_progress(P1, 2_000, 5, idle=True), at=(0, 1))
    marks.apply(progress("m", P0, 3_000), at=(0, 2))
    assert marks.passed("m", 0, 3_000), "P1 was declared idle on m's partition before m's first rows"
    assert marks.heard(0) == {P1: (2_000, True)} and marks.heard(1) == {P1: (4_000, False)}


def test_sources_that_only_speak_for_every_model_are_followed_on_the_models_home_partition():
    """Label partitions carry no per-model progress: the decay stage follows them for a model on the
    partition its rows arrive on, and the slowest live one decides, not the newest label seen."""
    L0, L1 = ("labels", 0), ("labels", 1)
    marks: SourceWatermarks[int] = SourceWatermarks(expected={L0, L1})
    marks.apply(source_progress(L0, 9_000, 5, idle=False), at=(0, 1))  # one worker's labels run ahead
    marks.apply(source_progress(L1, 9_000, 5, idle=False), at=(1, 1))  # (on another partition: not m's)
    marks.follow("m", 0)
    assert not marks.passed("m", 0, 1_000), "L1 has not spoken on m's partition"
    assert sorted(marks.holding()) == [(0, 1)], "commits wait for what m's partition heard"
    marks.apply(source_progress(L1, 500, 7, idle=False), at=(0, 2))  # the restarting worker's labels, behind
    assert not marks.passed("m", 0, 1_000)
    marks.apply(source_progress(L1, 1_000, 9, idle=False), at=(0, 3))
    assert marks.passed("m", 0, 1_000) and not marks.passed("m", 9_000, 10_000)
    assert sorted(marks.holding()) == [(0, 1), (0, 3)]
    marks.apply(source_progress(L1, 1_000, 9, idle=True), at=(0, 4))
    assert marks.passed("m", 8_000, 9_000), "the slow partition stopped: the fast one decides"
    assert not marks.passed("m", 9_000, 10_000)
    marks.follow("m", 0)  # again: nothing forgotten
    assert marks.passed("m", 8_000, 9_000)
