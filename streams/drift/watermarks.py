"""When a window may close: the event-time watermark of every source partition, and which are idle.

A window of a model closes once every source partition that carries the
model has passed its end plus grace. A source partition that stops sending
must not hold windows open for ever, so it can be declared *idle*; the
question is who may declare it.

Earlier, the stage that closes windows did, by its own wall clock: a source
whose progress it had not seen for ``--idle`` seconds stopped counting. That
confuses "the source has nothing to say" with "I have not heard from it":
when the worker stalled (a broker failover blocked its transaction for a few
seconds) or a stage-1 worker was restarting, every source looked idle at
once and open windows closed with part of their rows; the rest arrived late
and was left out (CI saw a window of 600 rows where 1,000 were sent).

Now only the reader of a source declares it idle, and only once it has
*verified* it: its position has been at the partition's end (asked of the
partition's leader) continuously for ``idle`` seconds with no record arriving
(:class:`QuietSources`). A source that is unreachable, lagging, or whose
reader is down is never idle — it holds windows until it is read again. The
declaration travels in the topics, in order with the data
(:class:`SourceWatermarks` applies it), so the closing stages decide from
their input alone, with no clock of their own.

A source's watermark is the same for every model it carries (lateness is
decided per source partition), but stage 1's progress records are per model
and keyed by it. A model whose traffic stopped on a source that others
still use would then never see that source move on, and its last window
would wait for ever. So stage 1 also sends *source progress* (model ``""``)
to every partition of the closing stages' topics each time the source's
watermark passes another window's close (:func:`source_progress`), as
stream processors broadcast watermarks to every downstream channel. A
closing stage applies a copy only to the models whose own records share
its partition: the copy is ordered after those models' rows there, not
after other partitions'.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

SourcePartition = tuple[str, int]
K = TypeVar("K")  # how the closing stage names a partition of its own input
# A PartitionProgress record with this model speaks of its source for every model (watermark, or idle).
ANY_MODEL = ""
# The watermark of a source nothing was read from yet.
NO_WATERMARK = -(1 << 63)


def source_progress(source: SourcePartition, watermark: int, next_offset: int, *, idle: bool) -> dict[str, Any]:
    """The PartitionProgress record that speaks of ``source`` for every model: its watermark, or idle."""
    return {"model": ANY_MODEL, "source_topic": source[0], "source_partition": source[1],
            "watermark": watermark, "next_offset": next_offset, "rows": 0, "late_rows": 0, "dead_lettered": 0,
            "idle": idle}


def closes_passed(watermark: int, window_ms: int, grace_ms: int) -> int:
    """How many window closes (start + window + grace) a watermark has passed: source progress is sent
    when this grows."""
    return (watermark - grace_ms) // window_ms


class SourceWatermarks(Generic[K]):
    """Per model, each source partition's watermark and whether its reader declared it idle.

    ``expected`` is every source partition a window may wait on (the closing
    stage reads it from the topics' metadata): one never heard from *holds*
    every window. Without that, a window closed on the sources that happened
    to report first — at start-up, before the other worker's first batch —
    and the rest of its rows came too late (CI saw estimated windows of 200
    of their 400 rows). Stage 1 reports each source as soon as it is
    assigned, so the wait is one batch, or ``--idle`` seconds for a source
    with nothing to read.

    It also remembers where in the closing stage's own input each live
    source's last progress record sits (``at``), so that stage can hold its
    committed offsets back to them (:meth:`holding`).
    """

    def __init__(self, expected: Iterable[SourcePartition] = ()) -> None:
        self.expected: set[SourcePartition] = set(expected)
        self.marks: dict[str, dict[SourcePartition, tuple[int, bool]]] = {}
        # Source progress as heard on each input partition — (watermark, idle, where the record is) — what a
        # model first seen there starts from, and where a model followed there holds commits back to.
        self._heard: dict[K | None, dict[SourcePartition, tuple[int, bool, tuple[K, int] | None]]] = \
            defaultdict(dict)
        self._last: dict[tuple[str, SourcePartition], tuple[K, int]] = {}
        self._home: dict[str, K] = {}  # the input partition a model's records arrive on

    def expect(self, sources: Iterable[SourcePartition]) -> None:
        """Every source partition there is now (a topic may gain partitions)."""
        self.expected = set(sources)

    def apply(self, progress: dict[str, Any], at: tuple[K, int] | None = None) -> None:
        """A PartitionProgress record: a model's progress on a source, or the source's own (model ``""``).

        ``at``: the (partition, offset) of the record in the closing stage's input.
        """
        source = (progress["source_topic"], progress["source_partition"])
        watermark = int(progress["watermark"])
        here = at[0] if at is not None else None
        if progress["model"] == ANY_MODEL:
            idle = bool(progress.get("idle", False))
            heard = self._heard[here]
            heard[source] = (max(heard[source][0], watermark) if source in heard else watermark, idle, at)
            for model, marks in self.marks.items():
                if at is not None and self._home.get(model) != here:
                    continue  # a copy not ordered after this model's rows
                marks[source] = (max(marks[source][0], watermark) if source in marks else watermark, idle)
                if idle:
                    self._last.pop((model, source), None)  # an idle source need not be re-read
                elif at is not None:
                    self._last[(model, source)] = at
            return
        model = progress["model"]
        if model not in self.marks:  # first seen: it starts from what this partition heard of every source
            self.marks[model] = self.heard(here)
        marks = self.marks[model]
        marks[source] = (max(marks[source][0], watermark) if source in marks else watermark, False)
        if at is not None:
            self._home[model] = at[0]
            self._last[(model, source)] = at

    def follow(self, model: str, partition: K) -> None:
        """Track a model whose sources only ever speak for every model (labels carry no per-model progress):
        it lives on ``partition`` and starts from what that partition heard, holding commits back likewise."""
        if model in self.marks and self._home.get(model) == partition:
            return
        self.marks[model] = self.heard(partition)
        self._home[model] = partition
        for source, (_, idle, at) in self._heard.get(partition, {}).items():
            if not idle and at is not None:
                self._last[(model, source)] = at

    def home(self, model: str) -> K | None:
        """The input partition the model's records arrive on (None before its first progress record)."""
        return self._home.get(model)

    def heard(self, partition: K | None) -> dict[SourcePartition, tuple[int, bool]]:
        """Source progress as heard on one input partition: {source: (watermark, idle)} (a copy)."""
        return {source: (watermark, idle) for source, (watermark, idle, _) in self._heard.get(partition, {}).items()}

    def holding(self) -> Iterator[tuple[K, int]]:
        """Where each live source's last progress record is: offsets to hold commits back to."""
        return iter(self._last.values())

    def passed(self, model: str, start: int, limit: int) -> bool:
        """Whether the window ``[start, …)`` whose close is due at event time ``limit`` may close.

        Every expected source has been heard from, and every live one is at
        or past ``limit``; when all of them are idle (the stream stopped),
        every window that has begun closes.
        """
        marks = self.marks.get(model)
        if not marks or not self.expected <= marks.keys():
            return False
        live = [watermark for watermark, idle in marks.values() if not idle]
        if live:
            return min(live) >= limit
        return max(watermark for watermark, _ in marks.values()) >= start


class QuietSources:
    """The reader's side: which of its source partitions have been verifiably quiet for ``idle_s``.

    ``checked`` is fed with the answer to "is my position at the partition's
    end?", asked of the broker (a failed or unanswered check counts as no).
    A source is quiet from the first such yes until a record arrives or a
    check says no; once quiet for ``idle_s`` it is due for a declaration,
    repeated every ``idle_s`` while it stays quiet (a closing stage that
    restarted has forgotten the last one).
    """

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._quiet_since: dict[SourcePartition, float] = {}
        self._declared_at: dict[SourcePartition, float] = {}

    def saw_records(self, source: SourcePartition) -> None:
        self._quiet_since.pop(source, None)
        self._declared_at.pop(source, None)

    def checked(self, source: SourcePartition, at_end: bool, now: float) -> None:
        if at_end:
            self._quiet_since.setdefault(source, now)
        else:
            self.saw_records(source)

    def forget(self, keep: set[SourcePartition]) -> None:
        """Drop the sources no longer assigned to this reader."""
        for state in (self._quiet_since, self._declared_at):
            for source in [s for s in state if s not in keep]:
                del state[source]

    def due(self, now: float) -> list[SourcePartition]:
        """Sources to declare idle now (first declarations and repeats); marked as declared."""
        out = []
        for source, since in self._quiet_since.items():
            if now - since < self.idle_s:
                continue
            declared = self._declared_at.get(source)
            if declared is None or now - declared >= self.idle_s:
                self._declared_at[source] = now
                out.append(source)
        return sorted(out)
