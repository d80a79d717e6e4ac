"""A training set read back from Kafka by offsets: the run's lineage.

Rows are the model's Prediction and Features events (their columns are the
features) joined to Label events by request id. The exact offset ranges
read are the lineage; reading the same ranges again gives the same rows in
the same order and therefore the same :attr:`Dataset.hash`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np

from driftline.errors import ConfigError
from driftline.offsets import ModelRecords, OffsetRange, ranges_for_times
from driftline.quality import canonical_labels, label_numbers
from driftline.settings import Settings
from schemas import FeatureFrame, Table


@dataclass
class Dataset:
    """Labelled rows in event-time order."""

    table: Table
    labels: np.ndarray  # canonical class strings, or the numbers as text for regression
    numeric_labels: np.ndarray  # float64, NaN where a label is not a number
    event_time: np.ndarray
    request_ids: np.ndarray
    lineage: list[OffsetRange] = field(default_factory=list)
    skipped: int = 0  # undecodable events inside the ranges (they are in the dead-letter topic)

    @property
    def rows(self) -> int:
        return len(self.labels)

    @property
    def hash(self) -> str:
        """SHA-256 over every column, label, time and request id, in order."""
        digest = hashlib.sha256()
        for name in sorted(self.table.columns):
            digest.update(f"{name}:{self.table.types[name]}\0".encode())
            column, nulls = self.table.columns[name], self.table.null_mask(name)
            if self.table.types[name] in ("float", "int"):
                digest.update(np.where(nulls, np.nan, column.astype(np.float64)).tobytes())
            else:
                digest.update("\x1f".join("" if v is None else str(v) for v in column.tolist()).encode())
            digest.update(np.packbits(nulls).tobytes())
        digest.update("\x1f".join(self.labels.tolist()).encode())
        digest.update(self.event_time.astype(np.int64).tobytes())
        digest.update("\x1f".join(self.request_ids.tolist()).encode())
        return digest.hexdigest()

    def take(self, index: np.ndarray) -> Dataset:
        table = Table({n: c[index] for n, c in self.table.columns.items()}, dict(self.table.types),
                      {n: self.table.null_mask(n)[index] for n in self.table.columns})
        return Dataset(table, self.labels[index], self.numeric_labels[index], self.event_time[index],
                       self.request_ids[index], self.lineage, self.skipped)

    def split(self, holdout_fraction: float) -> tuple[Dataset, Dataset]:
        """Time-ordered: the newest ``holdout_fraction`` of rows is the holdout."""
        cut = round(self.rows * (1 - holdout_fraction))
        index = np.arange(self.rows)
        return self.take(index[:cut]), self.take(index[cut:])


def training_ranges(settings: Settings, start_ms: int, end_ms: int) -> list[OffsetRange]:
    """Feature-carrying events in [start, end) and every label that arrived since ``start``."""
    ranges = []
    for kind in ("predictions", "features"):
        ranges += ranges_for_times(settings, settings.topic(kind), start_ms, end_ms)
    ranges += ranges_for_times(settings, settings.topic("labels"), start_ms, None)
    return sorted(ranges)


def read_dataset(settings: Settings, model: str, ranges: list[OffsetRange]) -> Dataset:
    """The model's labelled rows inside exactly these offset ranges."""
    items: list[tuple[dict[str, Any], int]] = []
    feature_ids: list[str] = []
    feature_times: list[np.ndarray] = []
    label_ids: list[str] = []
    label_values: list[Any] = []
    reader = ModelRecords(settings, model)
    for record in reader.read(ranges):
        ids = record["request_ids"]
        if "labels" in record:
            label_ids += ids
            label_values += record["labels"]
        elif "columns" in record:
            items.append((record["columns"], len(ids)))
            feature_ids += ids
            feature_times.append(np.full(len(ids), record["event_time"], dtype=np.int64))
    skipped = reader.skipped
    if not items or not label_ids:
        empty = Table({}, {})
        return Dataset(empty, np.array([], dtype=str), np.array([]), np.array([], dtype=np.int64),
                       np.array([], dtype=str), ranges, skipped)
    frame = FeatureFrame.from_records(items)
    times = np.concatenate(feature_times)
    ids = np.array(feature_ids, dtype=str)
    # the latest label of a request wins; the first feature row of a request wins
    label_at = dict(zip(label_ids, range(len(label_ids)), strict=True))
    matched = np.fromiter(map(label_at.get, feature_ids, repeat(-1)), dtype=np.int64, count=len(feature_ids))
    order = np.lexsort((ids, times))
    order = order[matched[order] >= 0]
    _, first = np.unique(ids[order], return_index=True)
    order = order[np.sort(first)]
    table = Table.from_frame(frame)
    table = Table({n: c[order] for n, c in table.columns.items()}, table.types,
                  {n: table.null_mask(n)[order] for n in table.columns})
    chosen = matched[order].tolist()
    values = [label_values[i] for i in chosen]
    numbers = label_numbers(values)
    return Dataset(table, canonical_labels(values) if values else np.array([], dtype=str), numbers,
                   times[order], ids[order], ranges, skipped)


def assemble(settings: Settings, model: str, start_ms: int, end_ms: int) -> Dataset:
    return read_dataset(settings, model, training_ranges(settings, start_ms, end_ms))


def from_table(table: Table, label_column: str) -> Dataset:
    """A file's rows as a dataset (row order is time order; no lineage: it did not come from Kafka)."""
    if label_column not in table.columns:
        raise ConfigError(f"the data has no column {label_column!r}; columns: {', '.join(sorted(table.columns))}")
    mask = ~table.null_mask(label_column)
    raw = table.columns[label_column][mask].tolist()
    features = Table({n: c[mask] for n, c in table.columns.items() if n != label_column},
                     {n: t for n, t in table.types.items() if n != label_column},
                     {n: table.null_mask(n)[mask] for n in table.columns if n != label_column})
    rows = int(mask.sum())
    return Dataset(features, canonical_labels(raw) if raw else np.array([], dtype=str), label_numbers(raw),
                   np.arange(rows, dtype=np.int64), np.array([str(i) for i in range(rows)], dtype=str))
