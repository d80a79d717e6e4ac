"""Joining labels to predictions by request id, with a TTL, as pure logic.

Labels arrive late (minutes to days) and sometimes before the prediction
they belong to, so both sides wait in state until their partner or their
TTL comes. State is organised by *block* (one consumed event: its arrays and
where it came from) with a request-id index pointing at (block, row),
packed into one int (``block << 32 | row``: no tuple per waiting row):
every insert and lookup is a C-level ``dict``/``map`` pass, and the
per-row values stay numpy arrays.

Durability without a changelog: a block stays alive while any of its rows is
waiting or sits in a quality window that has not been published yet, and
the offsets the worker commits never pass the oldest live block. A restarted
worker re-reads from there and rebuilds the same state; rows whose window
was already published are recognised by the published window's key and
skipped, so no pair is counted twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np

from driftline.quality import canonical_labels, label_numbers
from schemas.columns import read_float_buffer

ROW_BITS = 32  # a waiting row's index entry: its block << ROW_BITS | its row in the block
ROW_MASK = (1 << ROW_BITS) - 1


@dataclass
class Block:
    """One consumed event's rows."""

    kind: str  # "prediction" | "label"
    model: str
    source: tuple[str, int]
    offset: int
    event_time: int
    request_ids: list[str]
    values: np.ndarray  # scores (predictions) or canonical class strings (labels)
    numeric: np.ndarray | None = None  # labels as float64 (regression), NaN where not numeric
    classes: np.ndarray | None = None  # predicted classes, when the model gave them
    version: str = ""
    waiting: int = 0  # rows indexed and waiting for their partner
    held: int = 0  # rows in windows not yet published

    @property
    def alive(self) -> bool:
        return self.waiting + self.held > 0


@dataclass
class Pairs:
    """Joined rows of one model version, in arrays."""

    truth: list[np.ndarray] = field(default_factory=list)
    truth_numeric: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    classes: list[np.ndarray | None] = field(default_factory=list)
    blocks: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # block id -> rows held

    @property
    def rows(self) -> int:
        return sum(len(t) for t in self.truth)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        given = [c for c in self.classes if c is not None]
        classes = np.concatenate(given) if given and len(given) == len(self.classes) else None
        return (np.concatenate(self.truth), np.concatenate(self.truth_numeric), np.concatenate(self.scores),
                classes)


@dataclass
class JoinResult:
    joined: int = 0
    expired_predictions: int = 0
    expired_labels: int = 0
    late_labels: int = 0


class LabelJoin:
    """Predictions and labels waiting for each other, and the quality windows they fill.

    A pair belongs to the tumbling window of its *label's* event time (when
    the truth became known) and to the prediction's model version.
    """

    def __init__(self, window_ms: int, grace_ms: int, ttl_ms: int, max_waiting_rows: int = 500_000) -> None:
        self.max_waiting_rows = max_waiting_rows
        self.window_ms = window_ms
        self.grace_ms = grace_ms
        self.ttl_ms = ttl_ms
        self.blocks: dict[int, Block] = {}
        self._next_block = 0
        # request id -> block << ROW_BITS | row, per side
        self.waiting: dict[str, dict[str, int]] = {"prediction": {}, "label": {}}
        self.windows: dict[tuple[str, str, int], Pairs] = {}
        self.published: set[tuple[str, str, int]] = set()  # restored from the quality topic
        self.clock = np.iinfo(np.int64).min  # largest event time of either stream: the TTL's "now"
        self.last_prediction: Block | None = None

    # ------------------------------------------------------------ input
    def add_prediction(self, record: dict[str, Any], source: tuple[str, int], offset: int) -> JoinResult:
        classes = record.get("predicted_class")
        block = Block("prediction", record["model"], source, offset, record["event_time"],
                      record["request_ids"], read_float_buffer(record["prediction"], len(record["request_ids"])),
                      classes=np.asarray(classes, dtype=str) if classes is not None else None,
                      version=record.get("model_version") or "")
        self.last_prediction = block
        return self._add(block)

    def add_label(self, record: dict[str, Any], source: tuple[str, int], offset: int) -> JoinResult:
        block = Block("label", record["model"], source, offset, record["event_time"], record["request_ids"],
                      canonical_labels(record["labels"]), numeric=label_numbers(record["labels"]))
        return self._add(block)

    def _add(self, block: Block) -> JoinResult:
        self.clock = max(self.clock, block.event_time)
        block_id = self._next_block
        self._next_block += 1
        self.blocks[block_id] = block
        other = "label" if block.kind == "prediction" else "prediction"
        partners = np.fromiter(map(self.waiting[other].pop, block.request_ids, repeat(-1)), dtype=np.int64,
                               count=len(block.request_ids))
        found = partners >= 0
        rows = np.arange(len(partners))
        if not found.all():
            unmatched = rows[~found]
            ids = block.request_ids if unmatched.size == len(rows) else \
                [block.request_ids[i] for i in unmatched.tolist()]
            self.waiting[block.kind].update(zip(ids, ((block_id << ROW_BITS) + unmatched).tolist(), strict=True))
            block.waiting += len(ids)
        result = JoinResult()
        if found.any():
            self._pair(block_id, rows[found], partners[found], result)
        if not block.alive:
            del self.blocks[block_id]
        return result

    def _pair(self, block_id: int, rows: np.ndarray, partners: np.ndarray, result: JoinResult) -> None:
        """Put matched rows into windows, grouped per partner block (one numpy gather each); ``partners`` are
        their partners' packed (block, row).

        A pair whose window was already published (a replay after a restart, or a
        label later than the window's close) is counted as late, not added twice.
        """
        partner_ids = partners >> ROW_BITS
        partner_rows = partners & ROW_MASK
        block = self.blocks[block_id]
        for partner_id in np.unique(partner_ids).tolist():
            mine = rows[partner_ids == partner_id]
            theirs = partner_rows[partner_ids == partner_id]
            partner = self.blocks[partner_id]
            prediction, p_rows, label, l_rows, l_id, p_id = (
                (block, mine, partner, theirs, partner_id, block_id) if block.kind == "prediction"
                else (partner, theirs, block, mine, block_id, partner_id))
            start = label.event_time // self.window_ms * self.window_ms
            key = (prediction.model, prediction.version, start)
            partner.waiting -= len(theirs)
            if key in self.published:
                result.late_labels += len(mine)
                if not partner.alive:
                    del self.blocks[partner_id]
                continue
            pairs = self.windows.setdefault(key, Pairs())
            pairs.truth.append(label.values[l_rows])
            pairs.truth_numeric.append(label.numeric[l_rows] if label.numeric is not None
                                       else np.full(len(l_rows), np.nan))
            pairs.scores.append(prediction.values[p_rows])
            pairs.classes.append(prediction.classes[p_rows] if prediction.classes is not None else None)
            pairs.blocks[l_id] += len(l_rows)
            pairs.blocks[p_id] += len(p_rows)
            block.held += len(mine)
            partner.held += len(theirs)
            result.joined += len(mine)

    # ------------------------------------------------------------ time
    def expire(self, now_ms: int) -> JoinResult:
        """Drop rows that waited longer than the TTL (by event time against ``now_ms``).

        Memory is bounded too: past ``max_waiting_rows`` waiting rows, the oldest
        blocks are dropped the same way (counted, like an expiry), so a model
        whose labels never come cannot grow the worker without limit.
        """
        result = JoinResult()
        waiting = len(self.waiting["prediction"]) + len(self.waiting["label"])
        for block_id, block in list(self.blocks.items()):
            over = waiting > self.max_waiting_rows
            if block.event_time >= now_ms - self.ttl_ms and not over:
                continue
            if block.waiting > 0:
                index = self.waiting[block.kind]
                mine = [rid for rid in block.request_ids if index.get(rid, -1) >> ROW_BITS == block_id]
                for rid in mine:
                    del index[rid]
                waiting -= len(mine)
                if block.kind == "prediction":
                    result.expired_predictions += len(mine)
                else:
                    result.expired_labels += len(mine)
                block.waiting = 0  # ids a later duplicate took over are not this block's any more
            if not block.alive:
                del self.blocks[block_id]
        return result

    def closable(self, ready: Callable[[tuple[str, str, int]], bool]) -> list[tuple[str, str, int]]:
        """The windows ``ready`` lets close. When is the stage's to say (it knows every source's watermark):
        the newest label seen here is not it, since another label partition may still be behind."""
        return sorted(key for key in self.windows if ready(key))

    def close(self, key: tuple[str, str, int]) -> Pairs:
        """Take a window out of state (after the caller published it)."""
        pairs = self.windows.pop(key)
        self.published.add(key)
        for block_id, held in pairs.blocks.items():
            block = self.blocks.get(block_id)
            if block is not None:
                block.held -= held
                if not block.alive:
                    del self.blocks[block_id]
        return pairs

    # ------------------------------------------------------------ offsets
    def holding(self) -> Iterator[tuple[tuple[str, int], int]]:
        """(partition, offset) of each live block: commits are held back to the oldest."""
        return ((block.source, block.offset) for block in self.blocks.values())
