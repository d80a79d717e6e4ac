"""Two-stage windowing, as pure logic (the worker feeds it from Kafka).

Stage 1 (:class:`PartitionWindows`) turns a batch of one source partition's
events into window *deltas*: per model and tumbling event-time window, the
summary of that batch's rows. A row is late when its window's end plus grace
is at or before the watermark (largest event time) its partition had already
reached: decided by the partition's own order, so the same input gives the
same answer however it is batched or restarted.

Stage 2 (:class:`WindowMerger`) adds deltas per model and window and closes a
window once the watermark of every source partition that carries the model
has passed its end plus grace; a partition stops holding windows open only
when its stage-1 reader declares it idle (:mod:`streams.drift.watermarks`), so
the merger decides from its input alone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from driftline.offsets import held_back
from schemas.columns import FeatureFrame, unique_texts
from schemas.rows import Rows
from streams.drift.profile import Profile
from streams.drift.summary import WindowSummary, summarize
from streams.drift.watermarks import SourcePartition, SourceWatermarks

# A partition's rows of one model and window from this many on are summarised alone (see process_batch).
SUMMARISED_ALONE_ROWS = 20_000


@dataclass
class StageOneResult:
    deltas: list[WindowSummary] = field(default_factory=list)
    progress: list[dict[str, Any]] = field(default_factory=list)
    late_rows: int = 0
    unprofiled_rows: int = 0


def window_start(event_time_ms: np.ndarray, window_ms: int) -> np.ndarray:
    return event_time_ms // window_ms * window_ms


class PartitionWindows:
    """Stage 1 state: the watermark of each source partition (restored from checkpoints)."""

    def __init__(self, window_ms: int, grace_ms: int) -> None:
        self.window_ms = window_ms
        self.grace_ms = grace_ms
        self.watermarks: dict[SourcePartition, int] = {}

    def process(
        self,
        source: SourcePartition,
        rows: Rows,
        next_offset: int,
        profiles: dict[str, Profile],
    ) -> StageOneResult:
        """Window deltas for one partition's batch (events in offset order)."""
        return self.process_batch([(source, rows, next_offset)], profiles)

    def process_batch(self, batch: list[tuple[SourcePartition, Rows, int]],
                      profiles: dict[str, Profile]) -> StageOneResult:
        """Window deltas and progress for a polled batch: (source, its events in offset order, the offset
        after them) per partition.

        Lateness is each partition's own (its running watermark); the on-time
        rows of one model and window are then summarised together whatever
        partition they came from: one summary per window instead of one per
        partition and window (a summary costs about twenty numpy calls per
        feature however few its rows), merged by stage 2 like any other delta.
        A partition's piece of ``SUMMARISED_ALONE_ROWS`` or more is its own
        delta: those calls are nothing beside its rows, and joining it to the
        others would copy them (a batch of 100-row events: 100,000 rows of 20
        features, 16 MB a copy).
        """
        out = StageOneResult()
        pieces: dict[tuple[str, int], list[tuple[SourcePartition, FeatureFrame, str]]] = {}
        for source, rows, next_offset in batch:
            if rows.events:
                self._assign(source, rows, next_offset, profiles, out, pieces)
        for (model, start), parts in pieces.items():
            alone = [[part] for part in parts if part[1].rows >= SUMMARISED_ALONE_ROWS]
            together = [part for part in parts if part[1].rows < SUMMARISED_ALONE_ROWS]
            for group in alone + ([together] if together else []):
                frame = group[0][1] if len(group) == 1 else FeatureFrame.concat([f for _, f, _ in group])
                partition = group[0][0][1] if len({p[0] for p in group}) == 1 else -1
                out.deltas.append(summarize(frame, profiles[model], start, start + self.window_ms,
                                            partition=partition, model_version=group[-1][2]))
        return out

    def _assign(self, source: SourcePartition, rows: Rows, next_offset: int, profiles: dict[str, Profile],
                out: StageOneResult, pieces: dict[tuple[str, int], list[tuple[SourcePartition, FeatureFrame, str]]]
                ) -> None:
        """One partition's events: late or not by its watermark, on-time rows to ``pieces`` per model and
        window, the partition's progress per model (every model seen, profiled or not: the decay stage's
        clock) to ``out``."""
        times, counts = rows.times, rows.counts
        previous = self.watermarks.get(source, np.iinfo(np.int64).min)
        running = np.maximum.accumulate(np.concatenate([[previous], times]))
        before = running[:-1]  # the partition's watermark as each event arrived
        starts = window_start(times, self.window_ms)
        late = starts + self.window_ms + self.grace_ms <= before
        self.watermarks[source] = int(running[-1])
        names, model_of = unique_texts(rows.models)
        one_row_each = bool(counts.size) and counts.min() == counts.max() == 1
        for m, model in enumerate(names):
            mine = model_of == m if len(names) > 1 else np.ones(rows.events, dtype=bool)
            on_time = mine & ~late
            late_rows = int(counts[mine & late].sum())
            out.late_rows += late_rows
            on_time_rows = int(counts[on_time].sum())
            if model not in profiles:
                out.unprofiled_rows += on_time_rows
                on_time_rows = 0
            else:
                for start in np.unique(starts[on_time]).tolist():
                    events = on_time & (starts == start)
                    frame = rows.frame.take(events if one_row_each else np.repeat(events, counts))
                    version = rows.versions[int(np.flatnonzero(events)[-1])]
                    pieces.setdefault((model, start), []).append((source, frame, version))
            out.progress.append({
                "model": model, "source_topic": source[0], "source_partition": source[1],
                "watermark": self.watermarks[source], "next_offset": next_offset,
                "rows": on_time_rows, "late_rows": late_rows, "dead_lettered": 0,
            })


@dataclass
class OpenWindow:
    summary: WindowSummary
    first_offsets: dict[int, int] = field(default_factory=dict)  # stats.partial partition -> offset


class WindowMerger:
    """Stage 2 state: open windows, per-partition watermarks, and what is already closed."""

    def __init__(self, window_ms: int, grace_ms: int) -> None:
        self.window_ms = window_ms
        self.grace_ms = grace_ms
        self.open: dict[tuple[str, int], OpenWindow] = {}
        self.watermarks: SourceWatermarks[int] = SourceWatermarks()  # stats.partial partitions
        self.closed: set[tuple[str, int]] = set()
        self.mismatched_reference_rows = 0

    def add_delta(self, delta: WindowSummary, partition: int, offset: int) -> bool:
        """Merge a delta; False when its window is already closed (a replay after a restart)."""
        key = (delta.model, delta.window_start)
        if key in self.closed:
            return False
        window = self.open.get(key)
        if window is None:
            delta.partition = -1
            self.open[key] = OpenWindow(delta, {partition: offset})
        elif window.summary.reference_version != delta.reference_version:
            # The profile changed mid-window: bins differ, so the rows cannot be merged.
            # The window keeps the version it started with; the rest is counted.
            self.mismatched_reference_rows += delta.rows
            return False
        else:
            window.summary = window.summary.merge(delta)
            window.first_offsets.setdefault(partition, offset)
        return True

    def add_progress(self, progress: dict[str, Any], partition: int = -1, offset: int = -1) -> None:
        """A PartitionProgress record (a model's progress on a source, or a source's idle declaration),
        read at ``offset`` of stats.partial's ``partition``."""
        self.watermarks.apply(progress, (partition, offset) if offset >= 0 else None)

    def ready(self) -> list[WindowSummary]:
        """Windows every live source partition has moved past; removed from the open set."""
        done = [key for key in sorted(self.open, key=lambda k: k[1])
                if self.watermarks.passed(key[0], key[1], key[1] + self.window_ms + self.grace_ms)]
        out = []
        for key in done:
            out.append(self.open.pop(key).summary)
            self.closed.add(key)
        return out

    def commit_offsets(self, positions: dict[int, int]) -> dict[int, int]:
        """Offsets of stats.partial safe to commit: before the first delta of any open window and the
        last progress of any live source (so a restart knows every source a window waits for)."""
        held = (item for window in self.open.values() for item in window.first_offsets.items())
        return held_back(positions, chain(held, self.watermarks.holding()))


class RollingView:
    """The merge of each model's last ``windows`` closed windows (slow drift needs more rows)."""

    def __init__(self, windows: int = 10) -> None:
        if windows < 2:
            raise ValueError("a rolling view needs at least 2 windows")
        self.windows = windows
        self._recent: dict[str, list[WindowSummary]] = defaultdict(list)

    def add(self, summary: WindowSummary) -> WindowSummary | None:
        """Record a closed window; the rolling merge once ``windows`` of them are there."""
        recent = self._recent[summary.model]
        if recent and summary.window_start <= recent[-1].window_start:
            return None  # a replay overlap: keep the sequence in window order
        recent.append(summary)
        del recent[:-self.windows]
        if len(recent) < self.windows:
            return None
        merged = recent[0]
        for part in recent[1:]:
            merged = merged.merge(part)
        return WindowSummary(summary.model, recent[0].window_start, summary.window_end, merged.rows,
                             merged.features, -1, summary.model_version, summary.reference_version)
