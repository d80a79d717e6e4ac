"""Segments: drift judged inside cohorts (a region, a plan), not only over all rows.

A global window can hide drift in one cohort: a 20 % segment whose income
moved by a full standard deviation barely moves the global histogram. A
profile built with ``segment_by`` keeps, per segment column, references for
its most frequent values (bounded: the top K with enough rows, the rest
pooled as ``__other__``), and every window is summarised and judged per
segment beside the global summary.

The false-alarm promise stays per *window*: the global tests get
``1 - SEGMENT_SHARE`` of the budget, the segment tests share the rest
(Bonferroni over all segment x feature tests), so adding segments never
multiplies false alarms.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from streams.drift.profile import factorize

SEGMENT_OTHER = "__other__"
SEGMENT_SHARE = 0.5  # of the window's false-alarm budget, when the profile has segments


def segment_levels(values: np.ndarray, null: np.ndarray, top: int, min_rows: int) -> list[str]:
    """The segment values kept by name: the ``top`` most frequent with ``min_rows`` rows or more."""
    present = np.asarray(values, dtype=object)[~np.asarray(null, dtype=bool)]
    if present.size == 0:
        return []
    found, codes = factorize(present)
    counts: dict[str, int] = {}
    for value, count in zip(found, np.bincount(codes, minlength=len(found)).tolist(), strict=True):
        counts[str(value)] = counts.get(str(value), 0) + count
    ranked = sorted(counts, key=lambda level: (-counts[level], level))[:top]
    return sorted(level for level in ranked if counts[level] >= min_rows)


def segment_index(values: np.ndarray, null: np.ndarray, levels: list[str]) -> np.ndarray:
    """Per row: the index of its segment in ``levels``, ``len(levels)`` for other, -1 for null."""
    found, codes = factorize(np.asarray(values, dtype=object))
    index = {level: i for i, level in enumerate(levels)}
    slots = np.array([index.get(str(v), len(levels)) for v in found], dtype=np.int64)  # per distinct value
    out = slots[codes] if codes.size else np.zeros(0, dtype=np.int64)
    return np.where(null, -1, out)


def segment_masks(values: np.ndarray, null: np.ndarray, column: str, top: int,
                  min_rows: int) -> Iterator[tuple[str, np.ndarray]]:
    """(``column=value``, row mask) of each reference segment worth a reference of its own."""
    levels = segment_levels(values, null, top, min_rows)
    index = segment_index(values, null, levels)
    for i, level in enumerate([*levels, SEGMENT_OTHER]):
        mask = index == i
        if mask.sum() >= min_rows:
            yield f"{column}={level}", mask


def levels_by_column(keys: list[str]) -> dict[str, list[str]]:
    """Profile segment keys grouped by column: {"region": ["eu", "us", "__other__"]}."""
    out: dict[str, list[str]] = {}
    for key in sorted(keys):
        column, _, level = key.partition("=")
        out.setdefault(column, []).append(level)
    return out
