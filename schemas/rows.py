"""Many Prediction or Features events as columns: what a monitor works on.

A worker polls thousands of events and needs, of each, a handful of
scalars (model, version, event time, row count) and its rows. Kept as one
Python record per event, the bookkeeping around those records cost more
than the statistics (a dict per event, a list of records per source, a
frame stacked from them, a second pass to forward them). :class:`Rows`
keeps the per-event scalars as arrays or lists and every row of the batch
in one :class:`~schemas.columns.FeatureFrame`, so the stages group, take
and merge with numpy.

Plain one-row events become Rows straight from the wire
(:meth:`schemas.batchread.BatchReader.read_rows`); any other event is
decoded alone and its record joins through :meth:`Rows.from_records`,
which also checks what the frame and the join rely on (a numeric block of
the right size, one prediction per request id) and names a bad event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from typing import Any

import numpy as np

from schemas.columns import FeatureFrame, neighbours
from schemas.errors import DecodeError

PREDICTION = "driftline.Prediction"
FEATURES = "driftline.Features"


@dataclass
class Rows:
    """Events of one kind (``PREDICTION`` or ``FEATURES``), in order, with all their rows.

    Per event: ``models``, ``versions`` ("" for Features), ``segments``,
    ``times`` (event time, ms) and ``counts`` (rows). Per row, in event
    order: ``request_ids``, ``frame``, and for predictions ``scores``
    (float64) and ``classes`` (the predicted class, or None for every row of
    an event without classes; ``classed`` says which events have them).
    """

    schema: str
    models: list[str]
    versions: list[str]
    segments: list[str | None]
    times: np.ndarray
    counts: np.ndarray
    request_ids: list[str]
    frame: FeatureFrame
    scores: np.ndarray | None = None
    classes: list[str | None] | None = None
    classed: np.ndarray | None = None

    @property
    def events(self) -> int:
        return len(self.models)

    @property
    def rows(self) -> int:
        return len(self.request_ids)

    @property
    def first_rows(self) -> np.ndarray:
        """Each event's first row."""
        return np.cumsum(self.counts) - self.counts

    @classmethod
    def one_row_each(cls, schema: str, models: list[str], versions: list[str], times: np.ndarray,
                     request_ids: list[str], frame: FeatureFrame, scores: np.ndarray | None) -> Rows:
        """Events of one row each, no segment and no classes (the plain events of the wire)."""
        n = len(models)
        return cls(schema, models, versions, [None] * n, times, np.ones(n, dtype=np.int64), request_ids, frame,
                   scores, None if scores is None else [None] * n,
                   None if scores is None else np.zeros(n, dtype=bool))

    @classmethod
    def from_records(cls, schema: str, records: Sequence[Mapping[str, Any]]) -> Rows:
        """Decoded records of one kind as Rows; a DecodeError names the first inconsistent record
        (call :func:`inconsistency` per record to find which)."""
        counts = np.fromiter((len(r["request_ids"]) for r in records), dtype=np.int64, count=len(records))
        frame = FeatureFrame.from_records([(r["columns"], int(c)) for r, c in zip(records, counts, strict=True)])
        prediction = schema == PREDICTION
        scores: np.ndarray | None = None
        classes: list[str | None] | None = None
        classed: np.ndarray | None = None
        if prediction:
            raw = b"".join(r["prediction"] for r in records)
            if len(raw) != 8 * int(counts.sum()):
                raise DecodeError("a prediction's scores do not match its request ids")
            scores = np.frombuffer(raw, dtype="<f8")
            classed = np.fromiter((r.get("predicted_class") is not None for r in records), dtype=bool,
                                  count=len(records))
            classes = []
            for record, count in zip(records, counts.tolist(), strict=True):
                own = record.get("predicted_class")
                if own is not None and len(own) != count:
                    raise DecodeError("a prediction's classes do not match its request ids")
                classes.extend(own if own is not None else [None] * count)
        return cls(schema, [r["model"] for r in records],
                   [r.get("model_version") or "" for r in records] if prediction else [""] * len(records),
                   [r.get("segment") for r in records],
                   np.fromiter((r["event_time"] for r in records), dtype=np.int64, count=len(records)),
                   counts, list(chain.from_iterable(r["request_ids"] for r in records)), frame, scores, classes,
                   classed)

    @classmethod
    def concat(cls, parts: Sequence[Rows]) -> Rows:
        """The events of ``parts`` (of one kind) one after another."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        if any(p.schema != first.schema for p in parts):
            raise ValueError(f"cannot join Rows of {sorted({p.schema for p in parts})}: one kind per source")
        prediction = first.scores is not None
        return cls(first.schema, [m for p in parts for m in p.models], [v for p in parts for v in p.versions],
                   [s for p in parts for s in p.segments], np.concatenate([p.times for p in parts]),
                   np.concatenate([p.counts for p in parts]), list(chain.from_iterable(p.request_ids for p in parts)),
                   FeatureFrame.concat([p.frame for p in parts]),
                   np.concatenate([p.scores for p in parts if p.scores is not None]) if prediction else None,
                   [c for p in parts for c in (p.classes or ())] if prediction else None,
                   np.concatenate([p.classed for p in parts if p.classed is not None]) if prediction else None)

    def without_features(self) -> Rows:
        """The same events and rows with no feature columns (ids, times, scores and classes kept)."""
        return replace(self, frame=FeatureFrame.no_columns(self.rows))

    def take(self, events: np.ndarray) -> Rows:
        """The events at the indices ``events`` (distinct, in any order) with their rows, in that order."""
        if neighbours(events):  # a run of neighbouring events, the common take
            return self._span(int(events[0]), int(events[-1]) + 1)
        counts = self.counts[events]
        if self.counts.size and self.counts.min() == self.counts.max() == 1:
            rows = events  # one row each: a row is its event
        else:
            rows = np.repeat(self.first_rows[events] - (np.cumsum(counts) - counts), counts) + \
                np.arange(int(counts.sum()))
        picked, row_list = events.tolist(), rows.tolist()
        ids = self.request_ids
        return Rows(self.schema, [self.models[i] for i in picked], [self.versions[i] for i in picked],
                    [self.segments[i] for i in picked], self.times[events], counts,
                    [ids[i] for i in row_list], self.frame.take(rows),
                    None if self.scores is None else self.scores[rows],
                    None if self.classes is None else [self.classes[i] for i in row_list],
                    None if self.classed is None else self.classed[events])

    def _span(self, start: int, stop: int) -> Rows:
        """Events ``start`` to ``stop - 1``: slices and views, no gather."""
        first_row = int(self.counts[:start].sum())
        last_row = first_row + int(self.counts[start:stop].sum())
        return Rows(self.schema, self.models[start:stop], self.versions[start:stop], self.segments[start:stop],
                    self.times[start:stop], self.counts[start:stop], self.request_ids[first_row:last_row],
                    self.frame.span(first_row, last_row),
                    None if self.scores is None else self.scores[first_row:last_row],
                    None if self.classes is None else self.classes[first_row:last_row],
                    None if self.classed is None else self.classed[start:stop])


def inconsistency(schema: str, record: Mapping[str, Any]) -> str | None:
    """What makes one decoded record unfit for :meth:`Rows.from_records`, or None."""
    try:
        Rows.from_records(schema, [record])
    except DecodeError as exc:
        return str(exc)
    return None
