"""A polled batch's plain one-row Prediction and Features bodies, read together.

A worker polls thousands of one-row events at a time, and nearly all of
them have one shape: the layout an application sends over and over
(:class:`~schemas.compiled._OneRowShape`). Read one at a time, each is a
Python-level pass of slices and varints (~6 µs on our 2 GHz machines).
Here the shapes a :class:`~schemas.compiled.BodyReader` learnt are looked
for in the whole batch at once (:func:`schemas.plainscan.scan`), and the
bodies of each become one :class:`~schemas.rows.Rows`; records, for
readers that want them, are cut from those columns.

A body of no known shape, or not plain (a segment, nulls, a predicted
class, several rows, a long text...), is left to the caller, which reads
it alone through the general reader and fastavro; they also name what is
wrong with a broken one. ``tests/unit/test_plain_scan.py`` and
``tests/unit/test_batch_decode.py`` check both against fastavro.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schemas.compiled import BodyReader
from schemas.plainscan import Joined, scan
from schemas.rows import FEATURES, Rows


class BatchReader:
    """Reads the plain one-row bodies of a batch, one scan per known shape.

    The shapes are the ones its :class:`~schemas.compiled.BodyReader` learnt
    from bodies it read alone, so the first body of a new layout is read
    alone and the rest of its kind in batches.
    """

    def __init__(self, bodies: BodyReader) -> None:
        self._bodies = bodies

    def read_rows(self, joined: Joined, bodies: np.ndarray, start: int, prediction: bool
                  ) -> list[tuple[np.ndarray, Rows]]:
        """Those of ``bodies`` (indices into ``joined``) that are plain, as columns: per shape found, (their
        indices, ascending; their :class:`~schemas.rows.Rows`). A body in none is to be read alone."""
        out = []
        for shape in self._bodies.shapes():
            taken, rows = scan(joined, bodies, start, shape, prediction)
            if rows is None:
                continue
            out.append((taken, rows))
            if taken.size == bodies.size:
                break
            bodies = np.setdiff1d(bodies, taken, assume_unique=True)
        return out


def plain_records(rows: Rows) -> list[dict[str, Any]]:
    """The records of plain one-row events read as Rows: what the one-at-a-time reader gives for each."""
    frame = rows.frame
    width = 8 * len(frame.numeric_names)
    numbers = np.ascontiguousarray(frame.numeric, dtype="<f8").tobytes()
    numeric_names, categorical_names = list(frame.numeric_names), list(frame.categorical_names)
    blocks = [{"numeric_names": numeric_names.copy(), "numeric_values": numbers[k * width:(k + 1) * width],
               "numeric_nulls": b"", "categorical_names": categorical_names.copy(), "categorical_values": texts,
               "categorical_nulls": b"", "mismatched": [], "categorical_levels": [], "categorical_codes": b""}
              for k, texts in enumerate(frame.categorical.tolist())]
    times = rows.times.tolist()
    if rows.schema == FEATURES:
        return [{"model": m, "event_time": t, "request_ids": [r], "segment": None, "columns": c}
                for m, t, r, c in zip(rows.models, times, rows.request_ids, blocks, strict=True)]
    assert rows.scores is not None
    scores = np.ascontiguousarray(rows.scores, dtype="<f8").tobytes()
    return [{"model": m, "model_version": v, "event_time": t, "request_ids": [r], "segment": None, "columns": c,
             "prediction": scores[8 * k:8 * k + 8], "predicted_class": None}
            for k, (m, v, t, r, c) in enumerate(zip(rows.models, rows.versions, times, rows.request_ids, blocks,
                                                    strict=True))]
