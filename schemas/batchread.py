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

NEW_SHAPES_PER_BATCH = 4  # layouts one batch may teach
LEARNING_READS = 6  # bodies of no known shape read alone to learn from, per batch (each a few µs, plain or not)
# Bodies scanned while no layout is known: a one-row event of a few hundred features fits; a longer one is read
# alone (and teaches its layout, and so its own length, for the next batch).
UNKNOWN_SHAPE_MAX_BYTES = 8192


class BatchReader:
    """Reads the plain one-row bodies of a batch, one scan per known shape.

    The shapes are the ones its :class:`~schemas.compiled.BodyReader` learnt
    from bodies it read alone. A batch whose bodies fit none (a worker's
    first batch, a new layout) teaches it from its first such bodies, read
    alone here, and the rest are scanned with what it learnt: a worker's
    first batch of up to 20,000 one-row events used to be read one by one
    (10 % of a 200,000-event bench run).
    """

    def __init__(self, bodies: BodyReader) -> None:
        self._bodies = bodies

    def max_plain_bytes(self) -> int:
        """The longest a plain one-row body (from its model on) of a known layout can be: longer bodies are
        not worth joining for a scan (:class:`~schemas.plainscan.Joined`)."""
        shapes = self._bodies.shapes()
        return max(shape.max_body_bytes for shape in shapes) if shapes else UNKNOWN_SHAPE_MAX_BYTES

    def read_rows(self, joined: Joined, bodies: np.ndarray, start: int, prediction: bool
                  ) -> list[tuple[np.ndarray, Rows]]:
        """Those of ``bodies`` (indices into ``joined``) that are plain, as columns: per shape found, (their
        indices, ascending; their :class:`~schemas.rows.Rows`). A body in none is to be read alone."""
        out = []
        scanned: list[object] = []  # the shapes scanned for, by identity
        known = len(self._bodies.shapes())
        read_alone = self._bodies.prediction if prediction else self._bodies.features
        tried: set[int] = set()
        while True:
            for shape in self._bodies.shapes():
                if any(shape is seen for seen in scanned):
                    continue
                scanned.append(shape)
                taken, rows = scan(joined, bodies, start, shape, prediction)
                if rows is None:
                    continue
                out.append((taken, rows))
                bodies = np.setdiff1d(bodies, taken, assume_unique=True)
                if not bodies.size:
                    return out
            untried = [int(b) for b in bodies[:len(tried) + 1].tolist() if b not in tried]
            if len(tried) == LEARNING_READS or len(scanned) - known >= NEW_SHAPES_PER_BATCH or not untried:
                return out
            # A layout not learnt yet (a worker's first batch, a new application): learnt from this body if it
            # is a plain one-row one, as reading it alone would, and then scanned for in the rest.
            tried.add(untried[0])
            read_alone(joined.buffer[joined.begins[untried[0]]:joined.ends[untried[0]]].tobytes(), start)


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
