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

import numpy as np

from driftline.estimation import Calibration, Estimate, calibrate, estimate
from driftline.quality import canonical_labels, classification_metrics, regression_metrics
from schemas import ContractError, FeatureSpec, Table, read_table
from schemas.readers import arrow_batch, batch_table, read_ahead, read_batches
from schemas.tables import NULL_TOKENS
from streams.drift.decision import DriftPolicy, DriftReport, compare
from streams.drift.multivariate import MAX_CLASSIFIER_ROWS, domain_classifier
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
            null_values: Collection[str] = NULL_TOKENS, label: str | None = None, score: str | None = None,
            predicted_class: str | None = None, task: str = "classification") -> Profile:
    """A reference profile of ``data`` for ``model`` (what ``driftline profile`` builds).

    With ``label`` and ``score`` (column names; ``predicted_class`` for a
    multi-class model, ``task="regression"`` for a regressor) the model's
    scores are calibrated on the reference's labels, so ``check`` can
    estimate its quality on data that has no labels yet. Those columns
    are the model's outcome, not features: they are left out of the spec.
    """
    kinds = spec_kinds(spec) if spec is not None else None
    table = to_table(data, kinds, null_values)
    outcome = [c for c in (label, score, predicted_class) if c]
    if bool(label) != bool(score):
        raise ContractError("calibration needs both a label column and a score column")
    for column in outcome:
        if column not in table.columns:
            raise ContractError(f"column {column!r} is not in the reference data")
    features = without(table, outcome)
    built = Profile.build(features, model, version=version, spec=spec, segment_by=segment_by,
                          source=data if isinstance(data, str) else type(data).__name__)
    built.metrics = dict(metrics or {})
    if label and score:
        built.calibration = calibration_of(table, built, label, score, predicted_class, task)
    return built


def calibration_of(table: Table, profile: Profile, label: str, score: str, predicted_class: str | None,
                   task: str) -> Calibration:
    """The model's calibration on the reference's labels (the outcome columns are not features)."""
    kinds = {f.name: f.kind for f in profile.spec.features if f.name in table.columns}
    try:
        scores = table.columns[score].astype(float)
    except (TypeError, ValueError):
        raise ContractError(f"--score-column {score!r} must hold numbers") from None
    calibration = calibrate(table.columns[label], scores, table.columns[predicted_class] if predicted_class else None,
                            task=task, columns={n: table.columns[n] for n in kinds}, kinds=kinds)
    calibration.label_column, calibration.score_column = label, score
    calibration.class_column = predicted_class or ""
    return calibration


def without(table: Table, names: Collection[str]) -> Table:
    """The table without some columns (the outcome columns are not features)."""
    if not names:
        return table
    return Table({n: c for n, c in table.columns.items() if n not in names},
                 {n: t for n, t in table.types.items() if n not in names},
                 {n: m for n, m in table.nulls.items() if n not in names},
                 {n: m for n, m in table.mismatches.items() if n not in names}, first_row=table.first_row)


def check(data: Any, reference: Profile | str | Path, policy: DriftPolicy | None = None, *,
          null_values: Collection[str] = NULL_TOKENS, reference_data: Any = None) -> DriftReport:
    """Drift and skew of ``data`` against a profile (or a profile file): ``driftline check`` as a call.

    A CSV or Parquet path is read in batches typed by the profile's spec and
    summarised batch by batch (summaries merge exactly), so memory does not
    grow with the file. Every source is typed by the profile's spec: a
    value that does not parse is a ``type_mismatch`` with its row, and the
    rest of its column is judged. ``null_values`` are the texts read as nulls.

    When the profile holds a calibration and the data its score column, the
    report carries the model's estimated quality (``report.estimated``),
    and the realised quality when the data has labels too. With
    ``reference_data`` (the reference rows themselves) a domain classifier
    also tries to tell the two apart (``report.domain``).
    """
    loaded = reference if isinstance(reference, Profile) else Profile.load(reference)
    kinds = spec_kinds(loaded.spec)
    reference_table = to_table(reference_data, kinds, null_values) if reference_data is not None else None
    if isinstance(data, str | Path):
        line_offset = 2 if Path(data).suffix.lower() in (".csv", ".txt") else 0
        unit = "line" if line_offset else "record"
        return check_tables(read_ahead(read_batches(data, kinds, null_values=null_values)), loaded, policy,
                            where=lambda row: f"{unit} {row + line_offset}", reference_table=reference_table)
    return check_tables([to_table(data, kinds, null_values)], loaded, policy, where=lambda row: f"row {row}",
                        reference_table=reference_table)


def spec_kinds(spec: FeatureSpec) -> dict[str, str]:
    """How to type each file column: as the spec declares it (not as the file happens to look)."""
    return {f.name: (f.type if f.type in ("int", "float") else "float") if f.kind == "numeric"
            else ("bool" if f.type == "bool" else "string") for f in spec.features}


def check_tables(tables: Iterable[Table], loaded: Profile, policy: DriftPolicy | None,
                 where: Callable[[int], str], reference_table: Table | None = None) -> DriftReport:
    """Summaries of each table (a batch of one file) merged, then judged once."""
    merged: WindowSummary | None = None
    examples: dict[str, list[str]] = {}
    calibration = loaded.calibration
    outcome = [c for c in (calibration.label_column, calibration.score_column, calibration.class_column)
               if c] if calibration is not None else []
    kept_outcome: dict[str, list[np.ndarray]] = {}
    sample = RowSample(MAX_CLASSIFIER_ROWS) if reference_table is not None else None
    for batch in tables:
        table = without(batch, outcome)
        if calibration is not None:
            needed = [*outcome, *(calibration.loss.numeric if calibration.loss else ()),
                      *(calibration.loss.categorical if calibration.loss else ())]
            for name in needed:  # 8 bytes a row per column: the score (and label) columns, not the data
                if name in batch.columns:
                    kept_outcome.setdefault(name, []).append(batch.columns[name])
        if sample is not None:
            sample.add(table)
        part = summarize(table.to_frame(), loaded, 0, 0)
        merged = part if merged is None else merged.merge(part)
        for name, cells in table.mismatches.items():
            kept = examples.setdefault(name, [])
            kept += [f"{where(row)}: {text!r}" for row, text in sorted(cells.items())[:5 - len(kept)]]
    if merged is None:
        raise ContractError("no rows to check: the data has a header and nothing else")
    report = compare(merged, loaded, policy)
    if calibration is not None and calibration.score_column in kept_outcome:
        columns = {n: np.concatenate(parts) for n, parts in kept_outcome.items()}
        report.estimated, report.realised = performance(calibration, columns)
    if sample is not None and reference_table is not None:
        numeric = [f.name for f in loaded.spec.features if f.kind == "numeric" and f.name in reference_table.columns]
        categorical = [f.name for f in loaded.spec.features
                       if f.kind == "categorical" and f.name in reference_table.columns]
        current = sample.table()
        if all(n in current for n in [*numeric, *categorical]):
            report.domain = domain_classifier(reference_table.columns, current, numeric, categorical,
                                              alpha=(policy or DriftPolicy()).false_alarm_rate)
    for name, found in examples.items():  # the data knows where its dirty cells are
        result = report.features.get(name)
        for finding in result.skew if result is not None else []:
            if finding.kind == "type_mismatch":  # frozen: the list it holds is filled in place
                finding.examples[:] = found
    return report


def performance(calibration: Calibration, columns: Mapping[str, np.ndarray]) -> tuple[dict[str, Estimate],
                                                                                    dict[str, float]]:
    """Estimated quality from the score column(s); realised quality too when the labels are there."""
    scores = np.asarray(columns[calibration.score_column], dtype=float)
    classes = columns.get(calibration.class_column) if calibration.class_column else None
    estimated = estimate(calibration, scores, None if classes is None else np.asarray(classes).astype(str),
                         columns)
    realised: dict[str, float] = {}
    if calibration.label_column in columns:
        truth = columns[calibration.label_column]
        if calibration.task == "regression":
            realised = regression_metrics(np.asarray(truth, dtype=float), scores)
        else:
            realised = classification_metrics(canonical_labels(truth), scores,
                                              None if classes is None else np.asarray(classes).astype(str))
        realised = {k: v for k, v in realised.items() if k in estimated}
    return estimated, realised


class RowSample:
    """A uniform sample of at most ``size`` rows of a stream of tables: each row gets a random key and
    the smallest keys are kept (bounded memory, whatever the file's length)."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.keys = np.zeros(0)
        self.columns: dict[str, np.ndarray] = {}

    def add(self, table: Table) -> None:
        keys = np.r_[self.keys, self.rng.random(table.rows)]
        keep = np.argsort(keys)[: self.size]
        for name, column in table.columns.items():
            values = column
            if column.dtype == object:  # text columns: a null is None, whatever sat in the cell
                values = column.copy()
                values[table.null_mask(name)] = None
            mine = self.columns.get(name, np.zeros(0, dtype=column.dtype))
            self.columns[name] = np.concatenate([mine, values])[keep]
        self.keys = keys[keep]

    def table(self) -> dict[str, np.ndarray]:
        return self.columns


__all__ = ["NULL_TOKENS", "check", "profile", "to_table"]
