"""Data files read in batches through pyarrow: CSV (multi-threaded) and Parquet (column-wise).

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
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

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
    if kind == "bool":
        cells = text.to_pylist()
        return np.array([None if c is None else BOOL_TOKENS.get(c, c) for c in cells], dtype=object), null, {}
    return np.array(text.to_pylist(), dtype=object), null, {}


def _arrow_kind(arrow_type: pa.DataType) -> str | None:
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    return None  # text (or anything else): typed per value


def batch_table(batch: pa.RecordBatch, types: dict[str, str], first_row: int) -> Table:
    """One Arrow batch as typed columns; ``types`` is filled from the first batch and then kept."""
    columns: dict[str, np.ndarray] = {}
    nulls: dict[str, np.ndarray] = {}
    mismatches: dict[str, dict[int, str]] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        native = _arrow_kind(column.type)
        if native is not None and types.setdefault(name, native) in ("int", "float"):
            columns[name] = np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
            nulls[name] = _numpy_bool(column.is_null())
            continue
        text = column if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) \
            else pc.cast(column, pa.string())
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


def read_batches(path: str | Path, kinds: dict[str, str] | None = None,
                 batch_bytes: int = BATCH_BYTES) -> Iterator[Table]:
    """A CSV or Parquet file as typed :class:`Table` batches (``kinds``: name -> int/float/bool/string)."""
    path = Path(path)
    if not path.exists():
        raise ContractError(f"{path} does not exist")
    types = dict(kinds or {})
    first_row = 0
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            header = _csv_header(path)
            reader = pa_csv.open_csv(
                path, read_options=pa_csv.ReadOptions(block_size=batch_bytes, use_threads=True),
                convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()),
                                                      null_values=sorted(NULL_TOKENS), strings_can_be_null=True))
            batches: Iterator[pa.RecordBatch] = iter(reader)
        elif suffix in (".parquet", ".pq"):
            batches = pq.ParquetFile(path).iter_batches(batch_size=262_144)
        else:
            raise ContractError(f"{path}: unsupported file type {suffix!r}; use .csv, .parquet or .avro")
        for batch in batches:
            if batch.num_rows:
                yield batch_table(batch, types, first_row)
                first_row += batch.num_rows
    except pa.ArrowInvalid as exc:  # a ragged row, a broken file: one sentence with pyarrow's reason
        if suffix in (".csv", ".txt"):
            _raise_ragged_line(path)
        raise ContractError(f"{path}: {str(exc).splitlines()[0]}") from None


def _raise_ragged_line(path: Path) -> None:
    """Name the first line whose cell count differs from the header (only on the error path)."""
    with path.open(newline="") as handle:
        rows = csv.reader(handle)
        width = len(next(rows))
        for lineno, row in enumerate(rows, start=2):
            if len(row) != width:
                raise ContractError(f"{path}:{lineno} has {len(row)} cells but the header names {width} columns")
