"""Plain one-row bodies of one shape, read together by array arithmetic.

A worker polls thousands of one-row events at a time, nearly all of one
layout (:class:`~schemas.compiled._OneRowShape`). Matched one body at a
time, even by a compiled regular expression, each costs a match object,
a tuple of fields and a bytes object per field: several microseconds of
Python per event, more than everything the worker then does with it.

Here the batch is joined into one buffer and every body is walked field
by field *at once*: a vector of positions, one per body, advanced by
numpy. A short string is its length byte (even and under 128: under 64
characters) and that many bytes; an event time is a varint of at most
nine bytes; the layout's fixed bytes are compared as a block; the numbers
are gathered into one matrix. A body is taken when every step held and
the walk ends exactly at its end. What is left per event in Python is
its request id's ``decode``; models, versions and categories are decoded
once per distinct value (found by a hash of their bytes, checked exactly).

It accepts at most what the one-at-a-time plain reader accepts (short
strings, one request id, no segment, nulls, mismatches or dictionary, a
numeric prediction without a class), and less where a text could not be
told apart from its padding (a request id ending in a NUL byte) or is not
UTF-8: any body not taken is read alone, by the general reader, which
also names what is wrong with it. ``tests/unit/test_plain_scan.py``
checks both against fastavro.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, compress
from typing import NamedTuple

import numpy as np

from schemas.columns import FeatureFrame
from schemas.compiled import _OneRowShape
from schemas.rows import FEATURES, PREDICTION, Rows

_PADDING = bytes(64)
_NINE = np.arange(9)
_SEVENS = np.arange(0, 63, 7, dtype=np.uint64)
# Odd 64-bit multipliers, one per 8-byte word of a text and one for its size (a fixed seed: the same hash on
# every run), for finding distinct texts of more than seven bytes.
_WEIGHTS = np.random.default_rng(0x5EED).integers(1, 2**63, size=65, dtype=np.uint64) | np.uint64(1)


def _as_matrix(items: np.ndarray, width: int) -> np.ndarray:
    """``width``-byte opaque items as the rows of a uint8 matrix (a view)."""
    return items.view(np.uint8).reshape(items.size, width)


class Joined:
    """A batch of bodies as one buffer, with where each begins and ends: what every scan reads.

    Bodies longer than ``limit`` are left out (as if empty: no scan takes
    them, so they are read alone): no plain one-row body of a known layout
    is that long, and copying a batch of 100-row events (18 KB each) into
    the buffer for nothing cost a fifth of a worker's time on them.
    """

    def __init__(self, values: Sequence[bytes], limit: int | None = None) -> None:
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
        if limit is not None and (lengths > limit).any():
            kept = lengths <= limit
            values = list(compress(values, kept.tolist()))
            lengths = np.where(kept, lengths, 0)
        self.lengths = lengths
        self.ends = np.cumsum(self.lengths)
        self.begins = self.ends - self.lengths
        # zeros after the last body: a text is read as the widest of its column (up to 63 bytes) and a time
        # as nine bytes, and those reads must not be clipped (moved) where the last body ends
        self.buffer = np.frombuffer(b"".join(chain(values, (_PADDING,))), dtype=np.uint8)

    def items_at(self, at: np.ndarray, width: int) -> np.ndarray:
        """The ``width`` bytes from each position as one opaque item each: one fancy index into a view of the
        buffer as overlapping ``width``-byte items, one per byte offset (no index matrix). Positions are
        clipped to the buffer (a caller checks what it read against where its bodies end)."""
        if width > self.buffer.size:
            return np.zeros(at.size, dtype=f"V{width}")
        items = np.ndarray((self.buffer.size - width + 1,), dtype=f"V{width}", buffer=self.buffer, strides=(1,))
        return items[np.minimum(at, self.buffer.size - width)]

    def bytes_at(self, at: np.ndarray, width: int) -> np.ndarray:
        """The same bytes as rows of a matrix."""
        return _as_matrix(self.items_at(at, width), width)

    def headed(self, header: bytes) -> np.ndarray:
        """The indices of the bodies that begin with ``header``."""
        return np.flatnonzero((self.items_at(self.begins, len(header)) == np.void(header)) &
                              (self.lengths >= len(header)))


class _Walk:
    """The positions of some bodies of a batch, advanced field by field; ``ok`` says which still fit."""

    def __init__(self, joined: Joined, bodies: np.ndarray, start: int) -> None:
        self.joined = joined
        self.ends = joined.ends[bodies]
        self.pos = joined.begins[bodies] + start
        self.ok = joined.lengths[bodies] > start

    def items_at(self, at: np.ndarray, width: int) -> np.ndarray:
        if width > self.joined.buffer.size:
            self.ok[:] = False
        return self.joined.items_at(at, width)

    def bytes_at(self, at: np.ndarray, width: int) -> np.ndarray:
        return _as_matrix(self.items_at(at, width), width)

    def short(self) -> tuple[np.ndarray, np.ndarray]:
        """A string under 64 bytes: (where its bytes start, how many)."""
        buffer = self.joined.buffer
        head = buffer[np.minimum(self.pos, buffer.size - 1)]
        self.ok &= (head < 0x80) & ((head & 1) == 0)
        starts = self.pos + 1
        sizes = (head >> 1).astype(np.int64)
        self.pos = starts + sizes
        return starts, sizes

    def fixed(self, expected: bytes) -> None:
        if expected:
            self.ok &= self.items_at(self.pos, len(expected)) == np.void(expected)  # a memcmp per body
            self.pos = self.pos + len(expected)

    def varint(self) -> np.ndarray:
        """An Avro long of at most nine bytes (63 bits), decoded."""
        window = self.bytes_at(self.pos, 9)
        stops = window < 0x80
        self.ok &= stops.any(axis=1)
        length = stops.argmax(axis=1) + 1
        digits = (window & 0x7F).astype(np.uint64) << _SEVENS
        digits[length[:, None] <= _NINE] = 0
        zigzag = digits.sum(axis=1, dtype=np.uint64)
        self.pos = self.pos + length
        return (zigzag >> np.uint64(1)).astype(np.int64) ^ -(zigzag & np.uint64(1)).astype(np.int64)

    def skip(self, size: int) -> np.ndarray:
        """``size`` bytes of any value: where they start."""
        at = self.pos
        self.pos = at + size
        return at

    def done(self) -> np.ndarray:
        """The bodies every step fitted that end exactly where the walk did."""
        return self.ok & (self.pos == self.ends)


class _Texts(NamedTuple):
    """One text field of the taken bodies, as a zero-padded byte matrix and each text's size."""

    matrix: np.ndarray
    sizes: np.ndarray


def _texts(walk: _Walk, field: tuple[np.ndarray, np.ndarray], taken: np.ndarray) -> _Texts:
    starts, sizes = field[0][taken], field[1][taken]
    width = max(int(sizes.max(initial=0)), 1)
    matrix = walk.bytes_at(starts, width)
    matrix *= np.arange(width) < sizes[:, None]  # the bytes past a text are the next field's: zeroed
    return _Texts(matrix, sizes)


def _distinct(texts: _Texts) -> tuple[np.ndarray, np.ndarray]:
    """(a row holding each distinct text, each row's distinct index): short texts by their bytes as one 64-bit
    key, longer ones by a 64-bit hash of the bytes and the size, then checked byte for byte (a collision falls
    back to sorting the bytes themselves)."""
    matrix, sizes = texts
    if (sizes == sizes[0]).all() and (matrix == matrix[0]).all():  # the common column: one value
        return np.zeros(1, dtype=np.int64), np.zeros(len(sizes), dtype=np.int64)
    width = matrix.shape[1]
    if width < 8:  # short texts (most categories): bytes and size in one 64-bit key, exact as it is
        keys = np.zeros((len(sizes), 8), dtype=np.uint8)
        keys[:, :width] = matrix
        keys[:, 7] = sizes
        _, first, inverse = np.unique(keys.view(np.uint64).ravel(), return_index=True, return_inverse=True)
        return first, inverse
    words = -(-width // 8)
    padded = np.zeros((len(sizes), 8 * words), dtype=np.uint8)
    padded[:, :width] = matrix
    hashes = (padded.view(np.uint64) * _WEIGHTS[:words]).sum(axis=1, dtype=np.uint64) + \
        sizes.astype(np.uint64) * _WEIGHTS[64]
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    items = padded.view(f"V{8 * words}").ravel()
    if (items == items[first[inverse]]).all() and (sizes == sizes[first[inverse]]).all():
        return first, inverse
    keyed = np.ascontiguousarray(np.column_stack([sizes.astype(np.uint8), matrix]))
    _, first, inverse = np.unique(keyed.view(f"V{width + 1}").ravel(), return_index=True, return_inverse=True)
    return first, inverse


def _decoded(texts: _Texts, rows: np.ndarray) -> list[str | None]:
    """The texts of ``rows``; None for one that is not UTF-8."""
    out: list[str | None] = []
    for row in rows.tolist():
        try:
            out.append(texts.matrix[row, :texts.sizes[row]].tobytes().decode())
        except UnicodeDecodeError:
            out.append(None)
    return out


class _Coded(NamedTuple):
    levels: list[str | None]  # None: not UTF-8 (the bodies using it are read alone)
    codes: np.ndarray


def _coded(texts: _Texts) -> _Coded:
    first, inverse = _distinct(texts)
    return _Coded(_decoded(texts, first), inverse)


def _request_ids(texts: _Texts) -> tuple[list[str], np.ndarray]:
    """Each taken body's request id, and which bodies' ids could not be read here (not UTF-8, or ending in a
    NUL byte the padding would hide): those are read alone."""
    matrix, sizes = texts
    width = matrix.shape[1]
    unclear = (sizes > 0) & (matrix[np.arange(len(sizes)), np.maximum(sizes - 1, 0)] == 0)
    raw = matrix.view(f"S{width}").ravel().tolist()  # bytes without the padding
    try:
        return [r.decode() for r in raw], unclear
    except UnicodeDecodeError:
        ids, bad = [], unclear.copy()
        for k, r in enumerate(raw):
            try:
                ids.append(r.decode())
            except UnicodeDecodeError:
                ids.append("")
                bad[k] = True
        return ids, bad


def scan(joined: Joined, bodies: np.ndarray, start: int, shape: _OneRowShape, prediction: bool
         ) -> tuple[np.ndarray, Rows | None]:
    """Those of ``bodies`` (indices into ``joined``; each read from ``start``) that are plain one-row events
    of ``shape``: (their indices, ascending; their Rows), or an empty index and None."""
    if not bodies.size or not joined.buffer.size:
        return np.zeros(0, dtype=np.int64), None
    walk = _Walk(joined, bodies, start)
    model = walk.short()
    version = walk.short() if prediction else None
    times = walk.varint()
    walk.fixed(b"\x02")  # one request id
    request = walk.short()
    walk.fixed(b"\x00\x00")  # the array's end, no segment
    walk.fixed(shape.numeric_head)
    numbers_at = walk.skip(shape.numeric_bytes)
    walk.fixed(shape.categorical_head)
    categories = [walk.short() for _ in range(shape.texts)]
    walk.fixed(shape.tail)
    score_at = None
    if prediction:
        walk.fixed(b"\x10")  # one 8-byte prediction
        score_at = walk.skip(8)
        walk.fixed(b"\x00")  # no predicted class
    taken = np.flatnonzero(walk.done())  # positions in ``bodies``
    if not taken.size:
        return taken, None
    keep = np.ones(taken.size, dtype=bool)
    coded = [_coded(_texts(walk, field, taken)) for field in [model, *([version] if version else []), *categories]]
    for levels, codes in coded:
        bad = [k for k, level in enumerate(levels) if level is None]
        if bad:
            keep &= ~np.isin(codes, bad)
    ids, unclear = _request_ids(_texts(walk, request, taken))
    keep &= ~unclear
    if not keep.all():  # rare: those bodies are read alone
        taken = taken[keep]
        ids = [i for i, k in zip(ids, keep.tolist(), strict=True) if k]
        coded = [_Coded(levels, codes[keep]) for levels, codes in coded]
        if not taken.size:
            return taken, None
    n = taken.size
    numeric = walk.bytes_at(numbers_at[taken], shape.numeric_bytes).view("<f8").reshape(n, len(shape.numeric_names))
    models = _texts_of(coded[0])
    versions = _texts_of(coded[1]) if prediction else [""] * n
    frame = FeatureFrame(n, shape.numeric_names, numeric, np.zeros(numeric.shape, dtype=bool), shape.categorical_names,
                         *_categories(coded[2 if prediction else 1:], n))
    scores = walk.bytes_at(score_at[taken], 8).view("<f8").ravel() if score_at is not None else None
    return bodies[taken], Rows.one_row_each(PREDICTION if prediction else FEATURES, models, versions, times[taken], ids,
                                    frame, scores)


def _texts_of(coded: _Coded) -> list[str]:
    levels = np.array(coded.levels, dtype=object)
    return levels[coded.codes].tolist()


def _categories(columns: list[_Coded], rows: int
                ) -> tuple[np.ndarray, np.ndarray, list, tuple[list[str], np.ndarray]]:
    """The category block (texts, nulls, mismatches, dictionary) from each column's distinct texts: one
    level list for the frame, each column's codes mapped into it."""
    index: dict[str, int] = {}
    codes = np.empty((rows, len(columns)), dtype=np.int64)
    for j, (levels, column) in enumerate(columns):
        mapping = np.array([index.setdefault(level, len(index)) if level is not None else -1 for level in levels],
                           dtype=np.int64)
        codes[:, j] = mapping[column]
    found = list(index)
    texts = np.array(found, dtype=object)[codes] if found else np.empty((rows, 0), dtype=object)
    return texts, np.zeros((rows, len(columns)), dtype=bool), [], (found, codes)
