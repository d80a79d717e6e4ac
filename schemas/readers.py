"""Data read in typed batches through pyarrow: CSV (multi-threaded), Parquet (column-wise), Avro, DataFrames.

``driftline check`` is a gate for whatever pipelines write, so reading must
be fast, bounded in memory and tolerant of dirty cells:

* **Batches.** :func:`read_batches` yields :class:`~schemas.tables.Table`
  batches (about ``batch_bytes`` of CSV, or a row group's worth of Parquet);
  summaries of batches merge into the summary of the file, so a file larger
  than memory checks in bounded memory.
* **Per-value typing.** CSV cells arrive as text; a column's type comes from
  ``kinds`` (a profile's or spec's numeric/categorical) or, failing that,
  from the majority of the first batch's present cells. A cell that does not
  parse as its column's type is a null of the column *and* a
  ``type_mismatch`` with its row: one dirty value never turns a numeric
  column into text. The matching is pyarrow's vectorised regex, not a Python
  loop.
* **Nulls.** Empty cells and NA-like text (:data:`~schemas.tables.NULL_TOKENS`,
  or the caller's ``null_values``) are nulls in every source, not values.
* **One path.** Avro records and in-memory data (pandas, polars, pyarrow
  Tables, mappings of arrays) become Arrow batches too, so they are typed by
  exactly the same code as files.
"""

from __future__ import annotations

import contextlib
import csv
import threading
from collections.abc import Collection, Iterator, Mapping
from itertools import islice
from pathlib import Path
from queue import Empty, Full, Queue
from typing import Any, TypeVar

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from schemas.errors import ContractError
from schemas.tables import BOOL_TOKENS, NULL_TOKENS, NUMERIC_SHARE, Table

NUMBER = r"^\s*[-+]?((\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?|(?i:nan|inf|infinity))\s*$"
INTEGER = r"^\s*[-+]?\d+\s*$"
BATCH_BYTES = 16 << 20
T = TypeVar("T")
AVRO_BATCH_ROWS = 65_536


def _numpy_bool(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def type_of(text: pa.Array) -> str:
    """A text column's type from the majority of its present cells: int, float, bool or string."""
    present = len(text) - text.null_count
    if present == 0:
        return "float"
    if _numpy_bool(pc.is_in(text, value_set=pa.array(list(BOOL_TOKENS)))).sum() == present:
        return "bool"
    numeric = _numpy_bool(pc.match_substring_regex(text, NUMBER))
    if numeric.sum() < NUMERIC_SHARE * present:
        return "string"
    integral = _numpy_bool(pc.match_substring_regex(text, INTEGER))
    return "int" if integral.sum() == numeric.sum() else "float"


def typed_text(text: pa.Array, kind: str, first_row: int) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Values, null mask and mismatched cells (row -> text) of a text column read as ``kind``."""
    null = _numpy_bool(text.is_null())
    if kind in ("int", "float"):
        try:  # the common case, a clean column: one C++ cast, no regex
            clean = pc.cast(text, pa.float64())
            return np.asarray(clean.to_numpy(zero_copy_only=False), dtype=float), null, {}
        except pa.ArrowInvalid:
            pass
        numeric = _numpy_bool(pc.match_substring_regex(text, NUMBER))
        wrong = ~null & ~numeric
        values = pc.cast(pc.if_else(pa.array(numeric), text, pa.scalar(None, pa.string())), pa.float64())
        out = np.asarray(values.to_numpy(zero_copy_only=False), dtype=float)
        mismatches = {}
        if wrong.any():
            rows = np.flatnonzero(wrong)
            texts = text.filter(pa.array(wrong)).to_pylist()
            mismatches = {first_row + int(r): str(t) for r, t in zip(rows.tolist(), texts, strict=True)}
        return out, null | wrong, mismatches
    # Text: each distinct value becomes one Python object, then numpy indexing lays them out
    # (30x faster than one object per cell through to_pylist on 200k cells of 8 levels).
    # A CSV reader hands spec-categorical columns over already dictionary-encoded.
    encoded = text if pa.types.is_dictionary(text.type) else text.dictionary_encode()
    distinct = encoded.dictionary.to_pylist()
    if kind == "bool":
        distinct = [BOOL_TOKENS.get(c, c) for c in distinct]
    objects = np.array([*distinct, None], dtype=object)
    indices = encoded.indices.fill_null(len(distinct)).to_numpy(zero_copy_only=False)
    return objects[indices], null, {}


def _arrow_kind(arrow_type: pa.DataType) -> str | None:
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    return None  # text (or anything else): typed per value


def batch_table(batch: pa.RecordBatch, types: dict[str, str], first_row: int,
                null_values: Collection[str] = NULL_TOKENS) -> Table:
    """One Arrow batch as typed columns; ``types`` is filled from the first batch and then kept.

    ``null_values``: text cells that mean "no value" (empty, ``NA``...), nulls whatever the source.
    """
    tokens = pa.array(sorted(null_values), type=pa.string())
    columns: dict[str, np.ndarray] = {}
    nulls: dict[str, np.ndarray] = {}
    mismatches: dict[str, dict[int, str]] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        native = _arrow_kind(column.type)
        if native is not None and types.setdefault(name, native) in ("int", "float"):
            columns[name] = np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
            nulls[name] = _numpy_bool(column.is_null())
            continue
        if pa.types.is_dictionary(column.type):  # text the CSV reader already encoded (and nulled)
            text = column
        else:
            text = column if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) \
                else pc.cast(column, pa.string())
            if len(tokens):
                text = pc.if_else(pc.is_in(text, value_set=tokens), pa.scalar(None, text.type), text)
        kind = types[name] if name in types else types.setdefault(name, type_of(text))
        columns[name], nulls[name], bad = typed_text(text, kind, first_row)
        if bad:
            mismatches[name] = bad
    return Table(columns, dict(types), nulls, mismatches, first_row=first_row)


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        try:
            header = next(csv.reader(handle))
        except StopIteration:
            raise ContractError(f"{path} is empty: a CSV needs a header row") from None
    if len(set(header)) != len(header):
        raise ContractError(f"{path} has duplicate column names in its header")
    return header


def read_batches(path: str | Path, kinds: dict[str, str] | None = None, batch_bytes: int = BATCH_BYTES,
                 null_values: Collection[str] = NULL_TOKENS) -> Iterator[Table]:
    """A CSV, Parquet or Avro file as typed :class:`Table` batches (``kinds``: name -> int/float/bool/string)."""
    path = Path(path)
    if not path.exists():
        raise ContractError(f"{path} does not exist")
    types = dict(kinds or {})
    first_row = 0
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            batches: Iterator[pa.RecordBatch] = _csv_batches(path, types, batch_bytes, null_values)
        elif suffix in (".parquet", ".pq"):
            batches = pq.ParquetFile(path).iter_batches(batch_size=262_144)
        elif suffix == ".avro":
            batches = avro_batches(path)
        else:
            raise ContractError(f"{path}: unsupported file type {suffix!r}; use .csv, .parquet or .avro")
        for batch in batches:
            if batch.num_rows:
                yield batch_table(batch, types, first_row, null_values)
                first_row += batch.num_rows
    except pa.ArrowInvalid as exc:  # a ragged row, a broken file: one sentence with pyarrow's reason
        if suffix in (".csv", ".txt"):
            _raise_ragged_line(path)
        raise ContractError(f"{path}: {str(exc).splitlines()[0]}") from None


_END = object()


def read_ahead(batches: Iterator[T], depth: int = 1) -> Iterator[T]:
    """``batches`` produced by a thread ``depth`` batches ahead of the caller.

    Reading (pyarrow's parser, numpy's typing) releases the GIL for most of
    its time, so the next batch is read while the caller summarises this
    one; the queue's bound keeps memory at ``depth + 2`` batches. The
    producer's exception is raised in the caller; a caller that stops early
    (an exception, a closed generator) stops the producer too.
    """
    queue: Queue[Any] = Queue(maxsize=depth)
    stopping = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stopping.is_set():
                    try:
                        queue.put(batch, timeout=0.1)
                        break
                    except Full:
                        continue
                if stopping.is_set():
                    return
            queue.put(_END)
        except BaseException as exc:  # handed to the caller, raised there
            queue.put(_Failure(exc))
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="driftline-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stopping.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(Empty):
                queue.get(timeout=0.1)


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _csv_blocks(path: Path, block_bytes: int) -> Iterator[pa.Buffer]:
    """The file's data lines (after the header) as blocks of whole lines.

    Our own blocks, not pyarrow's streaming reader: that reader reads ahead
    of its consumer without bound (its pool reached 420 MB on a 379 MB file
    whatever ``use_threads`` or readahead setting), so a file larger than
    memory would not check. A block ends at the last line end in it whose
    prefix holds an even number of quote characters, so a quoted cell that
    contains a line break is never cut; such a block just grows to the next
    safe line end. Blocks are views of what was read, not copies.
    """
    with path.open("rb") as handle:
        handle.readline()  # the header: its names come from _csv_header
        carry = b""
        while chunk := handle.read(block_bytes):
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n") + 1
            quoted = data.find(b'"', 0, cut) != -1  # memchr: files without quotes skip the count
            if cut == 0 or (quoted and data.count(b'"', 0, cut) % 2):  # no line end yet, or inside a quoted cell
                carry = data
                continue
            yield pa.py_buffer(memoryview(data)[:cut])
            carry = data[cut:]
        if carry.strip():
            yield pa.py_buffer(carry)


def _read_block(block: pa.Buffer, header: list[str], column_types: dict[str, pa.DataType],
                null_values: Collection[str]) -> pa.RecordBatch:
    table = pa_csv.read_csv(pa.BufferReader(block),
                            read_options=pa_csv.ReadOptions(use_threads=True, column_names=header),
                            convert_options=pa_csv.ConvertOptions(column_types=column_types,
                                                                  null_values=sorted(null_values),
                                                                  strings_can_be_null=True))
    return pa.RecordBatch.from_arrays([c.combine_chunks() for c in table.columns], names=table.column_names)


def _csv_batches(path: Path, kinds: dict[str, str], batch_bytes: int,
                 null_values: Collection[str]) -> Iterator[pa.RecordBatch]:
    """CSV batches of ~``batch_bytes``: columns the spec calls numeric parsed as numbers by pyarrow
    (the fast path); a block where a cell does not parse is read again as text and typed per value,
    so a dirty file costs more only in its dirty blocks. Memory: a few blocks, whatever the file."""
    header = _csv_header(path)
    text = dict.fromkeys(header, pa.string())
    # Numbers parsed by pyarrow; text the spec calls categorical read straight into a dictionary
    # (no string column materialised per cell: the distinct values are what typing needs).
    typed = text | {n: pa.float64() for n in header if kinds.get(n) in ("int", "float")} \
        | {n: pa.dictionary(pa.int32(), pa.string()) for n in header if kinds.get(n) in ("string", "bool")}
    for block in _csv_blocks(path, batch_bytes):
        try:
            yield _read_block(block, header, typed, null_values)
        except pa.ArrowInvalid as exc:
            if typed == text or "conversion error" not in str(exc):
                raise
            yield _read_block(block, header, text, null_values)


def _raise_ragged_line(path: Path) -> None:
    """Name the first line whose cell count differs from the header (only on the error path)."""
    with path.open(newline="") as handle:
        rows = csv.reader(handle)
        width = len(next(rows))
        for lineno, row in enumerate(rows, start=2):
            if len(row) != width:
                raise ContractError(f"{path}:{lineno} has {len(row)} cells but the header names {width} columns")


def _avro_branches(avro_type: Any) -> list[Any]:
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    return [b.get("type") if isinstance(b, dict) and b.get("type") != "record" else b
            for b in branches if b != "null"]


_AVRO_ARROW = {"int": pa.int64(), "long": pa.int64(), "float": pa.float64(), "double": pa.float64(),
               "boolean": pa.bool_(), "string": pa.string(), "enum": pa.string()}


def avro_batches(path: Path, rows: int = AVRO_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """An Avro container file's flat records as Arrow batches of ``rows`` records.

    A field of one primitive type keeps it (numbers stay numbers); a field
    whose union mixes types (``["null", "string", "double"]``, what a dirty
    pipeline writes) is read as text and typed per value like a CSV cell.
    """
    try:
        with path.open("rb") as handle:
            reader = fastavro.reader(handle)
            schema = reader.writer_schema
            if not isinstance(schema, dict) or schema.get("type") != "record":
                raise ContractError(f"{path}: an Avro data file must hold flat records")
            arrow_types: dict[str, pa.DataType] = {}
            for f in schema["fields"]:
                branches = _avro_branches(f["type"])
                kinds = {_AVRO_ARROW.get(b) if isinstance(b, str) else None for b in branches}
                arrow_types[f["name"]] = kinds.pop() if len(kinds) == 1 and None not in kinds else pa.string()
            while chunk := list(islice(reader, rows)):
                records = [r for r in chunk if isinstance(r, dict)]
                arrays = []
                for name, arrow_type in arrow_types.items():
                    values = [r.get(name) for r in records]
                    arrays.append(_object_text(values, nan_is_null=False) if arrow_type == pa.string()
                                  else pa.array(values, type=arrow_type))
                yield pa.RecordBatch.from_arrays(arrays, names=list(arrow_types))
    except (ValueError, EOFError, fastavro.read.SchemaResolutionError) as exc:
        raise ContractError(f"{path}: not a readable Avro data file ({exc})") from None


def _object_text(values: np.ndarray | list, nan_is_null: bool = True) -> pa.Array:
    """Mixed values (numbers, text, booleans, None) as text cells for per-value typing.

    NaN is a null in a DataFrame's object column (pandas' missing value) but
    a value in an Avro record (``nan_is_null=False``).
    """
    items = values.tolist() if isinstance(values, np.ndarray) else values
    cells = [None if v is None or (nan_is_null and isinstance(v, float) and v != v) else
             ("true" if v else "false") if isinstance(v, bool | np.bool_) else str(v) for v in items]
    return pa.array(cells, type=pa.string())


def _arrow_column(values: Any) -> pa.Array:
    """One in-memory column as Arrow: numbers as numbers (NaN is a null), anything else as text."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    array = np.asarray(values)
    if array.dtype.kind in "iufb":
        return pa.array(array, from_pandas=True)
    if array.dtype.kind in "US":
        return pa.array(array.astype(str), type=pa.string())
    return _object_text(array)


def arrow_batch(data: Any) -> pa.RecordBatch:
    """In-memory data as one Arrow batch: a pyarrow Table/RecordBatch, a polars or pandas
    DataFrame, or a mapping of column name to values (lists, numpy arrays).

    Frames go through their Arrow export (zero-copy for polars and numeric
    pandas columns, categoricals as their text); a pandas object column of
    mixed values, which Arrow refuses to type, is read as text per value.
    """
    if isinstance(data, pa.RecordBatch):
        return data
    if isinstance(data, pa.Table):
        return pa.RecordBatch.from_arrays([c.combine_chunks() for c in data.columns], names=data.column_names)
    if isinstance(data, Mapping):
        keys = list(data)
        names, get = [str(k) for k in keys], lambda i, n: data[keys[i]]
    elif hasattr(data, "to_arrow") and callable(data.to_arrow):  # polars
        return arrow_batch(data.to_arrow())
    elif hasattr(data, "columns") and hasattr(data, "iloc"):  # pandas
        names, get = [str(c) for c in data.columns], lambda i, n: data.iloc[:, i].array
    elif hasattr(data, "columns"):  # anything else column-wise: frame[name].to_numpy()
        names, get = [str(c) for c in data.columns], lambda i, n: data[n].to_numpy()
    else:
        raise TypeError(f"cannot read {type(data).__name__}: give a path, a mapping of columns or a DataFrame")
    if len(set(names)) != len(names):
        raise ContractError("the data has duplicate column names")
    arrays = []
    for i, name in enumerate(names):
        values = get(i, name)
        try:
            arrays.append(pa.array(values, from_pandas=True) if hasattr(values, "__arrow_array__")
                          else _arrow_column(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # a mixed object column
            arrays.append(_object_text(np.asarray(values, dtype=object)))
    return pa.RecordBatch.from_arrays(arrays, names=names)
