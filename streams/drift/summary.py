"""Mergeable window summaries of one model's rows.

A summary per feature holds count, nulls, mean and M2 (Chan's parallel
update), min, max, counts on the profile's coarse bins, a fine binned sketch
(counts and sums) for KS and Wasserstein, category counts, and skew counts.
Every part merges by addition or an order-free rule, so partials built per
partition, per micro-batch, in any grouping, merge into the summary one pass
over all rows would give: exactly for the counts, to rounding for the
moments. That is what two-stage aggregation and crash recovery rely on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from schemas import FeatureFrame
from streams.drift.bins import coarse_and_fine, native_moments
from streams.drift.profile import (
    OTHER,
    CategoricalReference,
    NumericReference,
    Profile,
    category_counts,
    factorize,
)
from streams.drift.segments import SEGMENT_OTHER, levels_by_column, segment_index

MAX_TRACKED_NAMES = 20  # unexpected features kept by name per window
# Categories the reference never had, kept by name per feature and window: each is a cell of its
# own in the drift test (see decision.level_cells), so a stable window's new rare levels are judged
# fairly; only names beyond this many are lumped, and the lump is left out of the test.
MAX_UNSEEN_NAMES = 100


def _add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, 0) + value
    return out


def _keep_smallest(counts: dict[str, int], limit: int, overflow: str) -> dict[str, int]:
    """Keep the ``limit`` lexicographically smallest names; fold the rest into ``overflow``.

    A name kept after merging was kept in every partial it appeared in (fewer
    than ``limit`` names precede it there too), so its count is exact and the
    result does not depend on merge order.
    """
    names = sorted(k for k in counts if k != overflow)
    if len(names) <= limit:
        return counts
    kept = {k: counts[k] for k in names[:limit]}
    kept[overflow] = counts.get(overflow, 0) + sum(counts[k] for k in names[limit:])
    return kept


@dataclass
class NumericSummary:
    name: str
    count: int = 0
    nulls: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float | None = None
    max: float | None = None
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    fine_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    fine_sums: np.ndarray = field(default_factory=lambda: np.zeros(0))
    skew: dict[str, int] = field(default_factory=dict)
    kind: str = "numeric"

    @property
    def variance(self) -> float:
        return self.m2 / (self.count - 1) if self.count > 1 else 0.0

    def merge(self, other: NumericSummary) -> NumericSummary:
        n = self.count + other.count
        if n == 0:
            mean, m2 = 0.0, 0.0
        else:
            delta = other.mean - self.mean
            mean = self.mean + delta * other.count / n
            m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / n
        mins = [v for v in (self.min, other.min) if v is not None]
        maxs = [v for v in (self.max, other.max) if v is not None]
        return NumericSummary(
            self.name, n, self.nulls + other.nulls, mean, m2,
            min(mins) if mins else None, max(maxs) if maxs else None,
            _add_arrays(self.histogram, other.histogram),
            _add_arrays(self.fine_counts, other.fine_counts),
            _add_arrays(self.fine_sums, other.fine_sums),
            _add_counts(self.skew, other.skew),
        )


@dataclass
class CategoricalSummary:
    name: str
    count: int = 0
    nulls: int = 0
    categories: dict[str, int] = field(default_factory=dict)
    skew: dict[str, int] = field(default_factory=dict)
    unseen: dict[str, int] = field(default_factory=dict)
    kind: str = "categorical"

    def merge(self, other: CategoricalSummary) -> CategoricalSummary:
        return CategoricalSummary(
            self.name, self.count + other.count, self.nulls + other.nulls,
            _add_counts(self.categories, other.categories),
            _add_counts(self.skew, other.skew),
            _keep_smallest(_add_counts(self.unseen, other.unseen), MAX_UNSEEN_NAMES, OTHER),
        )


FeatureSummary = NumericSummary | CategoricalSummary


def pack_counts_sums(counts: np.ndarray, sums: np.ndarray) -> bytes:
    """The fine sketch of a summary: counts then sums, float64 little-endian."""
    return np.concatenate([counts.astype(float), sums]).astype("<f8").tobytes()


def unpack_counts_sums(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    body = np.frombuffer(data, dtype="<f8")
    half = body.size // 2
    return body[:half].astype(np.int64), body[half:].copy()


def _add_arrays(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.size == 0:
        return b.copy()
    if b.size == 0:
        return a.copy()
    return a + b


def merge_feature(mine: NumericSummary | CategoricalSummary,
                  theirs: NumericSummary | CategoricalSummary) -> NumericSummary | CategoricalSummary:
    """Two partial summaries of one feature as one; a feature is numeric or categorical in every partial."""
    if isinstance(mine, NumericSummary) and isinstance(theirs, NumericSummary):
        return mine.merge(theirs)
    if isinstance(mine, CategoricalSummary) and isinstance(theirs, CategoricalSummary):
        return mine.merge(theirs)
    raise ValueError(f"cannot merge a {type(mine).__name__} of {mine.name!r} with a {type(theirs).__name__}")


@dataclass
class WindowSummary:
    """All features of one model in one window (one partition's partial, or merged)."""

    model: str
    window_start: int
    window_end: int
    rows: int = 0
    features: dict[str, FeatureSummary] = field(default_factory=dict)
    partition: int = -1
    model_version: str = ""
    reference_version: str = ""
    segments: dict[str, WindowSummary] = field(default_factory=dict)  # "column=value" -> its rows' summary
    multivariate: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # PCA error counts

    def merge(self, other: WindowSummary) -> WindowSummary:
        features = dict(self.features)
        for name, summary in other.features.items():
            features[name] = merge_feature(features[name], summary) if name in features else summary
        unexpected = sorted(n for n, s in features.items() if s.skew.get("unexpected"))
        for name in unexpected[MAX_TRACKED_NAMES:]:
            del features[name]
        segments = dict(self.segments)
        for key, part in other.segments.items():
            segments[key] = segments[key].merge(part) if key in segments else part
        return WindowSummary(self.model, self.window_start, self.window_end, self.rows + other.rows,
                             features, -1, self.model_version or other.model_version,
                             self.reference_version or other.reference_version, segments,
                             _add_arrays(self.multivariate, other.multivariate))

    # ------------------------------------------------------------ Avro
    def to_avro(self, stage: str = "partial") -> dict:
        return {"model": self.model, "model_version": self.model_version,
                "window_start": self.window_start, "window_end": self.window_end, "stage": stage,
                "partition": self.partition, "rows": self.rows,
                "reference_version": self.reference_version, "features": _features_to_avro(self.features),
                "segments": [{"segment": key, "rows": part.rows, "features": _features_to_avro(part.features)}
                             for key, part in sorted(self.segments.items())],
                "multivariate": self.multivariate.tolist()}

    @classmethod
    def from_avro(cls, record: dict) -> WindowSummary:
        segments = {item["segment"]: cls(record["model"], record["window_start"], record["window_end"],
                                         item["rows"], _features_from_avro(item["features"]))
                    for item in record.get("segments", [])}
        return cls(record["model"], record["window_start"], record["window_end"], record["rows"],
                   _features_from_avro(record["features"]), record["partition"], record["model_version"],
                   record["reference_version"], segments,
                   np.asarray(record.get("multivariate", []), dtype=np.int64))


def _features_to_avro(features: dict[str, FeatureSummary]) -> list[dict]:
    items = []
    for s in features.values():
        item = {"name": s.name, "kind": s.kind, "count": s.count, "nulls": s.nulls,
                "skew": dict(s.skew), "sketch": b""}
        if isinstance(s, NumericSummary):
            item.update(mean=s.mean, m2=s.m2, min=s.min, max=s.max,
                        histogram=s.histogram.astype(np.int64).tolist(),
                        sketch=pack_counts_sums(s.fine_counts, s.fine_sums))
        else:
            item.update(categories=dict(s.categories), unseen=dict(s.unseen))
        items.append(item)
    return items


def _features_from_avro(items: list[dict]) -> dict[str, FeatureSummary]:
    features: dict[str, FeatureSummary] = {}
    for item in items:
        if item["kind"] == "numeric":
            counts, sums = unpack_counts_sums(item["sketch"])
            features[item["name"]] = NumericSummary(
                item["name"], item["count"], item["nulls"], item["mean"], item["m2"],
                item["min"], item["max"], np.array(item["histogram"], dtype=np.int64),
                counts.astype(np.int64), sums, dict(item["skew"]))
        else:
            features[item["name"]] = CategoricalSummary(
                item["name"], item["count"], item["nulls"], dict(item["categories"]),
                dict(item["skew"]), dict(item["unseen"]))
    return features


def _numeric_part(ref: NumericReference | None, name: str, values: np.ndarray, nulls: int,
                  spec_min: float | None, spec_max: float | None, allow_nan: bool,
                  is_int: bool) -> NumericSummary:
    finite_mask = np.isfinite(values)
    finite = values[finite_mask]
    count = int(finite.size)
    mean = float(finite.mean()) if count else 0.0
    m2 = float(((finite - mean) ** 2).sum()) if count else 0.0
    low, high = (float(finite.min()), float(finite.max())) if count else (None, None)
    return _numeric_of_finite(ref, name, finite, mean, m2, low, high, nulls, int(values.size - count), spec_min,
                              spec_max, allow_nan, is_int)


def _numeric_of_finite(ref: NumericReference | None, name: str, values: np.ndarray, mean: float, m2: float,
                       low: float | None, high: float | None, nulls: int, non_finite: int, spec_min: float | None,
                       spec_max: float | None, allow_nan: bool, is_int: bool) -> NumericSummary:
    """A feature's summary from its finite values (in any order), their moments and range.

    The bins are the reference's lookup tables (:mod:`streams.drift.bins`):
    no sort, which cost four to eight times what the tables do.
    """
    skew: dict[str, int] = {}
    if non_finite and not allow_nan:
        skew["nan"] = non_finite
    out = 0  # counted only when the range says some value is out (it seldom is)
    if spec_min is not None and low is not None and low < spec_min:
        out += int(np.count_nonzero(values < spec_min))
    if spec_max is not None and high is not None and high > spec_max:
        out += int(np.count_nonzero(values > spec_max))
    if out:
        skew["out_of_range"] = out
    if is_int and values.size:
        wrong = int(np.count_nonzero(values != np.round(values)))
        if wrong:
            skew["type_mismatch"] = wrong
    summary = NumericSummary(name, int(values.size), nulls, mean, m2, low, high, skew=skew)
    if ref is not None:
        if ref.fine_counts.size:  # segment references keep coarse bins only
            summary.histogram, summary.fine_counts, summary.fine_sums = coarse_and_fine(
                ref.coarse_bins, ref.fine_bins, values, ref.fine_to_coarse)
        else:
            summary.histogram = ref.coarse_bins.counts(values)
    return summary


def _whole_numeric_parts(frame: FeatureFrame, profile: Profile) -> dict[str, NumericSummary]:
    """The numeric features whose column is whole (no null, every value finite), summarised together.

    A window delta holds a few thousand rows of twenty-odd features, and
    per feature the summary was a dozen numpy calls on a short column: the
    calls, not the values, took the time. The whole columns are copied once
    into one feature per row and their moments and ranges taken along the
    rows; what is left per feature is its bins.

    Where :mod:`streams.drift._column` is built, each column's
    moments in C instead (two passes over it, and its bins one, while it is
    in the cache: a delta of 100-row events is larger than the caches, and
    numpy's pass per operation was memory traffic), read in place when the
    frame was stacked column-major (no transposed copy).
    """
    if not frame.rows or not frame.numeric_names:
        return {}
    index = {n: j for j, n in enumerate(frame.numeric_names)}
    present = np.logical_not(frame.numeric_null.any(axis=0)).tolist()  # per column: no null
    features = [f for f in profile.spec.features if f.kind == "numeric" and f.name in index and present[index[f.name]]]
    if not features:
        return {}
    columns = [index[f.name] for f in features]
    if native_moments is not None:
        numeric = frame.numeric  # column-major as stacked from events (schemas.columns): read in place
        by_column = numeric.T if numeric.strides[0] == numeric.itemsize else np.ascontiguousarray(numeric.T)
        out = {}
        for f, j in zip(features, columns, strict=True):
            column = by_column[j]
            found = native_moments(column)
            if found is not None:  # else NaN or infinite values: the one-feature path summarises it
                out[f.name] = _numeric_of_finite(_numeric_reference(profile, f.name), f.name, column, found[2],
                                                 found[3], found[0], found[1], 0, 0, f.min, f.max, f.allow_nan,
                                                 f.type == "int")
        return out
    # one feature per row, in one copy (two when the columns are not all of them in order)
    block = np.ascontiguousarray((frame.numeric if columns == list(range(len(index))) else frame.numeric[:, columns]).T)
    lows, highs = block.min(axis=1), block.max(axis=1)  # NaN if any value is; infinite if any value is
    finite = np.isfinite(lows) & np.isfinite(highs)
    if not finite.all():
        features = [f for f, whole in zip(features, finite.tolist(), strict=True) if whole]
        block, lows, highs = block[finite], lows[finite], highs[finite]
    means = block.mean(axis=1)
    centred = block - means[:, None]
    m2s = np.square(centred, out=centred).sum(axis=1)
    out = {}
    for f, column, mean, m2, low, high in zip(features, block, means.tolist(), m2s.tolist(),
                                              lows.tolist(), highs.tolist(), strict=True):
        out[f.name] = _numeric_of_finite(_numeric_reference(profile, f.name), f.name, column,
                                         mean, m2, low, high, 0, 0, f.min, f.max, f.allow_nan, f.type == "int")
    return out


def _numeric_reference(profile: Profile, name: str) -> NumericReference | None:
    ref = profile.features.get(name)
    return ref if isinstance(ref, NumericReference) else None


def summarize(frame: FeatureFrame, profile: Profile, window_start: int, window_end: int,
              *, partition: int = -1, model_version: str = "") -> WindowSummary:
    """Summarise one batch of rows (already in one window) against ``profile``.

    Vectorised per feature: numpy over the batch's columns, no per-row Python.
    """
    spec = profile.spec
    rows = frame.rows
    features: dict[str, FeatureSummary] = {}
    mismatched: dict[str, int] = {}
    for item in frame.mismatched:
        mismatched[item["name"]] = mismatched.get(item["name"], 0) + 1
    num_index = {n: j for j, n in enumerate(frame.numeric_names)}
    cat_index = {n: j for j, n in enumerate(frame.categorical_names)}

    whole = _whole_numeric_parts(frame, profile)
    for f in spec.features:
        ref = profile.features.get(f.name)
        wrong_block = 0
        part: NumericSummary | CategoricalSummary
        if f.name in whole:
            part = whole[f.name]
        elif f.kind == "numeric":
            if f.name in num_index:
                j = num_index[f.name]
                null = frame.numeric_null[:, j]
                values = frame.numeric[:, j][~null]
                nulls = int(null.sum())
            else:
                values, nulls = np.zeros(0), rows
                if f.name in cat_index:  # sent as text: every present value is the wrong type
                    wrong_block = int((~frame.categorical_null[:, cat_index[f.name]]).sum())
            part = _numeric_part(ref if isinstance(ref, NumericReference) else None, f.name, values,
                                 nulls, f.min, f.max, f.allow_nan, f.type == "int")
        else:
            distinct: tuple[list, list[int]] = ([], [])
            if f.name in cat_index:
                j = cat_index[f.name]
                null = frame.categorical_null[:, j]
                distinct = _distinct_counts(frame, j, ~null)
                nulls = int(null.sum())
            else:
                nulls = rows
                if f.name in num_index:
                    wrong_block = int((~frame.numeric_null[:, num_index[f.name]]).sum())
            part = _categorical_part(ref if isinstance(ref, CategoricalReference) else None,
                                     f.name, distinct, nulls, f.domain)
        if f.name not in num_index and f.name not in cat_index and f.required:
            part.skew["missing"] = rows
        part.nulls -= wrong_block  # present, just of the wrong type
        mismatch = mismatched.get(f.name, 0) + wrong_block
        if mismatch:
            part.skew["type_mismatch"] = part.skew.get("type_mismatch", 0) + mismatch
            part.nulls -= mismatched.get(f.name, 0)  # mismatched values are not nulls
        features[f.name] = part

    known = set(spec.names)
    for name in sorted(set(num_index) - known)[:MAX_TRACKED_NAMES]:
        present = int((~frame.numeric_null[:, num_index[name]]).sum())
        features[name] = NumericSummary(name, present, rows - present, skew={"unexpected": present})
    for name in sorted(set(cat_index) - known)[:MAX_TRACKED_NAMES]:
        present = int((~frame.categorical_null[:, cat_index[name]]).sum())
        features[name] = CategoricalSummary(name, present, rows - present, skew={"unexpected": present})
    summary = WindowSummary(profile.model, window_start, window_end, rows, features, partition,
                            model_version, profile.version)
    if profile.segments:
        summary.segments = segment_summaries(frame, profile, window_start, window_end)
    if profile.multivariate is not None and rows:
        finite = all(name in whole for name in profile.multivariate.features)  # whole columns: no missing value
        summary.multivariate = profile.multivariate.counts(
            profile.multivariate.errors(frame.numeric, frame.numeric_names, finite))
    return summary


def segment_summaries(frame: FeatureFrame, profile: Profile, window_start: int,
                      window_end: int) -> dict[str, WindowSummary]:
    """The window's rows of each profiled segment, summarised on that segment's references."""
    out: dict[str, WindowSummary] = {}
    cat_index = {n: j for j, n in enumerate(frame.categorical_names)}
    for column, levels in levels_by_column(list(profile.segments)).items():
        if column not in cat_index:
            continue  # absent (or sent as numbers: skew, counted globally)
        named = [level for level in levels if level != SEGMENT_OTHER]
        j = cat_index[column]
        index = segment_index(frame.categorical[:, j], frame.categorical_null[:, j], named)
        for i, level in enumerate([*named, SEGMENT_OTHER]):
            key = f"{column}={level}"
            mask = index == i
            if key not in profile.segments or not mask.any():
                continue
            part = summarize(frame.take(mask), profile.segment_view(key), window_start, window_end)
            for feature in part.features.values():
                feature.skew = {}  # skew is judged once, over all rows
            out[key] = part
    return out


def _distinct_counts(frame: FeatureFrame, column: int, present: np.ndarray) -> tuple[list, list[int]]:
    """(distinct values, their counts) of a categorical column's present cells: from the frame's codes when
    it has them (a bincount), else by hashing the values."""
    if frame.dictionary is not None:
        levels, codes = frame.dictionary
        counts = np.bincount(codes[:, column][present], minlength=len(levels))
        used = np.flatnonzero(counts)
        return [levels[i] for i in used.tolist()], counts[used].tolist()
    found, index = factorize(frame.categorical[:, column][present])
    return found, np.bincount(index, minlength=len(found)).tolist()


def _categorical_part(ref: CategoricalReference | None, name: str, distinct: tuple[list, list[int]], nulls: int,
                      domain: tuple[str, ...] | None) -> CategoricalSummary:
    skew: dict[str, int] = {}
    categories: dict[str, int] = {}
    found, found_counts = distinct
    present = sum(found_counts)
    if present:
        by_text: dict[str, int] = {}
        for value, count in zip(found, found_counts, strict=True):
            text = str(value)
            by_text[text] = by_text.get(text, 0) + count
        texts = sorted(by_text)
        known = set(ref.categories) if ref is not None else set(domain or ())
        allowed = set(domain) if domain is not None else None
        unseen_total = 0
        unseen: dict[str, int] = {}
        for value, count in zip(texts, [by_text[t] for t in texts], strict=True):  # distinct values only
            if value in known:
                categories[value] = count
            else:
                unseen[value] = count
            if allowed is not None and value not in allowed:
                unseen_total += count
        if unseen_total:
            skew["unseen_category"] = unseen_total
        unseen = _keep_smallest(unseen, MAX_UNSEEN_NAMES, OTHER)
    else:
        unseen = {}
    return CategoricalSummary(name, present, nulls, categories, skew, unseen)


def category_vector(summary: CategoricalSummary, ref: CategoricalReference) -> np.ndarray:
    """A summary's counts in the reference's category order, with OTHER last."""
    out = np.zeros(len(ref.categories) + 1)
    index = ref.index
    for name, count in summary.categories.items():
        out[index.get(name, len(ref.categories))] += count
    out[-1] += sum(summary.unseen.values())
    return out


__all__ = ["CategoricalSummary", "NumericSummary", "WindowSummary", "category_counts",
           "category_vector", "summarize"]
