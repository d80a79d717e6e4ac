"""The offline gate as Python: ``driftline.profile(data, model)`` and ``driftline.check(data, profile)``.

Notebooks and orchestrators hold DataFrames, not files. ``data`` may be a
path (.csv, .avro), a mapping of column name to values (lists, numpy
arrays), or any DataFrame-like object with ``columns`` whose columns turn
into numpy arrays (pandas, polars, pyarrow Tables): typed column by column,
numbers as numbers, text per value (a column of mostly numbers with a few
dirty cells stays numeric, the dirty cells become ``type_mismatch``).

This module is a composition root like the CLI: it wires the statistics in
``streams.drift`` to user data and imports nothing else of the services.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> reference = {"income": rng.normal(50, 10, 5_000), "plan": rng.choice(["free", "pro"], 5_000)}
>>> p = profile(reference, "churn")
>>> report = check({"income": rng.normal(50, 10, 2_000), "plan": rng.choice(["free", "pro"], 2_000)}, p)
>>> report.drift, report.skew
(False, False)
>>> shifted = check({"income": rng.normal(58, 10, 2_000), "plan": rng.choice(["free", "pro"], 2_000)}, p)
>>> [f.name for f in shifted.drifted()], shifted.to_dict()["features"]["income"]["method"]
(['income'], 'chi2')
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from schemas import ContractError, FeatureSpec, Table, read_table
from schemas.readers import read_batches, type_of, typed_text
from schemas.tables import NULL_TOKENS
from streams.drift.decision import DriftPolicy, DriftReport, compare
from streams.drift.profile import Profile
from streams.drift.summary import WindowSummary, summarize


def to_table(data: Any) -> Table:
    """A path, a mapping of columns, or a DataFrame-like object as typed columns."""
    if isinstance(data, Table):
        return data
    if isinstance(data, str | Path):
        return read_table(data)
    if isinstance(data, Mapping):
        names, get = list(data), data.__getitem__
    elif hasattr(data, "column_names") and hasattr(data, "column"):  # a pyarrow Table
        names, get = list(data.column_names), lambda n: data.column(n).to_numpy(zero_copy_only=False)
    elif hasattr(data, "columns"):  # pandas / polars DataFrames
        names, get = [str(c) for c in data.columns], lambda n: data[n].to_numpy()
    else:
        raise TypeError(f"cannot read {type(data).__name__}: give a path, a mapping of columns or a DataFrame")
    columns: dict[str, np.ndarray] = {}
    types: dict[str, str] = {}
    nulls: dict[str, np.ndarray] = {}
    mismatches: dict[str, dict[int, str]] = {}
    for name in names:
        values = np.asarray(get(name))
        if values.dtype.kind in "iuf":
            columns[name] = values.astype(float)
            nulls[name] = np.isnan(columns[name])
            types[name] = "int" if values.dtype.kind in "iu" else "float"
        elif values.dtype.kind == "b":
            columns[name], types[name], nulls[name] = values.astype(object), "bool", np.zeros(values.size, bool)
        else:  # text, or objects: typed per value exactly as a CSV column is (schemas.readers)
            cells = [None if v is None or (isinstance(v, float) and v != v) or str(v) in NULL_TOKENS else
                     ("true" if v else "false") if isinstance(v, bool | np.bool_) else str(v)
                     for v in values.tolist()]
            text = pa.array(cells, type=pa.string())
            types[name] = type_of(text)
            columns[name], nulls[name], bad = typed_text(text, types[name], 0)
            if bad:
                mismatches[name] = bad
    return Table(columns, types, nulls, mismatches)


def profile(data: Any, model: str, *, version: str = "1", spec: FeatureSpec | None = None,
            segment_by: tuple[str, ...] | list[str] = (), metrics: Mapping[str, float] | None = None) -> Profile:
    """A reference profile of ``data`` for ``model`` (what ``driftline profile`` builds)."""
    built = Profile.build(to_table(data), model, version=version, spec=spec, segment_by=segment_by,
                          source=data if isinstance(data, str) else type(data).__name__)
    built.metrics = dict(metrics or {})
    return built


def check(data: Any, reference: Profile | str | Path, policy: DriftPolicy | None = None) -> DriftReport:
    """Drift and skew of ``data`` against a profile (or a profile file): ``driftline check`` as a call.

    A CSV or Parquet path is read in batches typed by the profile's spec and
    summarised batch by batch (summaries merge exactly), so memory does not
    grow with the file.
    """
    loaded = reference if isinstance(reference, Profile) else Profile.load(reference)
    if isinstance(data, str | Path) and Path(data).suffix.lower() in (".csv", ".txt", ".parquet", ".pq"):
        line_offset = 2 if Path(data).suffix.lower() in (".csv", ".txt") else 0
        return check_tables(read_batches(data, spec_kinds(loaded.spec)), loaded, policy,
                            where=lambda row: f"line {row + line_offset}")
    return check_tables([to_table(data)], loaded, policy, where=lambda row: f"row {row}")


def spec_kinds(spec: FeatureSpec) -> dict[str, str]:
    """How to type each file column: as the spec declares it (not as the file happens to look)."""
    return {f.name: (f.type if f.type in ("int", "float") else "float") if f.kind == "numeric"
            else ("bool" if f.type == "bool" else "string") for f in spec.features}


def check_tables(tables: Iterable[Table], loaded: Profile, policy: DriftPolicy | None,
                 where: Callable[[int], str]) -> DriftReport:
    """Summaries of each table (a batch of one file) merged, then judged once."""
    merged: WindowSummary | None = None
    examples: dict[str, list[str]] = {}
    for table in tables:
        part = summarize(table.to_frame(), loaded, 0, 0)
        merged = part if merged is None else merged.merge(part)
        for name, cells in table.mismatches.items():
            kept = examples.setdefault(name, [])
            kept += [f"{where(row)}: {text!r}" for row, text in sorted(cells.items())[:5 - len(kept)]]
    if merged is None:
        raise ContractError("no rows to check: the data has a header and nothing else")
    report = compare(merged, loaded, policy)
    for name, found in examples.items():  # the data knows where its dirty cells are
        result = report.features.get(name)
        for finding in result.skew if result is not None else []:
            if finding.kind == "type_mismatch":  # frozen: the list it holds is filled in place
                finding.examples[:] = found
    return report


__all__ = ["NULL_TOKENS", "check", "profile", "to_table"]
