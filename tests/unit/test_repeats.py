"""Events a producer sent twice (driftline.repeats): found within a batch, across batches and generations,
forgotten on reassignment; the independent reckoning is a plain set of every identity seen in the window."""

from __future__ import annotations

import numpy as np

from driftline.repeats import RecentEvents, identities, keys_of, record_keys
from schemas import FeatureFrame, encode_columns
from schemas.rows import PREDICTION, Rows

SOURCE = ("predictions", 0)


def keys(*ids: str) -> np.ndarray:
    """Events of one model, version and time, told apart by their first request ids."""
    return keys_of(["m"] * len(ids), [""] * len(ids), list(ids), np.zeros(len(ids), dtype=np.int64))


def test_a_repeat_is_found_in_its_own_batch_and_in_a_later_one() -> None:
    recent = RecentEvents(keep=100)
    first = recent.repeats(SOURCE, keys("a", "b", "a", "c"), np.array([10, 11, 12, 13]))
    assert first == {2: 10}
    assert recent.repeats(SOURCE, keys("d", "b", "e"), np.array([14, 15, 16])) == {1: 11}
    assert recent.repeats(("predictions", 1), keys("a"), np.array([3])) == {}  # another partition's own events


def test_repeats_are_found_against_at_least_the_latest_keep_events_whatever_the_batches() -> None:
    """Random ids from a small pool (so repeats happen), in random batch sizes: every repeat of one of the
    latest ``keep`` events is found, with the earlier event's offset, and nothing else is."""
    rng = np.random.default_rng(4)
    keep = 50
    recent = RecentEvents(keep=keep)
    seen: dict[str, int] = {}  # id -> offset of its latest remembered event (the reference)
    offset = 0
    for _ in range(300):
        size = int(rng.integers(1, 40))
        ids = [f"r{int(v)}" for v in rng.integers(0, 400, size)]
        offsets = np.arange(offset, offset + size)
        found = recent.repeats(SOURCE, keys(*ids), offsets)
        for i, rid in enumerate(ids):
            earlier = seen.get(rid)
            must = earlier is not None and offsets[i] - earlier <= keep and i not in found
            # within the latest keep events: always found; older ones may or may not be remembered
            assert not must, (rid, offsets[i], earlier)
            if i in found:
                assert found[i] == earlier
            else:
                seen[rid] = int(offsets[i])
        offset += size


def test_a_reassigned_partition_is_unknown_until_read_back() -> None:
    recent = RecentEvents()
    recent.repeats(SOURCE, keys("a"), np.array([0]))
    assert recent.knows(SOURCE)
    recent.forget([SOURCE])
    assert not recent.knows(SOURCE)
    assert recent.repeats(SOURCE, keys("a"), np.array([5])) == {}


def test_an_event_is_known_by_model_version_and_first_request_id_alike_from_rows_and_records() -> None:
    """Two models may score one request, a client may reuse a request id later; an event of no row is
    never a repeat."""
    records = [{"model": m, "model_version": v, "event_time": t, "request_ids": ids, "segment": None,
                "columns": encode_columns({"x": np.zeros(len(ids))}) if ids else FeatureFrame.no_columns(0).to_record(),
                "prediction": np.zeros(len(ids)).tobytes(), "predicted_class": None}
               for m, v, t, ids in [("a", "1", 0, ["r1", "r2"]), ("b", "1", 0, ["r1"]), ("a", "2", 0, ["r1", "r9"]),
                                    ("a", "1", 0, []), ("a", "1", 5, ["r1"])]]
    offsets = np.array([7, 8, 9, 10, 11])
    rows = Rows.from_records(PREDICTION, records)
    found = identities(rows, offsets)
    assert found.tolist() == record_keys(records, offsets.tolist()).tolist()
    assert len(set(found.tolist())) == 5
    assert RecentEvents().repeats(SOURCE, np.append(found, found[:1]), np.append(offsets, 12)) == {5: 7}
    mixed = keys_of(["a", "b"] * 3, ["1"] * 6, ["r1", "r1", "r2", "r2", "r1", "r1"], np.array([0, 0, 0, 0, 5, 5]))
    assert len(set(mixed.tolist())) == 6  # model, id and time each tell events apart, one or many models
