"""The console's picture of a model's windows (driftline.console.state), without Kafka."""

from __future__ import annotations

from collections import deque

import numpy as np

from driftline.console.state import place_window


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
