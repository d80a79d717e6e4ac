"""The console's picture of a model's windows (driftline.console.state), without Kafka."""

from __future__ import annotations

from collections import deque

import numpy as np

from driftline.console.state import RecentAnswers, place_window


def test_a_models_windows_stay_in_order_of_their_start_however_they_arrive() -> None:
    """The ring against a sort of everything that arrived: windows from several stats partitions come in
    any order, a replay replaces its window, and only the newest ``maxlen`` are kept."""
    rng = np.random.default_rng(2)
    ring: deque = deque(maxlen=5)
    arrived: dict[int, int] = {}
    for k, start in enumerate(rng.integers(0, 9, 60).tolist()):
        place_window(ring, {"window_start": start, "seen": k})
        arrived[start] = k
        assert [w["window_start"] for w in ring] == sorted(arrived)[-5:]
        assert all(w["seen"] == arrived[w["window_start"]] for w in ring), "a replay replaces its window"


def test_answers_are_counted_over_the_last_window_and_kept_no_longer() -> None:
    """Versions answered in the last minute, against a direct count over every answer; what is older is
    forgotten, so the entries kept are the last minute's traffic however long the console runs."""
    rng = np.random.default_rng(3)
    recent = RecentAnswers(60.0)
    every: list[tuple[float, str, str, int]] = []
    now = 1000.0
    for _ in range(20_000):  # about 150 answers a second for two minutes and more
        now += float(rng.exponential(1 / 150))
        entry = (now, str(rng.choice(["churn", "loans"])), f"{int(rng.integers(1, 3))}@n{int(rng.integers(2))}",
                 int(rng.integers(1, 5)))
        every.append(entry)
        recent.add(*entry)
        if len(every) % 1000 == 0:  # exactly the answers of the last minute
            assert len(recent) == sum(1 for at, *_ in every if now - at <= 60.0)
    later = now + 30.0
    want: dict[tuple[str, str], int] = {}
    for at, model, version, rows in every:
        if later - at <= 60.0:
            want[(model, version)] = want.get((model, version), 0) + rows
    assert dict(recent.counts(later)) == want
    assert len(recent) == sum(1 for at, *_ in every if later - at <= 60.0) < 150 * 45
    assert dict(recent.counts(later + 61.0)) == {} and len(recent) == 0
