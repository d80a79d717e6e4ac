"""Feature rows <-> the columnar ``driftline.Columns`` block <-> numpy.

Producers hand us Python dicts (one per row) or whole columns; readers want
numpy matrices. The wire form sits between: numbers as one packed float64
buffer, categories as a string array, nulls as bitmaps. Decoding is
``np.frombuffer`` plus a reshape, so a worker never touches a value in Python.

Type rules (what goes where):

* ``int``/``float`` (and numpy numbers) -> numeric block; ``bool`` and ``str`` ->
  categorical block (bools as ``"true"``/``"false"``).
* With a :class:`~schemas.featurespec.FeatureSpec`, the spec's type decides the
  block; a value that does not fit it (``"42"`` for an int feature) is kept,
  as text with its type name, in ``mismatched``, so the monitor can report a
  type mismatch instead of the producer guessing.
* ``None`` is a null. ``NaN`` is a value, not a null: whether it is allowed is
  the spec's call.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np

from schemas.errors import DecodeError, EncodeError

native_column_major: Callable[[list[bytes], int, int], bytes | None] | None
native_dictionary_codes: Callable[[list[bytes], np.ndarray, np.ndarray, int, int], bytes | None] | None
try:  # events' numbers and category codes stacked column-major in C (schemas/_bodies.c)
    from schemas._bodies import column_major as native_column_major
    from schemas._bodies import dictionary_codes as native_dictionary_codes
except ImportError:  # built without a C compiler: stacked row-major by numpy
    native_column_major = native_dictionary_codes = None

if TYPE_CHECKING:
    from schemas.featurespec import FeatureSpec

NUMERIC = "numeric"
CATEGORICAL = "categorical"
MISMATCH_TEXT_LIMIT = 200
# Batch events of at least this many rows carry their categories in dictionary form (codes into the
# distinct texts): decoding is then one numpy take instead of a Python string per cell.
DICTIONARY_ROWS = 16

def pack_mask(mask: np.ndarray) -> bytes:
    """Null bitmap of a boolean matrix; empty bytes when nothing is null."""
    if not mask.any():
        return b""
    return np.packbits(mask.ravel(), bitorder="little").tobytes()


def unpack_mask(bitmap: bytes, rows: int, width: int) -> np.ndarray:
    """Inverse of :func:`pack_mask` (an all-False matrix for an empty bitmap)."""
    if not bitmap:
        return np.zeros((rows, width), dtype=bool)
    needed = (rows * width + 7) // 8
    if len(bitmap) != needed:
        raise DecodeError(f"null bitmap has {len(bitmap)} bytes, {needed} expected for {rows}x{width}")
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), count=rows * width, bitorder="little")
    return bits.astype(bool).reshape(rows, width)


def unique_texts(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """(distinct texts, index of each text among them), sorted.

    A dict finds the distinct texts (categories are few and repeat) and only
    those are sorted: five times faster than ``np.unique`` sorting every cell
    as fixed-width unicode, and no special case for texts holding a NUL.
    One text throughout (a batch's model and version, nearly always) is
    found by one C-level count, 0.7 ns a text against 53 for the dict.
    """
    if texts and texts.count(texts[0]) == len(texts):
        return [texts[0]], np.zeros(len(texts), dtype=np.int64)
    distinct = sorted(dict.fromkeys(texts))
    index = {text: i for i, text in enumerate(distinct)}
    return distinct, np.fromiter(map(index.__getitem__, texts), dtype=np.int64, count=len(texts))


def dictionary_block(categorical: np.ndarray) -> tuple[list[str], bytes]:
    """(levels, uint32 codes) of a rows x names matrix of texts: the ``Columns`` dictionary form."""
    levels, codes = unique_texts(categorical.ravel().tolist())
    return levels, codes.astype("<u4").tobytes()


def categorical_block(categorical: np.ndarray) -> dict[str, Any]:
    """The categorical value fields of a ``Columns`` record: texts, or codes for a batch of rows."""
    if categorical.shape[0] >= DICTIONARY_ROWS and categorical.size:
        levels, codes = dictionary_block(categorical)
        return {"categorical_values": [], "categorical_levels": levels, "categorical_codes": codes}
    return {"categorical_values": categorical.ravel().tolist(), "categorical_levels": [], "categorical_codes": b""}


_PLAIN = frozenset({float, int, type(None)})


def _plain_numbers(values: list[Any]) -> bool:
    """Only floats, ints and None (no bools, no numpy scalars): safe to hand to numpy whole."""
    return set(map(type, values)) <= _PLAIN


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _mismatch(row: int, name: str, value: Any) -> dict[str, Any]:
    return {
        "row": row,
        "name": name,
        "type": type(value).__name__,
        "text": repr(value)[:MISMATCH_TEXT_LIMIT],
    }


def _kind_of_value(value: Any) -> str | None:
    """Block a value belongs in: numeric, categorical, or None for types no block carries."""
    kind = type(value)
    if kind is float or kind is int:
        return NUMERIC
    if kind is str or kind is bool:
        return CATEGORICAL
    if _is_number(value):
        return NUMERIC
    if isinstance(value, (str, bool, np.str_, np.bool_)):
        return CATEGORICAL
    return None


def _kind_of_values(values: Iterable[Any]) -> str | None:
    """Block for a column without a spec: the type of its first non-null value."""
    for value in values:
        if value is not None:
            return _kind_of_value(value)
    return NUMERIC  # an all-null column: numeric nulls are the cheapest to carry


def _category_text(value: Any) -> str | None:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (str, np.str_)):
        return str(value)
    return None


def _kinds_for(
    names: Iterable[str], rows: Sequence[Mapping[str, Any]], spec: FeatureSpec | None
) -> dict[str, str | None]:
    """Block of each feature: the spec's type, else the first non-null value's type."""
    declared = spec.kinds() if spec is not None else {}
    if len(rows) == 1:  # the common single-row event: classify its values directly
        get = rows[0].get
        return {
            name: declared.get(name) or (NUMERIC if (value := get(name)) is None else _kind_of_value(value))
            for name in names
        }
    return {
        name: declared.get(name) or _kind_of_values(row.get(name) for row in rows)
        for name in names
    }


def _packed_floats(values: list[float]) -> bytes:
    try:
        return struct.pack(f"<{len(values)}d", *values)
    except (OverflowError, struct.error) as exc:
        raise EncodeError(f"a numeric feature value does not fit a float64: {exc}") from None


def neighbours(indices: np.ndarray) -> bool:
    """Whether ``indices`` are consecutive and ascending (more than one): a take of them is a slice."""
    return indices.size > 1 and bool((np.diff(indices) == 1).all())


def _float_column(name: str, values: Sequence[Any]) -> np.ndarray:
    """Numbers as float64, or an EncodeError naming the feature whose value does not fit (an int past
    float64's range would otherwise escape as a bare OverflowError)."""
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError:
        raise EncodeError(f"a value of numeric feature {name!r} does not fit a float64") from None


def _bitmap(null_positions: list[int], size: int) -> bytes:
    if not null_positions:
        return b""
    mask = np.zeros(size, dtype=bool)
    mask[null_positions] = True
    return np.packbits(mask, bitorder="little").tobytes()


def encode_rows(
    rows: Sequence[Mapping[str, Any]], spec: FeatureSpec | None = None
) -> dict[str, Any]:
    """Rows (dicts of feature -> value) as a ``driftline.Columns`` record.

    Feature names are taken in the spec's order, then in order of first
    appearance; a feature absent from a row is a null in that row (the
    monitor's skew checks count missing required features from the nulls).
    Built row-major in plain lists: for the one-row events applications send
    most, that is several times cheaper than a numpy array per column.
    """
    if not rows:
        raise EncodeError("an event needs at least one row of features")
    names: dict[str, None] = {}
    if spec is not None:
        names.update((f.name, None) for f in spec.features)
    for row in rows:
        if not isinstance(row, Mapping):
            raise EncodeError(f"features must be a mapping of name to value, got {type(row).__name__}")
        names.update((k, None) for k in row if k not in names)
    for name in names:
        if not isinstance(name, str) or not name:
            raise EncodeError(f"feature names must be non-empty strings, got {name!r}")
    kinds = _kinds_for(names, rows, spec)
    numeric_names = [n for n, k in kinds.items() if k == NUMERIC]
    categorical_names = [n for n, k in kinds.items() if k == CATEGORICAL]
    unsupported = [n for n, k in kinds.items() if k is None]
    numbers: list[float] = []
    number_nulls: list[int] = []
    texts: list[str] = []
    text_nulls: list[int] = []
    mismatched: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        get = row.get
        for name in numeric_names:
            value = get(name)
            kind = type(value)
            if kind is float or kind is int:
                numbers.append(value)  # type: ignore[arg-type]  # checked by the exact type test above
                continue
            if value is not None and _is_number(value):
                numbers.append(float(value))
                continue
            number_nulls.append(len(numbers))
            numbers.append(0.0)
            if value is not None:
                mismatched.append(_mismatch(i, name, value))
        for name in categorical_names:
            value = get(name)
            if type(value) is str:
                texts.append(value)
                continue
            text = None if value is None else _category_text(value)
            if text is not None:
                texts.append(text)
                continue
            text_nulls.append(len(texts))
            texts.append("")
            if value is not None:
                mismatched.append(_mismatch(i, name, value))
        for name in unsupported:
            value = get(name)
            if value is not None:
                mismatched.append(_mismatch(i, name, value))
    return {
        "numeric_names": numeric_names,
        "numeric_values": _packed_floats(numbers),
        "numeric_nulls": _bitmap(number_nulls, len(numbers)),
        "categorical_names": categorical_names,
        "categorical_values": texts,
        "categorical_nulls": _bitmap(text_nulls, len(texts)),
        "mismatched": mismatched,
        "categorical_levels": [],
        "categorical_codes": b"",
    }


def encode_columns(
    columns: Mapping[str, Sequence[Any] | np.ndarray],
    spec: FeatureSpec | None = None,
    *,
    rows: int | None = None,
) -> dict[str, Any]:
    """Whole columns (name -> values of equal length) as a ``driftline.Columns`` record.

    The fast path for high volume: a float numpy array is packed as it is.
    ``rows`` is needed only when there are no columns at all (rows that carry
    no feature are still rows: the monitor counts their missing features).
    """
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1 or (rows is not None and lengths and lengths != {rows}):
        stated = {rows} if rows is not None else set()
        raise EncodeError(f"columns have different lengths: {sorted(lengths | stated)}")
    rows = lengths.pop() if lengths else (rows or 0)
    if rows == 0:
        raise EncodeError("an event needs at least one row of features")
    kinds = spec.kinds() if spec is not None else {}
    numeric_names: list[str] = []
    numeric_blocks: list[np.ndarray] = []
    numeric_nulls: list[np.ndarray] = []
    categorical_names: list[str] = []
    categorical_blocks: list[list[str]] = []
    categorical_nulls: list[np.ndarray] = []
    mismatched: list[dict[str, Any]] = []
    for name, values in columns.items():
        if not isinstance(name, str) or not name:
            raise EncodeError(f"feature names must be non-empty strings, got {name!r}")
        kind = kinds.get(name)
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiu" and kind in (None, NUMERIC):
            numeric_names.append(name)
            numeric_blocks.append(values.astype(np.float64, copy=False))
            numeric_nulls.append(np.zeros(rows, dtype=bool))
            continue
        values = list(values)
        if kind is None:
            kind = _kind_of_values(values)
        if kind == NUMERIC and _plain_numbers(values):
            # the common case (an SDK list, a serving node's parsed tensor): numpy converts it in C
            column = _float_column(name, values)
            nulls = np.array([v is None for v in values], dtype=bool) if None in values else np.zeros(rows, bool)
            column[nulls] = 0.0
            numeric_names.append(name)
            numeric_blocks.append(column)
            numeric_nulls.append(nulls)
        elif kind == NUMERIC:
            column = np.zeros(rows, dtype=np.float64)
            nulls = np.zeros(rows, dtype=bool)
            for i, value in enumerate(values):
                if value is None:
                    nulls[i] = True
                elif _is_number(value):
                    column[i] = _float_column(name, [value])[0]
                else:
                    nulls[i] = True
                    mismatched.append(_mismatch(i, name, value))
            numeric_names.append(name)
            numeric_blocks.append(column)
            numeric_nulls.append(nulls)
        elif kind == CATEGORICAL:
            texts: list[str] = []
            nulls = np.zeros(rows, dtype=bool)
            for i, value in enumerate(values):
                text = None if value is None else _category_text(value)
                if text is None:
                    nulls[i] = True
                    texts.append("")
                    if value is not None:
                        mismatched.append(_mismatch(i, name, value))
                else:
                    texts.append(text)
            categorical_names.append(name)
            categorical_blocks.append(texts)
            categorical_nulls.append(nulls)
        else:  # values of a type no block carries (lists, dicts...): all mismatched
            mismatched.extend(_mismatch(i, name, v) for i, v in enumerate(values) if v is not None)
    numeric = np.column_stack(numeric_blocks) if numeric_blocks else np.zeros((rows, 0))
    numeric_null = np.column_stack(numeric_nulls) if numeric_nulls else np.zeros((rows, 0), bool)
    categorical_null = (
        np.column_stack(categorical_nulls) if categorical_nulls else np.zeros((rows, 0), bool)
    )
    categorical = np.empty((rows, len(categorical_blocks)), dtype=object)
    for j, block in enumerate(categorical_blocks):
        categorical[:, j] = block
    return {
        "numeric_names": numeric_names,
        "numeric_values": np.ascontiguousarray(numeric, dtype="<f8").tobytes(),
        "numeric_nulls": pack_mask(numeric_null),
        "categorical_names": categorical_names,
        "categorical_nulls": pack_mask(categorical_null),
        "mismatched": mismatched,
        **categorical_block(categorical),
    }


@dataclass
class FeatureFrame:
    """Decoded rows of one or more events as numpy matrices.

    ``numeric[i, j]`` is row i of feature ``numeric_names[j]`` (NaN where null;
    ``numeric_null`` tells a null from a NaN value).

    ``dictionary``, when known, is the categorical block as the wire often
    carries it: (levels, codes) with ``categorical == levels[codes]`` (codes
    rows x names; a level may repeat or go unused). Counting categories and
    writing the block back then take numpy over codes instead of a
    dictionary lookup per cell. Frames built any other way have None.

    ``texts`` holds ``categorical``; it may be None where ``dictionary`` is
    known, and is then built when first read. Events stacked from their
    dictionaries leave it so: the monitor counts codes, and an object array
    of every cell (and its gathers) cost 30 ns a row of four categories.
    """

    rows: int
    numeric_names: tuple[str, ...]
    numeric: np.ndarray
    numeric_null: np.ndarray
    categorical_names: tuple[str, ...]
    texts: np.ndarray | None
    categorical_null: np.ndarray
    mismatched: list[dict[str, Any]] = field(default_factory=list)
    dictionary: tuple[list[str], np.ndarray] | None = None

    @property
    def categorical(self) -> np.ndarray:
        """The rows x names category texts (from ``dictionary`` when first read, if not given)."""
        if self.texts is None:
            if self.dictionary is None:
                raise ValueError("a frame without its category texts needs their dictionary")
            levels, codes = self.dictionary
            self.texts = np.array(levels, dtype=object)[codes] if levels else np.empty(codes.shape, dtype=object)
        return self.texts

    @classmethod
    def from_record(cls, columns: Mapping[str, Any], rows: int) -> FeatureFrame:
        """Decode a ``driftline.Columns`` record holding ``rows`` rows, checking its shape."""
        numeric_names = tuple(columns["numeric_names"])
        categorical_names = tuple(columns["categorical_names"])
        all_names = numeric_names + categorical_names
        if len(set(all_names)) != len(all_names):
            raise DecodeError(f"duplicate feature names in event: {sorted(all_names)}")
        width = len(numeric_names)
        raw = columns["numeric_values"]
        if len(raw) != 8 * rows * width:
            raise DecodeError(
                f"numeric block has {len(raw)} bytes, {8 * rows * width} expected "
                f"for {rows} rows x {width} features"
            )
        numeric = np.frombuffer(raw, dtype="<f8").reshape(rows, width)
        numeric_null = unpack_mask(columns["numeric_nulls"], rows, width)
        if numeric_null.any():
            numeric = numeric.copy()
            numeric[numeric_null] = np.nan
        cat_width = len(categorical_names)
        categorical = _categorical_matrix(columns, rows, cat_width)
        categorical_null = unpack_mask(columns["categorical_nulls"], rows, cat_width)
        mismatched = list(columns.get("mismatched") or ())
        for item in mismatched:
            if not 0 <= item["row"] < rows:
                raise DecodeError(f"mismatched value for {item['name']!r} names row {item['row']}")
        return cls(
            rows, numeric_names, numeric, numeric_null,
            categorical_names, categorical, categorical_null, mismatched, _dictionary_of(columns, rows, cat_width),
        )

    @classmethod
    def from_records(cls, items: Sequence[tuple[Mapping[str, Any], int]]) -> FeatureFrame:
        """Decode many events' ``Columns`` at once: ``items`` are (columns, rows) pairs.

        Events that share a layout (the same feature names in the same
        blocks, as one application's events do) are stacked with one
        ``b"".join`` and one ``np.frombuffer`` instead of a frame per event.
        The rows come out in event order whatever the layouts: readers pair
        them with request ids, scores and labels in that order.
        """
        items = list(items)
        groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[int]] = {}
        for i, (columns, _) in enumerate(items):
            layout = (tuple(columns["numeric_names"]), tuple(columns["categorical_names"]))
            groups.setdefault(layout, []).append(i)
        frames = [cls._stack(layout, [items[i] for i in group]) for layout, group in groups.items()]
        if not frames:
            raise DecodeError("no events to decode")
        if len(frames) == 1:
            return frames[0]
        # Stacked by layout, the rows are grouped by layout: put them back in event order (a reader pairs
        # them with request ids, scores and times in event order).
        counts = np.fromiter((rows for _, rows in items), dtype=np.int64, count=len(items))
        stacked = np.concatenate([np.asarray(group, dtype=np.int64) for group in groups.values()])
        start_of = np.empty(len(items), dtype=np.int64)
        start_of[stacked] = np.cumsum(counts[stacked]) - counts[stacked]  # each event's first row, stacked
        order = np.repeat(start_of - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
        return cls.concat(frames).take(order)

    @classmethod
    def _stack(cls, layout: tuple[tuple[str, ...], tuple[str, ...]],
               group: list[tuple[Mapping[str, Any], int]]) -> FeatureFrame:
        if len(group) == 1 or any(c["numeric_nulls"] or c["categorical_nulls"] or c.get("mismatched")
                                  for c, _ in group):
            return cls.concat(cls.from_record(c, r) for c, r in group)
        numeric_names, categorical_names = layout
        if len(set(numeric_names + categorical_names)) != len(numeric_names) + len(categorical_names):
            raise DecodeError(f"duplicate feature names in event: {sorted(numeric_names + categorical_names)}")
        rows = sum(r for _, r in group)
        width, cat_width = len(numeric_names), len(categorical_names)
        numeric = _stacked_numbers([c["numeric_values"] for c, _ in group], rows, width)
        if numeric is None:
            return cls.concat(cls.from_record(c, r) for c, r in group)  # names the bad event
        dictionary = None
        if all(c.get("categorical_codes") and not c["categorical_values"] for c, _ in group):  # batch events
            dictionary = _stacked_dictionaries(group, rows, cat_width)
            if dictionary is None:
                return cls.concat(cls.from_record(c, r) for c, r in group)  # names the bad event
            categorical = None  # built from the dictionary if read
        elif any(c.get("categorical_codes") for c, _ in group):  # some batch events: each its own dictionary
            categorical = np.concatenate([_categorical_matrix(c, r, cat_width) for c, r in group])
            parts = [_dictionary_of(c, r, cat_width) for c, r in group]
            dictionary = _joined_dictionaries(parts) if all(p is not None for p in parts) else None
        else:
            values: list[str] = []
            for c, _ in group:
                values.extend(c["categorical_values"])
            if len(values) != rows * cat_width:
                return cls.concat(cls.from_record(c, r) for c, r in group)
            categorical = np.array(values, dtype=object).reshape(rows, cat_width)
        return cls(
            rows, numeric_names, numeric, np.zeros((rows, width), dtype=bool), categorical_names, categorical,
            np.zeros((rows, cat_width), dtype=bool), [], dictionary,
        )

    @classmethod
    def concat(cls, frames: Iterable[FeatureFrame]) -> FeatureFrame:
        """Stack frames row-wise, aligning features by name (absent -> null)."""
        frames = list(frames)
        if len(frames) == 1:
            return frames[0]
        first = frames[0]
        if all(f.numeric_names == first.numeric_names and f.categorical_names == first.categorical_names
               for f in frames):  # one layout (one application's events): the arrays stack as they are
            return cls._stacked(frames)
        num_names = tuple(dict.fromkeys(n for f in frames for n in f.numeric_names))
        cat_names = tuple(dict.fromkeys(n for f in frames for n in f.categorical_names))
        total = sum(f.rows for f in frames)
        numeric = np.full((total, len(num_names)), np.nan)
        numeric_null = np.ones((total, len(num_names)), dtype=bool)
        categorical = np.full((total, len(cat_names)), "", dtype=object)
        categorical_null = np.ones((total, len(cat_names)), dtype=bool)
        num_index = {n: j for j, n in enumerate(num_names)}
        cat_index = {n: j for j, n in enumerate(cat_names)}
        mismatched: list[dict[str, Any]] = []
        start = 0
        for f in frames:
            stop = start + f.rows
            cols = [num_index[n] for n in f.numeric_names]
            numeric[start:stop, cols] = f.numeric
            numeric_null[start:stop, cols] = f.numeric_null
            cols = [cat_index[n] for n in f.categorical_names]
            categorical[start:stop, cols] = f.categorical
            categorical_null[start:stop, cols] = f.categorical_null
            mismatched.extend({**m, "row": m["row"] + start} for m in f.mismatched)
            start = stop
        same_layout = all(f.categorical_names == cat_names for f in frames)
        parts = [f.dictionary for f in frames]
        dictionary = _joined_dictionaries(parts) if same_layout and all(p is not None for p in parts) else None
        return cls(
            total, num_names, numeric, numeric_null,
            cat_names, categorical, categorical_null, mismatched, dictionary,
        )

    @classmethod
    def _stacked(cls, frames: list[FeatureFrame]) -> FeatureFrame:
        """Frames of one layout one after another (:meth:`concat` without aligning names)."""
        mismatched: list[dict[str, Any]] = []
        start = 0
        for f in frames:
            mismatched.extend({**m, "row": m["row"] + start} for m in f.mismatched)
            start += f.rows
        parts = [f.dictionary for f in frames]
        first = frames[0]
        dictionary = _joined_dictionaries(parts) if all(p is not None for p in parts) else None
        texts = None if dictionary is not None and any(f.texts is None for f in frames) else \
            np.concatenate([f.categorical for f in frames])
        return cls(start, first.numeric_names, np.concatenate([f.numeric for f in frames]),
                   np.concatenate([f.numeric_null for f in frames]), first.categorical_names, texts,
                   np.concatenate([f.categorical_null for f in frames]), mismatched, dictionary)

    def to_record(self) -> dict[str, Any]:
        """Back to a ``driftline.Columns`` record (inverse of :meth:`from_record`; a null's value is
        written as 0.0 or "", as the encoders write it)."""
        numeric = np.where(self.numeric_null, 0.0, self.numeric) if self.numeric_null.any() else self.numeric
        nulls = self.categorical_null.any()
        categorical = np.where(self.categorical_null, "", self.categorical) if nulls else self.categorical
        if self.dictionary is not None and not nulls and self.rows >= DICTIONARY_ROWS and categorical.size:
            block = _used_levels(*self.dictionary)  # the codes as they are: no text looked at per cell
        else:
            block = categorical_block(categorical)
        return {
            "numeric_names": list(self.numeric_names),
            "numeric_values": np.ascontiguousarray(numeric, dtype="<f8").tobytes(),
            "numeric_nulls": pack_mask(self.numeric_null),
            "categorical_names": list(self.categorical_names),
            "categorical_nulls": pack_mask(self.categorical_null),
            "mismatched": list(self.mismatched),
            **block,
        }

    @classmethod
    def no_columns(cls, rows: int) -> FeatureFrame:
        """``rows`` rows of no feature: what a prediction forwarded without its features carries."""
        empty = np.zeros((rows, 0))
        return cls(rows, (), empty, empty.astype(bool), (), empty.astype(object), empty.astype(bool))

    def numeric_column(self, name: str) -> np.ndarray:
        return self.numeric[:, self.numeric_names.index(name)]

    def span(self, start: int, stop: int) -> FeatureFrame:
        """Rows ``start`` to ``stop - 1``, as views of this frame's arrays (no copy; frames are not written
        to), type mismatches renumbered with them."""
        mismatched = [{**m, "row": m["row"] - start} for m in self.mismatched if start <= m["row"] < stop]
        dictionary = None if self.dictionary is None else (self.dictionary[0], self.dictionary[1][start:stop])
        texts = None if self.texts is None else self.texts[start:stop]
        return FeatureFrame(stop - start, self.numeric_names, self.numeric[start:stop], self.numeric_null[start:stop],
                            self.categorical_names, texts, self.categorical_null[start:stop], mismatched, dictionary)

    def take(self, rows: np.ndarray) -> FeatureFrame:
        """The rows selected by a boolean mask (in order) or by distinct indices (in their order), type
        mismatches renumbered with them."""
        kept = np.flatnonzero(rows) if rows.dtype == bool else rows
        if neighbours(kept):  # a window of time-ordered events, the whole batch: views
            return self.span(int(kept[0]), int(kept[-1]) + 1)
        mismatched = []
        if self.mismatched:
            new_index = np.full(self.rows, -1)
            new_index[kept] = np.arange(kept.size)
            mismatched = [{**m, "row": int(new_index[m["row"]])} for m in self.mismatched
                          if 0 <= m["row"] < self.rows and new_index[m["row"]] >= 0]
        dictionary = None if self.dictionary is None else (self.dictionary[0], self.dictionary[1][kept])
        texts = None if self.texts is None else self.texts[kept]
        return FeatureFrame(int(kept.size), self.numeric_names, self.numeric[kept], self.numeric_null[kept],
                            self.categorical_names, texts, self.categorical_null[kept], mismatched, dictionary)

    def to_rows(self) -> list[dict[str, Any]]:
        """Back to one dict per row (nulls omitted): what a river model's ``predict_one`` takes."""
        rows: list[dict[str, Any]] = [{} for _ in range(self.rows)]
        for j, name in enumerate(self.numeric_names):
            column, nulls = self.numeric[:, j].tolist(), self.numeric_null[:, j]
            for i, row in enumerate(rows):
                if not nulls[i]:
                    row[name] = column[i]
        for j, name in enumerate(self.categorical_names):
            column, nulls = self.categorical[:, j], self.categorical_null[:, j]
            for i, row in enumerate(rows):
                if not nulls[i]:
                    row[name] = column[i]
        return rows


def _dictionary_of(columns: Mapping[str, Any], rows: int, width: int) -> tuple[list[str], np.ndarray] | None:
    """A checked record's dictionary form (levels, rows x width codes), or None when it holds texts."""
    codes = columns.get("categorical_codes") or b""
    if not codes:
        return None
    return list(columns.get("categorical_levels") or []), \
        np.frombuffer(codes, dtype="<u4").astype(np.int64).reshape(rows, width)


def _joined_dictionaries(parts: Sequence[tuple[list[str], np.ndarray] | None]) -> tuple[list[str], np.ndarray]:
    """Dictionaries of frames stacked in order: the levels one after another, each frame's codes moved
    past the levels before it, then each level once (:func:`_distinct_levels`)."""
    levels: list[str] = []
    codes = []
    for part in parts:
        assert part is not None
        codes.append(part[1] + len(levels))
        levels.extend(part[0])
    return _distinct_levels(levels, np.concatenate(codes))


def _stacked_numbers(values: list[bytes], rows: int, width: int) -> np.ndarray | None:
    """Events' ``numeric_values`` as one rows x width matrix, None when their sizes do not add up.

    Column-major where :mod:`schemas._bodies` is built: each feature's values
    are then contiguous, and a window's summary reads them in place instead
    of transposing a matrix larger than the caches (``streams.drift.summary``).
    """
    if native_column_major is not None and width:
        stacked = native_column_major(values, width, rows)
        if stacked is not None:
            return np.frombuffer(stacked, dtype="<f8").reshape(width, rows).T
    raw = b"".join(values)
    if len(raw) != 8 * rows * width:
        return None
    return np.frombuffer(raw, dtype="<f8").reshape(rows, width)


def _distinct_levels(levels: list[str], codes: np.ndarray) -> tuple[list[str], np.ndarray]:
    """A joined dictionary with each level once: events stacked one after another repeat the same few
    levels (450 batch events of 4 levels: 1,800), and whoever counts a column would otherwise add them up
    by text in Python, level by level (17 % of a summary of such a batch)."""
    distinct, remap = unique_texts(levels)
    if len(distinct) == len(levels):
        return levels, codes
    return distinct, remap[codes]


def _stacked_dictionaries(group: Sequence[tuple[Mapping[str, Any], int]], rows: int, width: int
                          ) -> tuple[list[str], np.ndarray] | None:
    """The joined dictionary of events that each carry their categories as a dictionary, built once for all of
    them: their levels one after another, every code checked against its own event's levels and moved past the
    levels before them, each level then once (the frame's texts are built from it if they are read). None
    when an event's codes do not fit it (the caller reads the events one by one, which names the bad one)."""
    level_lists = [c.get("categorical_levels") or [] for c, _ in group]
    sizes = np.fromiter(map(len, level_lists), dtype=np.int64, count=len(group))
    if native_dictionary_codes is not None:  # checked, moved and deduplicated in one pass, column-major
        levels = [level for own in level_lists for level in own]
        distinct, remap = unique_texts(levels)
        if len(distinct) == len(levels):
            distinct, remap = levels, np.arange(len(levels), dtype=np.int64)
        stacked = native_dictionary_codes([c["categorical_codes"] for c, _ in group], sizes, remap, width, rows)
        return None if stacked is None else (distinct, np.frombuffer(stacked, dtype=np.int64).reshape(width, rows).T)
    codes_bytes = b"".join(c["categorical_codes"] for c, _ in group)
    if len(codes_bytes) != 4 * rows * width:
        return None
    counts = np.fromiter((r for _, r in group), dtype=np.int64, count=len(group))
    local = np.frombuffer(codes_bytes, dtype="<u4").astype(np.int64).reshape(rows, width)
    if bool((local >= np.repeat(sizes, counts)[:, None]).any()):
        return None
    return _distinct_levels([level for own in level_lists for level in own],
                            local + np.repeat(np.cumsum(sizes) - sizes, counts)[:, None])


def _used_levels(levels: list[str], codes: np.ndarray) -> dict[str, Any]:
    """The categorical value fields of a ``Columns`` record from a dictionary: the levels the codes use,
    once each, and the codes renumbered to them (numpy only)."""
    used, index = np.unique(codes, return_inverse=True)
    texts = [levels[i] for i in used.tolist()]
    distinct, remap = unique_texts(texts)  # a level repeated in the dictionary is written once
    return {"categorical_values": [], "categorical_levels": distinct,
            "categorical_codes": remap[index.reshape(-1)].astype("<u4").tobytes()}


def _categorical_matrix(columns: Mapping[str, Any], rows: int, width: int) -> np.ndarray:
    """The rows x width texts of a ``Columns`` record, from its values or its dictionary form."""
    codes = columns.get("categorical_codes") or b""
    values = columns["categorical_values"]
    if codes:
        if values:
            raise DecodeError("categorical block has both values and codes")
        if len(codes) != 4 * rows * width:
            raise DecodeError(f"categorical codes have {len(codes)} bytes, {4 * rows * width} expected "
                              f"for {rows} rows x {width} features")
        index = np.frombuffer(codes, dtype="<u4")
        levels = np.array(columns.get("categorical_levels") or [], dtype=object)
        if index.size and int(index.max()) >= len(levels):
            raise DecodeError(f"a categorical code is {int(index.max())}; there are {len(levels)} levels")
        return levels[index].reshape(rows, width)
    if len(values) != rows * width:
        raise DecodeError(
            f"categorical block has {len(values)} values, {rows * width} expected "
            f"for {rows} rows x {width} features"
        )
    return np.array(values, dtype=object).reshape(rows, width)


def float_buffer(values: Sequence[float] | np.ndarray) -> bytes:
    """Packed little-endian float64 bytes (predictions travel like this)."""
    return np.ascontiguousarray(values, dtype="<f8").tobytes()


def read_float_buffer(raw: bytes, rows: int, what: str = "prediction") -> np.ndarray:
    if len(raw) != 8 * rows:
        raise DecodeError(f"{what} has {len(raw)} bytes, {8 * rows} expected for {rows} rows")
    return np.frombuffer(raw, dtype="<f8")
