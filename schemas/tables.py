"""Typed columns of reference and current data (files are read by :mod:`schemas.readers`).

``driftline profile`` and ``driftline check`` take files, and feature-spec
inference needs typed columns, so this module turns a file into
``{name: numpy array}``: float64 for numbers (NaN where empty), object arrays
of ``str`` or ``None`` for text. Typing CSV cells is done per column with
numpy's vectorised conversion, not cell by cell in Python.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from schemas.columns import FeatureFrame
from schemas.errors import ContractError

NULL_TOKENS = frozenset({"", "NA", "N/A", "null", "NULL", "None"})
BOOL_TOKENS = {"true": True, "false": False, "True": True, "False": False}


@dataclass
class Table:
    """Columns of equal length with the type each was read as."""

    columns: dict[str, np.ndarray]
    types: dict[str, str]  # float | int | bool | string
    nulls: dict[str, np.ndarray] = field(default_factory=dict)
    """Per column, True where the cell was empty/null (a NaN *value* is not a null)."""
    mismatches: dict[str, dict[int, str]] = field(default_factory=dict)
    """Per column, the cells that did not parse as the column's type: row -> the text found.
    Such a cell is a null of the column *and* a ``type_mismatch`` (counted by summaries).
    Rows are the file's (0-based, counting from ``first_row`` for a batch of a larger file)."""
    first_row: int = 0

    @classmethod
    def concat(cls, tables: list[Table]) -> Table:
        """Batches of one file, in order, as one table (types of the first batch)."""
        if len(tables) == 1:
            return tables[0]
        if not tables:
            raise ContractError("no rows to read: the file has a header and nothing else")
        first = tables[0]
        names = list(first.columns)
        mismatches: dict[str, dict[int, str]] = {}
        for t in tables:
            for name, cells in t.mismatches.items():
                mismatches.setdefault(name, {}).update(cells)
        return cls({n: np.concatenate([t.columns[n] for t in tables]) for n in names}, dict(first.types),
                   {n: np.concatenate([t.null_mask(n) for t in tables]) for n in names}, mismatches,
                   first.first_row)

    def null_mask(self, name: str) -> np.ndarray:
        if name in self.nulls:
            return self.nulls[name]
        column = self.columns[name]
        if self.types[name] in ("float", "int"):
            return np.isnan(column.astype(float))
        return np.array([v is None for v in column.tolist()], dtype=bool)

    @classmethod
    def from_frame(cls, frame: FeatureFrame) -> Table:
        """Typed columns from decoded events (numbers that are all integral read as int)."""
        columns: dict[str, np.ndarray] = {}
        types: dict[str, str] = {}
        nulls: dict[str, np.ndarray] = {}
        for j, name in enumerate(frame.numeric_names):
            values, null = frame.numeric[:, j].copy(), frame.numeric_null[:, j]
            values[null] = np.nan
            present = values[~null & np.isfinite(values)]
            columns[name], nulls[name] = values, null
            types[name] = "int" if present.size and np.all(present == np.round(present)) else "float"
        for j, name in enumerate(frame.categorical_names):
            null = frame.categorical_null[:, j]
            values = frame.categorical[:, j].copy()
            values[null] = None
            present = set(values[~null].tolist())
            columns[name], nulls[name] = values, null
            types[name] = "bool" if present and present <= {"true", "false"} else "string"
        return cls(columns, types, nulls)

    def to_frame(self) -> FeatureFrame:
        """The table as the frame a decoded event would give (numbers and text blocks)."""
        numeric_names = [n for n, t in self.types.items() if t in ("float", "int")]
        categorical_names = [n for n in self.types if n not in numeric_names]
        rows = self.rows
        numeric = (np.column_stack([self.columns[n].astype(float) for n in numeric_names])
                   if numeric_names else np.zeros((rows, 0)))
        numeric_null = (np.column_stack([self.null_mask(n) for n in numeric_names])
                        if numeric_names else np.zeros((rows, 0), bool))
        categorical = np.empty((rows, len(categorical_names)), dtype=object)
        for j, n in enumerate(categorical_names):
            categorical[:, j] = self._text(n)
        categorical_null = (np.column_stack([self.null_mask(n) for n in categorical_names])
                            if categorical_names else np.zeros((rows, 0), bool))
        mismatched = [{"row": row - self.first_row, "name": name, "type": "str", "text": text[:40]}
                      for name, cells in self.mismatches.items() for row, text in cells.items()]
        return FeatureFrame(rows, tuple(numeric_names), numeric, numeric_null,
                            tuple(categorical_names), categorical, categorical_null, mismatched)

    def _text(self, name: str) -> np.ndarray:
        """A categorical column as the text an event carries ("" for a null, "true"/"false" for booleans)."""
        column = self.columns[name]
        if self.types[name] == "string" and name in self.nulls:  # str or None: one masked copy, no loop
            out = column.copy()
            out[self.nulls[name]] = ""
            return out
        return np.array([("true" if v else "false") if isinstance(v, bool) else ("" if v is None else str(v))
                         for v in column.tolist()], dtype=object)

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per row; nulls omitted (for producers and river models)."""
        names = list(self.columns)
        out: list[dict[str, Any]] = []
        lists = {n: self.columns[n].tolist() for n in names}
        for i in range(self.rows):
            row = {}
            for n in names:
                v = lists[n][i]
                if v is None or (self.types[n] in ("float", "int") and v != v):
                    continue
                row[n] = v
            out.append(row)
        return out


NUMERIC_SHARE = 0.5  # a column whose present cells are mostly numbers is numeric; the rest are mismatches


def read_table(path: str | Path, kinds: dict[str, str] | None = None,
               null_values: Collection[str] = NULL_TOKENS) -> Table:
    """Read a CSV, Parquet or Avro file (chosen by extension) into typed columns, whole.

    ``check`` reads batch by batch instead (:func:`schemas.readers.read_batches`).
    """
    from schemas.readers import read_batches

    return Table.concat(list(read_batches(path, kinds, null_values=null_values)))
