"""Events a producer sent twice, found as stage 1 reads them, so no window counts their rows twice.

An idempotent producer promises no duplicate only while the brokers keep its
state and it keeps its epoch. librdkafka bumps the epoch when the fate of a
request is unknown across leader changes, and then sends again what was in
flight (confluentinc/librdkafka#4953; its maintainers: "the only option to
ensure EOS in all cases is using transactions"). An application that retries
a send it thinks failed does the same. Seen here once in six runs of the
whole-cluster outage test: one 50-row SDK event twice on the predictions
topic, and so 50 rows counted twice in their window.

An event is known by its model, model version, first request id and event
time (request ids are unique per model by contract, and the label join
relies on it too; but two models may score one request, and a client may
reuse the ``id`` of its inference requests, which a serving node takes as
the request id: a repeat is the same bytes, so the same time too). Per source partition,
:class:`RecentEvents` keeps those of the latest events, at least
``LOOKBACK_EVENTS`` of them, and an event already among them, or earlier
in its own batch, is a repeat (a rollout's shadow predictions are not
traffic and never reach it): stage 1 dead-letters it, with the
offset of the event it repeats, instead of counting it. A re-sent batch
follows its original within what a producer had in flight (at most five
requests per connection), far fewer events than that.

A partition newly assigned (a start, a restart after an outage, a
rebalance) first reads back the events just before its position
(:meth:`EventReader._read_back <driftline.consumer.EventReader>`): the
original may sit before the offset a crashed worker committed, and its
repeat after it.

Per event: the first id's hash, mixed with the rest in numpy, then set
operations in C (~0.1 µs); identities are kept as 64-bit keys (a false match
among 20,000 has odds of 1e-11), at most ~2 MB per partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from schemas.rows import Rows

SourcePartition = tuple[str, int]
LOOKBACK_EVENTS = 10_000  # the latest events remembered per partition (between this and twice this)
LOOKBACK_BYTES = 16 << 20  # a read-back on assignment reads at most about this much


class RepeatedEvent(ValueError):
    """An event whose identity (model, version, first request id, event time) an earlier event of its
    partition had."""


class RecentEvents:
    """Per source partition, the identities (as 64-bit keys: :func:`keys_of`) of its latest events.

    Two generations per partition: keys go into the newer one; when it holds
    ``keep``, it becomes the older one and the oldest generation goes. So at
    least the latest ``keep`` events are always remembered, at no cost per
    event for forgetting. A batch with no repeat (nearly every one) costs a
    set of its keys, two disjointness tests and one union, all in C; the
    offsets are kept beside, in arrays, and searched only for a repeat.
    """

    def __init__(self, keep: int = LOOKBACK_EVENTS) -> None:
        self.keep = keep
        self._newer: dict[SourcePartition, _Generation] = {}
        self._older: dict[SourcePartition, _Generation] = {}

    def knows(self, source: SourcePartition) -> bool:
        """Whether ``source`` has been read back or read since it was (re)assigned."""
        return source in self._newer

    def start(self, source: SourcePartition) -> None:
        """Know ``source`` from here (its read-back, if any, follows)."""
        self._newer.setdefault(source, _Generation())
        self._older.setdefault(source, _Generation())

    def forget(self, sources: Iterable[SourcePartition]) -> None:
        """Partitions (re)assigned: another worker may have read them since; read back again."""
        for source in sources:
            self._newer.pop(source, None)
            self._older.pop(source, None)

    def repeats(self, source: SourcePartition, keys: np.ndarray, offsets: np.ndarray) -> dict[int, int]:
        """Which of these events (in offset order, by their :func:`keys_of`) repeat an earlier one: their
        index -> the earlier one's offset. Every other event is remembered."""
        self.start(source)
        newer, older = self._newer[source], self._older[source]
        listed = keys.tolist()
        batch = set(listed)
        if len(batch) == len(listed) and newer.keys.isdisjoint(batch) and older.keys.isdisjoint(batch):
            newer.add(batch, keys, offsets)  # the common case: no repeat, all in C
            self._rotate(source)
            return {}
        found: dict[int, int] = {}
        here: dict[int, int] = {}
        for i, (key, offset) in enumerate(zip(listed, offsets.tolist(), strict=True)):
            earlier = here.get(key)
            if earlier is None:
                earlier = newer.offset_of(key) if key in newer.keys else older.offset_of(key) \
                    if key in older.keys else None
            if earlier is not None and earlier != offset:
                found[i] = earlier
            else:
                here[key] = offset
        kept = np.setdiff1d(np.arange(len(listed)), np.fromiter(found, dtype=np.int64, count=len(found)))
        newer.add(set(here), keys[kept], offsets[kept])
        self._rotate(source)
        return found

    def _rotate(self, source: SourcePartition) -> None:
        if len(self._newer[source].keys) >= self.keep:
            self._older[source] = self._newer[source]
            self._newer[source] = _Generation()


class _Generation:
    """Keys remembered together (a set, for membership), and their offsets (arrays, for a repeat's reason)."""

    def __init__(self) -> None:
        self.keys: set[int] = set()
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, keys: set[int], key_array: np.ndarray, offsets: np.ndarray) -> None:
        self.keys |= keys
        self._parts.append((key_array, offsets))

    def offset_of(self, key: int) -> int:
        for keys, offsets in self._parts:
            at = np.flatnonzero(keys == key)
            if at.size:
                return int(offsets[at[0]])
        raise KeyError(key)


_TIME_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd multipliers spread a field over all 64 bits before the xor
_NAME_MIX = np.uint64(0xC2B2AE3D27D4EB4F)


def keys_of(models: Sequence[str], versions: Sequence[str], first_ids: Sequence[str], times: np.ndarray
            ) -> np.ndarray:
    """Each event's identity (model, version, first request id, event time) as one 64-bit key: the ids'
    own hashes (one C call each), mixed with the times and the (model, version) pairs in numpy (a tuple
    per event cost three times as much)."""
    count = len(first_ids)
    ids = np.fromiter(map(hash, first_ids), dtype=np.int64, count=count).view(np.uint64)
    if count and models.count(models[0]) == count and versions.count(versions[0]) == count:
        names = np.full(count, hash((models[0], versions[0])), dtype=np.int64).view(np.uint64)
    else:
        names = np.fromiter(map(hash, zip(models, versions, strict=True)), dtype=np.int64, count=count
                            ).view(np.uint64)
    with np.errstate(over="ignore"):
        mixed = ids ^ (np.asarray(times, dtype=np.int64).view(np.uint64) * _TIME_MIX) ^ (names * _NAME_MIX)
    return mixed.view(np.int64)


def identities(rows: Rows, offsets: np.ndarray) -> np.ndarray:
    """Each event's key (:func:`keys_of`); an event of no row has no id: it is known by its offset, and
    never a repeat."""
    counts = rows.counts
    if counts.size and counts.min() == counts.max() == 1:
        firsts = rows.request_ids
    else:
        starts = rows.first_rows.tolist()
        ids = rows.request_ids
        firsts = [ids[s] if c else f"\x00{o}" for s, c, o in zip(starts, counts.tolist(), offsets.tolist(),
                                                                  strict=True)]
    return keys_of(rows.models, rows.versions, firsts, rows.times)


def record_keys(records: Sequence[Mapping[str, Any]], offsets: Sequence[int]) -> np.ndarray:
    """The keys of decoded records (as :func:`identities` finds them from their rows)."""
    firsts = [str((r.get("request_ids") or [f"\x00{o}"])[0]) for r, o in zip(records, offsets, strict=True)]
    return keys_of([str(r["model"]) for r in records], [r.get("model_version") or "" for r in records], firsts,
                   np.fromiter((int(r["event_time"]) for r in records), dtype=np.int64, count=len(records)))
