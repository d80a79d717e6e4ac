"""Events a producer sent twice, found as stage 1 reads them, so no window counts their rows twice.

An idempotent producer promises no duplicate only while the brokers keep its
state and it keeps its epoch. librdkafka bumps the epoch when the fate of a
request is unknown across leader changes, and then sends again what was in
flight (confluentinc/librdkafka#4953; its maintainers: "the only option to
ensure EOS in all cases is using transactions"). An application that retries
a send it thinks failed does the same. Seen here once in six runs of the
whole-cluster outage test: one 50-row SDK event twice on the predictions
topic, and so 50 rows counted twice in their window.

An event is known by its model, model version and first request id
(request ids are unique per model by contract; the label join relies on it
too; two models may score one request). Per source partition,
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

Per event, in C: one hash, a dict insertion, two disjointness tests; the
identities are kept as their hashes (64 bits: a false match among 20,000
has odds of 1e-11), at most ~2 MB per partition.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from schemas.rows import Rows

SourcePartition = tuple[str, int]
LOOKBACK_EVENTS = 10_000  # the latest events remembered per partition (between this and twice this)
LOOKBACK_BYTES = 16 << 20  # a read-back on assignment reads at most about this much


class RepeatedEvent(ValueError):
    """An event whose identity (model, version, first request id) an earlier event of its partition had."""


class RecentEvents:
    """Per source partition, the identities (hashed) of its latest events, and their offsets.

    Two generations per partition: ids go into the newer one; when it holds
    ``keep``, it becomes the older one and the oldest generation goes. So at
    least the latest ``keep`` events are always remembered, at no cost per
    event for forgetting.
    """

    def __init__(self, keep: int = LOOKBACK_EVENTS) -> None:
        self.keep = keep
        self._newer: dict[SourcePartition, dict[int, int]] = {}
        self._older: dict[SourcePartition, dict[int, int]] = {}

    def knows(self, source: SourcePartition) -> bool:
        """Whether ``source`` has been read back or read since it was (re)assigned."""
        return source in self._newer

    def start(self, source: SourcePartition) -> None:
        """Know ``source`` from here (its read-back, if any, follows)."""
        self._newer.setdefault(source, {})
        self._older.setdefault(source, {})

    def forget(self, sources: Iterable[SourcePartition]) -> None:
        """Partitions (re)assigned: another worker may have read them since; read back again."""
        for source in sources:
            self._newer.pop(source, None)
            self._older.pop(source, None)

    def repeats(self, source: SourcePartition, identities: Sequence[Hashable], offsets: np.ndarray
                ) -> dict[int, int]:
        """Which of these events (in offset order) repeat an earlier one: their index -> the earlier one's
        offset. Every other event is remembered."""
        self.start(source)
        newer, older = self._newer[source], self._older[source]
        hashes = list(map(hash, identities))
        batch = dict(zip(hashes, offsets.tolist(), strict=True))
        if len(batch) == len(hashes) and newer.keys().isdisjoint(batch) and older.keys().isdisjoint(batch):
            newer.update(batch)  # the common case: no repeat, all in C
            self._rotate(source)
            return {}
        found: dict[int, int] = {}
        for i, (key, offset) in enumerate(zip(hashes, offsets.tolist(), strict=True)):
            earlier = newer.get(key, older.get(key))
            if earlier is not None and earlier != offset:
                found[i] = earlier
            else:
                newer[key] = offset
        self._rotate(source)
        return found

    def _rotate(self, source: SourcePartition) -> None:
        if len(self._newer[source]) >= self.keep:
            self._older[source] = self._newer[source]
            self._newer[source] = {}


def identities(rows: Rows, offsets: np.ndarray) -> list[tuple[str, str, str]]:
    """Each event's (model, version, first request id); an event of no row has no id: it is known by its
    offset, and never a repeat."""
    counts = rows.counts
    if counts.size and counts.min() == counts.max() == 1:
        firsts = rows.request_ids
    else:
        starts = (np.cumsum(counts) - counts).tolist()
        ids = rows.request_ids
        firsts = [ids[s] if c else f"\x00{o}" for s, c, o in zip(starts, counts.tolist(), offsets.tolist(),
                                                                  strict=True)]
    return list(zip(rows.models, rows.versions, firsts, strict=True))


def identity(record: Mapping[str, Any], offset: int) -> tuple[str, str, str]:
    """An event's identity from its decoded record (as :func:`identities` finds it from its rows)."""
    ids = record.get("request_ids") or [f"\x00{offset}"]
    return str(record["model"]), record.get("model_version") or "", str(ids[0])
