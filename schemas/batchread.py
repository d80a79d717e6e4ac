"""A polled batch of plain one-row Prediction and Features bodies, decoded together.

A worker polls thousands of one-row events at a time, and nearly all of
them have one shape: the layout an application sends over and over
(:class:`~schemas.compiled._OneRowShape`). Read one at a time, each is a
Python-level pass of slices and varints (~6 µs on our 2 GHz machines).
Here each shape is a compiled regular expression: ``re`` checks every byte
of a body and cuts out its fields in C, and the fields of the whole batch
are then decoded per column — event times as one numpy varint decode,
category texts once per distinct value, numbers left as the bytes the
frame stacks — so the Python left per event is building its record.

The pattern accepts exactly what the one-at-a-time plain reader accepts
(short strings, one request id, no segment, nulls, mismatches or
dictionary, a numeric prediction without a class); anything else does not
match and the caller decodes that body alone, through the general reader
and fastavro, which also name what is wrong with it.
``tests/unit/test_batch_decode.py`` checks both against fastavro.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

import numpy as np

from schemas.columns import FeatureFrame
from schemas.compiled import _LAYOUTS_KEPT, _TEXTS_KEPT, BodyReader, _OneRowShape
from schemas.rows import FEATURES, PREDICTION, Rows

# An Avro string under 64 bytes: its one-byte length (2n, zig-zag) and n bytes. Captured with its length
# byte; a text is decoded once per distinct value (see _Texts).
_SHORT = b"(" + b"|".join(re.escape(bytes((2 * n,))) + b".{%d}" % n for n in range(64)) + b")"
# An event time: a varint of at most nine bytes (63 bits; a longer one is read alone).
_TIME = rb"([\x80-\xff]{0,8}[\x00-\x7f])"


def _pattern(shape: _OneRowShape, prediction: bool) -> re.Pattern[bytes]:
    """The bytes a plain one-row body of ``shape`` has, with its variable fields as groups."""
    parts = [_SHORT, _SHORT] if prediction else [_SHORT]  # model (and version)
    parts += [_TIME, rb"\x02", _SHORT, rb"\x00\x00",  # one request id, the array's end, no segment
              re.escape(shape.numeric_head), b"(.{%d})" % shape.numeric_bytes,
              re.escape(shape.categorical_head), _SHORT * shape.texts, re.escape(shape.tail)]
    if prediction:
        parts.append(rb"\x10(.{8})\x00")  # one 8-byte prediction, no predicted class
    return re.compile(b"".join(parts), re.DOTALL)


# the matched bodies' fields, one tuple per field (a column of the batch)
_Fields = Sequence[tuple[bytes, ...]]
# models, versions (predictions only), request ids and the categories (levels, codes) of matched bodies
_Decoded = tuple[list[str], list[str] | None, list[str], tuple[list[str], np.ndarray]]


class _Texts:
    """Length-prefixed short strings decoded once per distinct value (models, versions, categories)."""

    def __init__(self) -> None:
        self._known: dict[bytes, str] = {}

    def decode(self, raw: Sequence[bytes]) -> list[str]:
        known = self._known
        try:
            return [known[t] for t in raw]
        except KeyError:
            if len(known) > _TEXTS_KEPT:
                known.clear()
            for t in set(raw) - known.keys():
                known[t] = t[1:].decode()  # bad UTF-8 raises: the caller reads the batch one at a time
            return [known[t] for t in raw]

    def dictionary(self, columns: Sequence[Sequence[bytes]], rows: int) -> tuple[list[str], np.ndarray]:
        """Category columns as (levels, rows x columns codes): each distinct text decoded once, each cell
        a code found in C (what the frame keeps, so counting and writing categories need no text)."""
        distinct = list(dict.fromkeys(chain.from_iterable(columns)))
        index = {raw: i for i, raw in enumerate(distinct)}
        codes = np.empty((rows, len(columns)), dtype=np.int64)
        for j, column in enumerate(columns):
            codes[:, j] = np.fromiter(map(index.__getitem__, column), dtype=np.int64, count=rows)
        return self.decode(distinct), codes


def varints(raw: Sequence[bytes]) -> np.ndarray:
    """Avro longs of at most nine bytes each (zig-zag varints), decoded as one array."""
    lengths = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))
    out = np.empty(len(raw), dtype=np.int64)
    if not len(raw):
        return out
    if lengths.min() == lengths.max():  # the common case: every time as long as the first
        parts: list[tuple[np.ndarray | slice, Sequence[bytes], int]] = [(slice(None), raw, int(lengths[0]))]
    else:
        parts = []
        for length in np.unique(lengths).tolist():
            these = np.flatnonzero(lengths == length)
            parts.append((these, [raw[i] for i in these.tolist()], length))
    for rows, picked, length in parts:
        cells = np.frombuffer(b"".join(picked), dtype=np.uint8).reshape(-1, length).astype(np.uint64)
        shifts = np.arange(0, 7 * length, 7, dtype=np.uint64)
        zigzag = ((cells & np.uint64(0x7F)) << shifts).sum(axis=1, dtype=np.uint64)
        out[rows] = (zigzag >> np.uint64(1)).astype(np.int64) ^ -(zigzag & np.uint64(1)).astype(np.int64)
    return out


class BatchReader:
    """Reads the plain one-row bodies of a batch with one pattern per known shape.

    The shapes are the ones its :class:`~schemas.compiled.BodyReader` learnt
    from bodies it read alone, so the first body of a new layout is read
    alone and the rest of its kind in batches.
    """

    def __init__(self, bodies: BodyReader) -> None:
        self._bodies = bodies
        self._patterns: dict[tuple[_OneRowShape, bool], re.Pattern[bytes]] = {}
        self._texts = _Texts()

    def read(self, values: Sequence[bytes], start: int, prediction: bool) -> list[dict[str, Any] | None]:
        """Each body's record, or None for a body to be read alone (another shape, or not plain)."""
        out: list[dict[str, Any] | None] = [None] * len(values)
        for shape, found, fields, texts in self._matched(values, start, prediction):
            for i, record in zip(found, self._records(shape, prediction, fields, texts), strict=True):
                out[i] = record
        return out

    def read_rows(self, values: Sequence[bytes], start: int, prediction: bool) -> list[tuple[list[int], Rows]]:
        """The plain bodies as columns: per shape found, (their indices in ``values``, ascending; their
        :class:`~schemas.rows.Rows`). A body in none is to be read alone."""
        return [(found, self._rows(shape, prediction, fields, texts))
                for shape, found, fields, texts in self._matched(values, start, prediction)]

    def _matched(self, values: Sequence[bytes], start: int,
                 prediction: bool) -> Iterator[tuple[_OneRowShape, list[int], _Fields, _Decoded]]:
        """Per known shape: the bodies of it (indices, ascending), their fields as columns, their texts."""
        waiting: Sequence[int] = range(len(values))  # the positions of the bodies no shape took yet
        pool: Sequence[bytes] = values
        for shape in self._bodies.shapes():
            key = (shape, prediction)
            pattern = self._patterns.get(key)
            if pattern is None:
                if len(self._patterns) >= 2 * _LAYOUTS_KEPT:
                    self._patterns.clear()
                pattern = self._patterns[key] = _pattern(shape, prediction)
            match = pattern.fullmatch
            matches = [match(v, start) for v in pool]
            if None not in matches:  # the common batch: every body of this shape
                indices, hits, waiting, pool = list(waiting), matches, [], []
            else:
                taken = [k for k, m in enumerate(matches) if m is not None]
                if not taken:
                    continue
                indices, hits = [waiting[k] for k in taken], [matches[k] for k in taken]
                left = [k for k, m in enumerate(matches) if m is None]
                waiting, pool = [waiting[k] for k in left], [pool[k] for k in left]
            fields = list(zip(*[m.groups() for m in hits if m is not None], strict=True))
            try:
                texts = self._texts_of(shape, prediction, fields)
            except UnicodeDecodeError:  # rare: the bodies with a bad text are read alone (fastavro names it)
                kept = [k for k in range(len(indices))
                        if self._decodes(shape, prediction, [(column[k],) for column in fields])]
                if not kept:
                    continue
                indices = [indices[k] for k in kept]
                fields = [tuple(column[k] for k in kept) for column in fields]
                texts = self._texts_of(shape, prediction, fields)
            yield shape, indices, fields, texts
            if not waiting:
                break

    def _decodes(self, shape: _OneRowShape, prediction: bool, fields: _Fields) -> bool:
        """Whether one matched body's texts are valid UTF-8."""
        try:
            self._texts_of(shape, prediction, fields)
        except UnicodeDecodeError:
            return False
        return True

    def _texts_of(self, shape: _OneRowShape, prediction: bool, fields: _Fields) -> _Decoded:
        """Models, versions, request ids and category columns of matched bodies (UnicodeDecodeError on a
        bad text)."""
        decode = self._texts.decode
        at = 2 if prediction else 1
        return (decode(fields[0]), decode(fields[1]) if prediction else None,
                [t[1:].decode() for t in fields[at + 1]],
                self._texts.dictionary(fields[at + 3:at + 3 + shape.texts], len(fields[0])))

    def _rows(self, shape: _OneRowShape, prediction: bool, columns: _Fields, texts: _Decoded) -> Rows:
        models, versions, ids, (levels, codes) = texts
        at = 2 if prediction else 1
        n = len(models)
        width, cat_width = len(shape.numeric_names), shape.texts
        frame = FeatureFrame(n, shape.numeric_names,
                             np.frombuffer(b"".join(columns[at + 2]), dtype="<f8").reshape(n, width),
                             np.zeros((n, width), dtype=bool), shape.categorical_names,
                             np.array(levels, dtype=object)[codes], np.zeros((n, cat_width), dtype=bool), [],
                             (levels, codes))
        scores = np.frombuffer(b"".join(columns[-1]), dtype="<f8") if prediction else None
        return Rows.one_row_each(PREDICTION if prediction else FEATURES, models, versions or [""] * n,
                                 varints(columns[at]), ids, frame, scores)

    def _records(self, shape: _OneRowShape, prediction: bool, columns: _Fields,
                 texts: _Decoded) -> list[dict[str, Any]]:
        models, versions, ids, (levels, codes) = texts
        at = 2 if prediction else 1
        times = varints(columns[at]).tolist()
        numbers = columns[at + 2]
        rows = np.array(levels, dtype=object)[codes].tolist()  # each event's texts, in order
        numeric_names, categorical_names = shape.numeric_names, shape.categorical_names
        blocks = [{"numeric_names": list(numeric_names), "numeric_values": n, "numeric_nulls": b"",
                   "categorical_names": list(categorical_names), "categorical_values": t,
                   "categorical_nulls": b"", "mismatched": [], "categorical_levels": [],
                   "categorical_codes": b""} for n, t in zip(numbers, rows, strict=True)]
        if not prediction:
            return [{"model": m, "event_time": e, "request_ids": [r], "segment": None, "columns": c}
                    for m, e, r, c in zip(models, times, ids, blocks, strict=True)]
        assert versions is not None
        return [{"model": m, "model_version": v, "event_time": e, "request_ids": [r], "segment": None,
                 "columns": c, "prediction": p, "predicted_class": None}
                for m, v, e, r, c, p in zip(models, versions, times, ids, blocks, columns[-1], strict=True)]
