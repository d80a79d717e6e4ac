"""Hand-compiled Avro readers and writers for the two hot event bodies, Prediction and Features.

fastavro walks a schema for every message: for a one-row, 20-feature event
that is most of a worker's time (it builds every name of every column again,
once per event). These functions know the two bodies' field order, so a
message is a straight pass of slices and varints, and they remember the
*layout* (the encoded arrays of feature names) an application sends over
and over: a known layout is matched with one ``bytes.startswith`` instead of
being parsed, and a known row shape is written from preformatted bytes plus
one ``struct.pack`` for its numbers.

They never decide anything fastavro would decide differently: the reader
gives up (``None``) on anything unusual — negative block counts (other
writers' blocked arrays), truncated or trailing bytes, bad UTF-8 — and the
caller decodes the message with fastavro, which also produces the error
message. ``tests/unit/test_compiled_codec.py`` checks both against fastavro
on random events, byte for byte and record for record.

The general reader also exists in C (``schemas/_bodies.c``, built at install
where a C compiler is; the Python one stays as its reference and fallback): a
100-row event took 15 µs through :meth:`BodyReader._general` and takes 5 µs
there. The test holds the two to the same decision on broken bodies too.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from schemas.columns import DICTIONARY_ROWS, encode_rows, unique_texts

native_body: Callable[[bytes, int, bool], dict[str, Any] | None] | None
try:  # the general reader in C (schemas/_bodies.c): a batch event's twenty-odd fields in one pass
    from schemas._bodies import body as native_body
except ImportError:  # built without a C compiler: the Python reader below decides the same, more slowly
    native_body = None

_DOUBLE = struct.Struct("<d")
_LAYOUTS_KEPT = 16  # distinct name arrays remembered per reader / row shapes per writer
_TEXTS_KEPT = 4096  # encoded category texts remembered by a writer
_RETRY_AFTER = 64  # rows of a key set that was not plain before its shape is learned again


class _Unusual(Exception):
    """This body is not the plain shape the compiled reader handles: decode it with fastavro."""


# ------------------------------------------------------------------ reading
def _long(data: bytes, p: int) -> tuple[int, int]:
    """An Avro long (zig-zag varint of at most ten bytes and 64 bits) at ``p``, and the position after it."""
    b = data[p]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), p + 1
    value, shift = b & 0x7F, 7
    while True:
        p += 1
        b = data[p]
        if shift == 63 and b > 1:
            raise _Unusual  # bits past 64, or an eleventh byte
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return (value >> 1) ^ -(value & 1), p + 1
        shift += 7


def _bytes(data: bytes, p: int) -> tuple[bytes, int]:
    n = data[p]
    if n < 0x80 and not n & 1:  # under 64 bytes: the length is one byte
        end = p + 1 + (n >> 1)
        if end > len(data):
            raise _Unusual
        return data[p + 1:end], end
    n, p = _long(data, p)
    end = p + n
    if n < 0 or end > len(data):
        raise _Unusual
    return data[p:end], end


def _string(data: bytes, p: int) -> tuple[str, int]:
    raw, p = _bytes(data, p)
    return raw.decode(), p


def _strings(data: bytes, p: int) -> tuple[list[str], int]:
    """An array of strings written as one block (as fastavro and the Java library write them)."""
    count = data[p]
    if count < 0x80 and not count & 1:
        count >>= 1
        p += 1
    else:
        count, p = _long(data, p)
        if count < 0:
            raise _Unusual  # a blocked array with byte sizes: fastavro reads it
    if count > len(data) - p:
        raise _Unusual  # each item takes a byte at least: a broken count, not a reason to allocate its size
    if count == 0:
        return [], p
    if count >= 8:
        uniform = _uniform_strings(data, p, count)
        if uniform is not None:
            return uniform
    out: list[str] = []
    append = out.append
    size = len(data)
    for _ in range(count):
        b = data[p]
        if b < 0x80 and not b & 1:  # a string under 64 bytes: its length is one byte
            end = p + 1 + (b >> 1)
            if end > size:
                raise _Unusual
            append(data[p + 1:end].decode())
            p = end
        else:
            text, p = _string(data, p)
            append(text)
    if data[p] != 0:
        raise _Unusual  # a second block
    return out, p + 1


def _uniform_strings(data: bytes, p: int, count: int) -> tuple[list[str], int] | None:
    """``count`` ASCII strings of one length under 64 (request ids, mostly) in one decode and slices.

    Each item is then a length byte and that many bytes, so the items sit at a
    fixed stride: checking every stride-th byte is the length proves the parse
    a loop would make. None when they are not so (the loop reads them).
    """
    b = data[p]
    if b >= 0x80 or b & 1 or b == 0:
        return None
    stride = (b >> 1) + 1
    end = p + count * stride
    region = data[p:end]
    if region[::stride] != bytes((b,)) * count or not region.isascii() or data[end:end + 1] != b"\x00":
        return None
    text = region.decode()
    if text.count(text[0]) == count:  # the length byte's character only as the length: one C-level split
        return text.split(text[0])[1:], end + 1
    return [text[i:i + stride - 1] for i in range(1, len(text), stride)], end + 1  # also inside a text


class _NameArrays:
    """The name arrays seen lately, matched by their encoded bytes instead of parsed again."""

    def __init__(self) -> None:
        self._known: list[tuple[bytes, list[str]]] = []

    def read(self, data: bytes, p: int) -> tuple[list[str], int]:
        for encoded, names in self._known:
            if data.startswith(encoded, p):
                return list(names), p + len(encoded)
        names, end = _strings(data, p)
        self._known.insert(0, (data[p:end], names))
        del self._known[_LAYOUTS_KEPT:]
        return list(names), end


class BodyReader:
    """Reads Prediction and Features bodies written with the current schemas.

    One per codec: its memory of name arrays is what makes a known layout
    cheap. ``None`` from a read means "not the plain shape": decode with fastavro.
    ``native``: read bodies that are not a known one-row shape with the C reader
    (:mod:`schemas._bodies`) where it is built, else with :meth:`_general`.
    """

    def __init__(self, *, native: bool = True) -> None:
        self._any_body = native_body if native and native_body is not None else self._general
        self._numeric_names = _NameArrays()
        self._categorical_names = _NameArrays()
        self._model: tuple[bytes, str] = (b"\x00", "")
        self._one_row: _OneRowShape | None = None
        # every plain one-row layout learnt lately, newest first: the batch reader's patterns
        self._shapes: dict[tuple[tuple[str, ...], tuple[str, ...]], _OneRowShape] = {}

    def prediction(self, data: bytes, start: int) -> dict[str, Any] | None:
        return self._read(data, start, True)

    def features(self, data: bytes, start: int) -> dict[str, Any] | None:
        return self._read(data, start, False)

    def _read(self, data: bytes, start: int, prediction: bool) -> dict[str, Any] | None:
        """The one-pass reader for the shape seen last, else the general one (which learns the shape)."""
        if self._one_row is not None:
            record = self._plain_one_row(data, start, prediction)
            if record is not None:
                return record
        record = self._any_body(data, start, prediction)
        if record is not None:
            self._learn(record)
        return record

    def _learn(self, record: dict[str, Any]) -> None:
        """Remember the shape of a plain one-row event, for :meth:`_plain_one_row`."""
        columns = record["columns"]
        if (len(record["request_ids"]) == 1 and not columns["numeric_nulls"] and not columns["categorical_nulls"]
                and not columns["mismatched"] and not columns["categorical_codes"]):
            layout = (tuple(columns["numeric_names"]), tuple(columns["categorical_names"]))
            shape = self._shapes.pop(layout, None) or _OneRowShape(*layout)
            self._shapes = {layout: shape, **self._shapes}
            if len(self._shapes) > _LAYOUTS_KEPT:
                del self._shapes[next(reversed(self._shapes))]
            self._one_row = shape

    def shapes(self) -> list[_OneRowShape]:
        """The plain one-row shapes learnt lately, newest first."""
        return list(self._shapes.values())

    def _plain_one_row(self, data: bytes, p: int, versioned: bool) -> dict[str, Any] | None:
        """The common event in one pass: one row, a known layout, short strings, no nulls or segment.

        Every byte is checked against that shape; the first that does not fit
        returns None and the general reader starts again from the beginning.
        """
        shape = self._one_row
        assert shape is not None
        encoded, model = self._model
        try:
            if not data.startswith(encoded, p):
                return None
            p += len(encoded)
            version = ""
            if versioned:
                b = data[p]
                if b & 0x81:
                    return None
                end = p + 1 + (b >> 1)
                version = data[p + 1:end].decode()
                p = end
            value = shift = 0
            while True:  # event time: a varint of up to ten bytes
                b = data[p]
                p += 1
                value |= (b & 0x7F) << shift
                if b < 0x80:
                    break
                shift += 7
                if shift > 63:
                    return None
            b = data[p + 1]
            if data[p] != 2 or b & 0x81:  # exactly one request id, under 64 bytes
                return None
            end = p + 2 + (b >> 1)
            request_id = data[p + 2:end].decode()
            if data[end] != 0 or data[end + 1] != 0:  # the array's end; no segment
                return None
            p = end + 2
            if not data.startswith(shape.numeric_head, p):
                return None
            p += len(shape.numeric_head)
            end = p + shape.numeric_bytes
            numeric_values = data[p:end]
            p = end
            if not data.startswith(shape.categorical_head, p):
                return None
            p += len(shape.categorical_head)
            texts = []
            for _ in range(shape.texts):
                b = data[p]
                if b & 0x81:
                    return None
                end = p + 1 + (b >> 1)
                texts.append(data[p + 1:end].decode())
                p = end
            if not data.startswith(shape.tail, p):
                return None
            p += len(shape.tail)
        except (IndexError, UnicodeDecodeError):
            return None
        if len(numeric_values) != shape.numeric_bytes:
            return None
        columns = {"numeric_names": list(shape.numeric_names), "numeric_values": numeric_values,
                   "numeric_nulls": b"", "categorical_names": list(shape.categorical_names),
                   "categorical_values": texts, "categorical_nulls": b"", "mismatched": [],
                   "categorical_levels": [], "categorical_codes": b""}
        event_time = (value >> 1) ^ -(value & 1)
        if not versioned:
            if p != len(data):
                return None
            return {"model": model, "event_time": event_time, "request_ids": [request_id], "segment": None,
                    "columns": columns}
        if data[p:p + 1] != b"\x10" or len(data) != p + 10 or data[p + 9] != 0:
            return None  # one prediction of 8 bytes, no predicted class
        return {"model": model, "model_version": version, "event_time": event_time,
                "request_ids": [request_id], "segment": None, "columns": columns,
                "prediction": data[p + 1:p + 9], "predicted_class": None}

    def _general(self, data: bytes, start: int, prediction: bool) -> dict[str, Any] | None:
        """Any body of the current Prediction (or Features) schema whose arrays are single blocks."""
        try:
            record: dict[str, Any] = {}
            record["model"], p = self._model_at(data, start)
            if prediction:
                record["model_version"], p = _string(data, p)
            record["event_time"], p = _long(data, p)
            record["request_ids"], p = _strings(data, p)
            record["segment"], p = _optional_string(data, p)
            record["columns"], p = self._columns(data, p)
            if prediction:
                record["prediction"], p = _bytes(data, p)
                tag, p = _long(data, p)
                if tag == 0:
                    record["predicted_class"] = None
                elif tag == 1:
                    record["predicted_class"], p = _strings(data, p)
                else:
                    raise _Unusual
        except (_Unusual, IndexError, UnicodeDecodeError):
            return None
        return record if p == len(data) else None

    def _model_at(self, data: bytes, p: int) -> tuple[str, int]:
        encoded, model = self._model
        if data.startswith(encoded, p):
            return model, p + len(encoded)
        model, end = _string(data, p)
        self._model = (data[p:end], model)
        return model, end

    def _columns(self, data: bytes, p: int) -> tuple[dict[str, Any], int]:
        numeric_names, p = self._numeric_names.read(data, p)
        numeric_values, p = _bytes(data, p)
        numeric_nulls, p = _bytes(data, p)
        categorical_names, p = self._categorical_names.read(data, p)
        categorical_values, p = _strings(data, p)
        categorical_nulls, p = _bytes(data, p)
        count, p = _long(data, p)
        mismatched: list[dict[str, Any]] = []
        if count < 0 or count > len(data) - p:
            raise _Unusual
        if count:
            for _ in range(count):
                row, p = _long(data, p)
                name, p = _string(data, p)
                kind, p = _string(data, p)
                text, p = _string(data, p)
                if not -2**31 <= row < 2**31:
                    raise _Unusual  # an Avro int: fastavro says what is wrong with it
                mismatched.append({"row": row, "name": name, "type": kind, "text": text})
            if data[p] != 0:
                raise _Unusual
            p += 1
        categorical_levels, p = _strings(data, p)
        categorical_codes, p = _bytes(data, p)
        return {"numeric_names": numeric_names, "numeric_values": numeric_values,
                "numeric_nulls": numeric_nulls, "categorical_names": categorical_names,
                "categorical_values": categorical_values, "categorical_nulls": categorical_nulls,
                "mismatched": mismatched, "categorical_levels": categorical_levels,
                "categorical_codes": categorical_codes}, p


# After a one-row event's texts: their array's end marker (an empty array is that marker alone), then
# no categorical nulls, no mismatched values, no dictionary levels, no codes.
_PLAIN_TAIL = b"\x00" * 5


class _OneRowShape:
    """The bytes a plain one-row event of one layout always has (what :class:`RowWriter` writes)."""

    def __init__(self, numeric_names: Sequence[str], categorical_names: Sequence[str]) -> None:
        self.numeric_names = tuple(numeric_names)
        self.categorical_names = tuple(categorical_names)
        self.numeric_bytes = 8 * len(numeric_names)
        self.numeric_head = avro_strings(numeric_names) + avro_long(self.numeric_bytes)
        self.categorical_head = b"\x00" + avro_strings(categorical_names) + (
            avro_long(len(categorical_names)) if categorical_names else b"")
        self.texts = len(categorical_names)
        self.tail = _PLAIN_TAIL
        # The longest body of this layout (from the model on): model, version, request id and each category a
        # short string (a length byte and at most 63 bytes), a time of at most nine bytes, the one-byte array
        # heads and ends, and a prediction's score and class tag.
        self.max_body_bytes = (64 * (3 + self.texts) + 9 + 3 + len(self.numeric_head) + self.numeric_bytes +
                               len(self.categorical_head) + len(self.tail) + 10)


def _optional_string(data: bytes, p: int) -> tuple[str | None, int]:
    tag, p = _long(data, p)
    if tag == 0:
        return None, p
    if tag != 1:
        raise _Unusual
    return _string(data, p)


# ------------------------------------------------------------------ writing
def avro_long(value: int) -> bytes:
    """An Avro long: zig-zag, then a little-endian base-128 varint."""
    z = (value << 1) ^ (value >> 63)
    if z < 0x80:
        return _SMALL[z]
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_SMALL = [bytes((z,)) for z in range(0x80)]


def avro_string(text: str) -> bytes:
    raw = text.encode()
    return avro_long(len(raw)) + raw


def avro_strings(texts: Sequence[str]) -> bytes:
    """An array of strings in one block (empty: the end marker alone), as fastavro writes it.

    ASCII texts of one length under 64 (request ids, mostly: the reverse of the reader's
    ``_uniform_strings``) are joined with their length byte as the separator and encoded once: 45,000 ids
    in 2 ms instead of 15.
    """
    if not texts:
        return b"\x00"
    if len(texts) >= 8:
        size, count = len(texts[0]), len(texts)
        if 0 < size < 64:
            mark = chr(2 * size)
            joined = mark + mark.join(texts)
            # every text of that length: the marks at every stride and nowhere else (C-level checks; a set of
            # the lengths took most of the time). A mark inside a text could line up with a stride when its
            # neighbour is a character short, so the count matters too.
            if len(joined) == count * (size + 1) and joined[::size + 1] == mark * count and \
                    joined.count(mark) == count and joined.isascii():
                return avro_long(count) + joined.encode() + b"\x00"
    return avro_long(len(texts)) + b"".join(map(avro_string, texts)) + b"\x00"


class _RowShape(_OneRowShape):
    """A row shape the writer fills (these keys, numbers here, texts there): the fixed bytes the reader
    expects (:class:`_OneRowShape`, so both sides write and check the same ones), and getters."""

    def __init__(self, numeric_names: list[str], categorical_names: list[str]) -> None:
        super().__init__(numeric_names, categorical_names)
        self.numbers = itemgetter(*numeric_names) if numeric_names else None
        self.get_texts = itemgetter(*categorical_names) if categorical_names else None
        self.single_number = len(numeric_names) == 1
        self.single_text = len(categorical_names) == 1
        self.pack = struct.Struct(f"<{len(numeric_names)}d").pack


class RowWriter:
    """Writes the Columns block of a one-row event from a dict, fast when the row is plain.

    Plain: every value an exact ``float``/``int`` (numbers) or ``str`` (texts),
    no ``None``, and the same keys as a row seen before. Anything else —
    a null, a bool, a numpy scalar, a value that does not fit the spec — gets
    ``None``, and the caller builds the event the general way
    (:func:`~schemas.columns.encode_rows`), which knows every rule. The shape
    of a new key set is taken from ``encode_rows`` itself, so both paths always
    agree on which block a feature goes in and in what order.
    """

    def __init__(self, spec: Any = None) -> None:
        self.spec = spec
        self._shapes: dict[tuple[str, ...], _RowShape] = {}
        # key sets whose last row was not plain: the general path takes the next ones without a second
        # encode to learn from, and a shape is tried again only every _RETRY_AFTER rows
        self._not_plain: dict[tuple[str, ...], int] = {}
        self._texts: dict[str, bytes] = {}

    def columns(self, row: Mapping[str, Any]) -> bytes | None:
        try:
            keys = tuple(row)
        except TypeError:
            return None
        shape = self._shapes.get(keys)
        if shape is None:
            waiting = self._not_plain.get(keys)
            if waiting:
                self._not_plain[keys] = waiting - 1
                return None
            shape = self._learn(keys, row)
        if shape is None:
            return None
        parts = [shape.numeric_head]
        if shape.numbers is not None:
            numbers = shape.numbers(row)
            if shape.single_number:
                numbers = (numbers,)
            for value in numbers:
                kind = type(value)
                if kind is not float and kind is not int:
                    return None
            try:
                parts.append(shape.pack(*numbers))
            except (OverflowError, struct.error):
                return None  # an int beyond float64: the general path says so
        parts.append(shape.categorical_head)
        if shape.get_texts is not None:
            texts = shape.get_texts(row)
            if shape.single_text:
                texts = (texts,)
            known = self._texts
            for value in texts:
                encoded = known.get(value) if type(value) is str else None
                if encoded is None:
                    if type(value) is not str:
                        return None
                    encoded = avro_string(value)
                    if len(known) >= _TEXTS_KEPT:
                        known.clear()
                    known[value] = encoded
                parts.append(encoded)
        parts.append(shape.tail)
        return b"".join(parts)

    def _learn(self, keys: tuple[str, ...], row: Mapping[str, Any]) -> _RowShape | None:
        try:
            columns = encode_rows([row], self.spec)
        except Exception:  # the general path raises its own error for this row
            return None
        plain = not (columns["numeric_nulls"] or columns["categorical_nulls"] or columns["mismatched"]
                     or columns["categorical_codes"])
        names = set(columns["numeric_names"]) | set(columns["categorical_names"])
        shape = _RowShape(columns["numeric_names"], columns["categorical_names"]) \
            if plain and names == set(keys) else None
        if shape is None:
            if len(self._not_plain) >= _LAYOUTS_KEPT:
                self._not_plain.clear()
            self._not_plain[keys] = _RETRY_AFTER
            return None
        self._not_plain.pop(keys, None)
        if len(self._shapes) >= _LAYOUTS_KEPT:
            self._shapes.clear()
        self._shapes[keys] = shape
        return shape


def plain_columns(columns: Mapping[str, Sequence[Any]], rows: int) -> bytes | None:
    """The ``Columns`` block of whole columns, written directly when every column is plain.

    Plain: ``rows`` values per column, all exact ``float``/``int`` (a numeric
    column) or all ``str`` (a categorical one), no ``None``. The blocks, their
    order and the dictionary form for many rows are what
    :func:`~schemas.columns.encode_columns` chooses for the same columns (a
    serving node's grouped requests, mostly); anything else gets ``None`` and
    the caller takes that general path, which knows every rule.
    """
    if not columns or rows < 1:
        return None  # an event of no features: the general path's rules (and errors)
    numeric_names: list[str] = []
    numeric: list[Sequence[Any]] = []
    categorical_names: list[str] = []
    texts: list[Sequence[Any]] = []
    for name, values in columns.items():
        if type(name) is not str or not name or len(values) != rows:
            return None
        kinds = set(map(type, values))
        if kinds <= _NUMBER_TYPES and kinds:
            numeric_names.append(name)
            numeric.append(values)
        elif kinds == _TEXT_TYPES:
            categorical_names.append(name)
            texts.append(values)
        else:
            return None
    try:
        matrix = np.array(numeric, dtype="<f8").T if numeric else np.zeros((rows, 0), dtype="<f8")
    except OverflowError:
        return None  # an int beyond float64: the general path says so
    values = np.ascontiguousarray(matrix).tobytes()
    parts = [avro_strings(numeric_names), avro_long(len(values)), values, b"\x00", avro_strings(categorical_names)]
    cells = [text for row in zip(*texts, strict=True) for text in row] if texts else []
    if cells and rows >= DICTIONARY_ROWS:
        levels, codes = unique_texts(cells)
        raw_codes = codes.astype("<u4").tobytes()
        parts += [b"\x00", b"\x00", b"\x00", avro_strings(levels), avro_long(len(raw_codes)), raw_codes]
    else:
        parts += [avro_strings(cells), b"\x00", b"\x00", b"\x00", b"\x00"]
    return b"".join(parts)


_NUMBER_TYPES = frozenset((float, int))
_TEXT_TYPES = {str}


def predictions_body(model: str, version: str, event_time: int, request_ids: Sequence[str], columns: bytes,
                     scores: bytes, classes: Sequence[str] | None, segment: str | None = None) -> bytes:
    """A Prediction body of any number of rows from a written ``Columns`` block."""
    return b"".join((avro_string(model), avro_string(version), avro_long(event_time), avro_strings(request_ids),
                     b"\x00" if segment is None else b"\x02" + avro_string(segment), columns,
                     avro_long(len(scores)), scores,
                     b"\x00" if classes is None else b"\x02" + avro_strings(classes)))


def prediction_body(model_and_version: bytes, event_time: int, request_id: str, segment: str | None,
                    columns: bytes, score: float) -> bytes:
    """A one-row Prediction body with a numeric prediction and no class (the common event)."""
    return b"".join((model_and_version, avro_long(event_time), b"\x02", avro_string(request_id), b"\x00",
                     b"\x00" if segment is None else b"\x02" + avro_string(segment),
                     columns, b"\x10", _DOUBLE.pack(score), b"\x00"))


def features_body(model: bytes, event_time: int, request_id: str, segment: str | None, columns: bytes) -> bytes:
    """A one-row Features body."""
    return b"".join((model, avro_long(event_time), b"\x02", avro_string(request_id), b"\x00",
                     b"\x00" if segment is None else b"\x02" + avro_string(segment), columns))
