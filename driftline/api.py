"""The offline gate as Python: ``driftline.profile(data, model)`` and ``driftline.check(data, profile)``.

Notebooks and orchestrators hold DataFrames, not files. ``data`` may be a
path (.csv, .parquet, .avro), a pandas or polars DataFrame, a pyarrow
Table, or a mapping of column name to values (lists, numpy arrays): typed
column by column through Arrow, numbers as numbers, text per value (a
column of mostly numbers with a few dirty cells stays numeric, the dirty
cells become ``type_mismatch`` with their rows).

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

A DataFrame with dirty cells: the column stays numeric, the dirty rows are counted and shown.

>>> import pandas as pd
>>> frame = pd.DataFrame({"income": rng.normal(50, 10, 2_000), "plan": rng.choice(["free", "pro"], 2_000)})
>>> frame["income"] = frame["income"].astype(object)
>>> frame.loc[:29, "income"] = "oops"
>>> income = check(frame, p).features["income"]
>>> income.rows, [(s.kind, s.count, s.examples[0]) for s in income.skew]
(1970, [('type_mismatch', 30, "row 0: 'oops'")])
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from schemas import ContractError, FeatureSpec, Table, read_table
from schemas.readers import arrow_batch, batch_table, read_batches
from schemas.tables import NULL_TOKENS
from streams.drift.decision import DriftPolicy, DriftReport, compare
from streams.drift.profile import Profile
from streams.drift.summary import WindowSummary, summarize


def to_table(data: Any, kinds: Mapping[str, str] | None = None,
             null_values: Collection[str] = NULL_TOKENS) -> Table:
    """A path, a mapping of columns, or a DataFrame-like object as typed columns.

    ``kinds`` (name -> int/float/bool/string) types columns as a spec
    declares them; without it a text column is typed by the majority of
    its values. In-memory data goes through Arrow, exactly as files do.
    """
    if isinstance(data, Table):
        return data
    if isinstance(data, str | Path):
        return read_table(data, dict(kinds or {}), null_values)
    return batch_table(arrow_batch(data), dict(kinds or {}), 0, null_values)


def profile(data: Any, model: str, *, version: str = "1", spec: FeatureSpec | None = None,
            segment_by: tuple[str, ...] | list[str] = (), metrics: Mapping[str, float] | None = None,
            null_values: Collection[str] = NULL_TOKENS) -> Profile:
    """A reference profile of ``data`` for ``model`` (what ``driftline profile`` builds)."""
    kinds = spec_kinds(spec) if spec is not None else None
    built = Profile.build(to_table(data, kinds, null_values), model, version=version, spec=spec, segment_by=segment_by,
                          source=data if isinstance(data, str) else type(data).__name__)
    built.metrics = dict(metrics or {})
    return built


def check(data: Any, reference: Profile | str | Path, policy: DriftPolicy | None = None, *,
          null_values: Collection[str] = NULL_TOKENS) -> DriftReport:
    """Drift and skew of ``data`` against a profile (or a profile file): ``driftline check`` as a call.

    A CSV or Parquet path is read in batches typed by the profile's spec and
    summarised batch by batch (summaries merge exactly), so memory does not
    grow with the file. Every source is typed by the profile's spec: a
    value that does not parse is a ``type_mismatch`` with its row, and the
    rest of its column is judged. ``null_values`` are the texts read as nulls.
    """
    loaded = reference if isinstance(reference, Profile) else Profile.load(reference)
    kinds = spec_kinds(loaded.spec)
    if isinstance(data, str | Path):
        line_offset = 2 if Path(data).suffix.lower() in (".csv", ".txt") else 0
        unit = "line" if line_offset else "record"
        return check_tables(read_batches(data, kinds, null_values=null_values), loaded, policy,
                            where=lambda row: f"{unit} {row + line_offset}")
    return check_tables([to_table(data, kinds, null_values)], loaded, policy, where=lambda row: f"row {row}")


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
