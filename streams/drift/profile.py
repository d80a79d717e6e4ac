"""Reference profiles: what a model's input looked like, and how noisy that is.

A profile holds, per feature, the bins every window summary is counted on
(quantile bins for numbers, the category domain for text), the reference's
counts on them, its moments, and a fine binned sketch for KS and
Wasserstein. That is all a calibrated decision needs: the two-sample tests
of :mod:`streams.drift.twosample` take their null distribution from the
reference's and the window's counts at the window's own size, so no
threshold is fitted here (earlier versions fitted thresholds on reference
chunks of one size and extrapolated them, which did not hold; see that
module).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from driftline.estimation import Calibration
from schemas import Codec, ContractError, FeatureSpec, Table
from streams.drift import statistics as st
from streams.drift.bins import EdgeIndex, nested_bins
from streams.drift.multivariate import VARIANCE, MultivariateReference

COARSE_BINS = 10
FINE_BINS = 200
MAX_CATEGORIES = 256  # levels kept by name; the rest share OTHER
OTHER = "__other__"


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Interior edges at the reference's quantiles (ties collapsed).

    The probabilities are ``i / bins``, each a correctly rounded division, so
    the coarse bins' deciles are exactly among the fine bins' 200 quantiles
    (``3 / 10 == 60 / 200``; ``linspace``'s 0.30000000000000004 was not) and a
    summary adds its coarse counts up from its fine ones
    (:func:`~streams.drift.bins.nested_bins`).
    """
    if values.size == 0:
        return np.zeros(0)
    return np.unique(np.quantile(values, np.arange(1, bins) / bins))


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of ``values`` in the bins ``(-inf, e0), [e0, e1), ..., [e_last, inf)``."""
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)


def sorted_bin_counts(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """:func:`bin_counts` of already sorted values: a binary search per edge instead of per value."""
    return _counts_below(np.searchsorted(ordered, edges, side="left"), ordered.size)


def _counts_below(below: np.ndarray, size: int) -> np.ndarray:
    """Bin counts from the number of values below each edge (four small steps: a window's summary makes
    dozens of these, so ``np.diff`` of a concatenation, a Python function of its own, showed)."""
    counts = np.empty(below.size + 1, dtype=np.int64)
    counts[:-1] = below
    counts[-1] = size
    counts[1:] -= below
    return counts


def sorted_bin_counts_sums(ordered: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The counts and the sums of the values in each bin of :func:`bin_counts`, of already sorted values.

    Each bin is summed on its own (``np.add.reduceat`` from each non-empty
    bin's first value to the next one's), not as differences of a running
    sum, which would lose a small bin's digits to the large totals.
    """
    below = np.searchsorted(ordered, edges, side="left")
    counts = _counts_below(below, ordered.size)
    sums = np.zeros(counts.size)
    filled = counts > 0
    if ordered.size:
        starts = np.concatenate([[0], below])[filled]  # strictly rising, each below the size
        sums[filled] = np.add.reduceat(ordered, starts)
    return counts, sums


def sorted_bin_sums(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The sums of :func:`sorted_bin_counts_sums`."""
    return sorted_bin_counts_sums(ordered, edges)[1]


def bin_sums(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, values, side="right"), weights=values,
                       minlength=edges.size + 1)


@dataclass
class NumericReference:
    name: str
    count: int
    nulls: int
    mean: float
    std: float
    edges: np.ndarray
    histogram: np.ndarray
    fine_edges: np.ndarray
    fine_counts: np.ndarray
    fine_sums: np.ndarray
    kind: str = "numeric"

    @cached_property
    def coarse_bins(self) -> EdgeIndex:
        """A window's values to the coarse bins, made once per profile (:mod:`streams.drift.bins`), on the
        fine bins' cells: a summary finds each value's cell once for both
        (:func:`~streams.drift.bins.coarse_and_fine`)."""
        return EdgeIndex(self.edges, grid=self.fine_bins)

    @cached_property
    def fine_bins(self) -> EdgeIndex:
        """The same for the fine sketch's bins."""
        return EdgeIndex(self.fine_edges)

    @cached_property
    def fine_to_coarse(self) -> np.ndarray | None:
        """Each fine bin's coarse bin, when every coarse edge is a fine edge (profiles built since
        :func:`quantile_edges` took ``i / bins``): a summary's coarse counts are then its fine counts added up."""
        return nested_bins(self.edges, self.fine_edges) if self.fine_edges.size else None


@dataclass
class CategoricalReference:
    name: str
    count: int
    nulls: int
    categories: list[str]
    counts: np.ndarray  # per category, then OTHER last
    kind: str = "categorical"

    @property
    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.categories)}


FeatureReference = NumericReference | CategoricalReference


def factorize(values: np.ndarray | list) -> tuple[list, np.ndarray]:
    """Distinct values (first-seen order) and each value's index into them.

    One hash pass in C (``dict.fromkeys``), then one lookup per value:
    ``np.unique`` sorts object arrays with Python comparisons (about 10x
    slower on 100k strings), and Arrow's dictionary encoding spent more on
    converting the strings than this does in all (4x, 50k cells of 4 levels).
    """
    items = values.tolist() if isinstance(values, np.ndarray) else values
    distinct = list(dict.fromkeys(items))  # first-seen order, found in C
    index = {v: i for i, v in enumerate(distinct)}
    return distinct, np.fromiter(map(index.__getitem__, items), dtype=np.int64, count=len(items))


def _category_values(column: np.ndarray) -> np.ndarray:
    present = [("true" if v else "false") if isinstance(v, bool) else str(v)
               for v in column.tolist() if v is not None]
    return np.array(present, dtype=object)


def numeric_stats(ref: NumericReference, counts: np.ndarray, fine_counts: np.ndarray,
                  fine_sums: np.ndarray, n: int) -> dict[str, float]:
    """Every numeric drift statistic of a current sample against ``ref``."""
    """Effect sizes of a current sample against ``ref`` (how much moved, not how sure)."""
    scale = ref.std if ref.std > 0 else 1.0
    coarse = {"psi": st.psi(ref.histogram, counts), "js": st.jensen_shannon(ref.histogram, counts)}
    if ref.fine_counts.size == 0 or fine_counts.size != ref.fine_counts.size:
        return coarse  # a segment reference: coarse bins only
    return {
        **coarse,
        "ks": st.ks_from_sketches(ref.fine_counts, fine_counts),
        "wasserstein": st.wasserstein_from_sketches(ref.fine_counts, ref.fine_sums,
                                                    fine_counts, fine_sums) / scale,
    }


def categorical_stats(ref: CategoricalReference, counts: np.ndarray) -> dict[str, float]:
    """Effect sizes of current category counts against ``ref``."""
    return {
        "psi": st.psi(ref.counts, counts),
        "js": st.jensen_shannon(ref.counts, counts),
    }


@dataclass
class Profile:
    """A model's reference: feature spec plus per-feature references."""

    model: str
    version: str
    spec: FeatureSpec
    features: dict[str, FeatureReference]
    rows: int
    source: str = ""
    created_at: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    # "column=value" -> that segment's references (coarse bins only; see streams.drift.segments)
    segments: dict[str, dict[str, FeatureReference]] = field(default_factory=dict)
    calibration: Calibration | None = None  # the model's scores on labelled reference rows (estimation)
    multivariate: MultivariateReference | None = None  # PCA of the numeric reference (joint drift)

    @property
    def segment_columns(self) -> list[str]:
        return sorted({key.partition("=")[0] for key in self.segments})

    def segment_view(self, key: str) -> Profile:
        """The profile of one segment's rows, to summarise and judge that segment with."""
        return Profile(self.model, self.version, self.spec, self.segments[key], self.rows, self.source,
                       self.created_at)

    # ------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        table: Table,
        model: str,
        *,
        version: str = "1",
        spec: FeatureSpec | None = None,
        source: str = "",
        segment_by: tuple[str, ...] | list[str] = (),
        top_segments: int = 10,
        min_segment_rows: int = 200,
        pca_variance: float = VARIANCE,
        pca_components: int | None = None,
    ) -> Profile:
        """Profile reference columns: bins, counts, moments and sketches per feature.

        ``segment_by`` names categorical columns whose most frequent values
        (``top_segments`` of them with ``min_segment_rows`` rows or more, the
        rest pooled as ``__other__``) each get their own references, so drift
        inside one cohort is judged against that cohort's reference. With two
        numeric features or more, a PCA of them (``pca_variance`` of the
        standardised variance, or ``pca_components`` axes) watches their joint
        distribution (:mod:`streams.drift.multivariate`).
        """
        from streams.drift.segments import segment_masks

        if table.rows < 20:
            raise ContractError(f"a reference needs at least 20 rows, got {table.rows}")
        spec = spec or FeatureSpec.infer(table, model, version=version)
        features = cls._references(table, spec, fine=True)
        segments: dict[str, dict[str, FeatureReference]] = {}
        for column in segment_by:
            if column not in spec or spec[column].kind != "categorical" or column not in table.columns:
                raise ContractError(f"segment column {column!r} must be a categorical feature of the reference")
            for key, mask in segment_masks(table.columns[column], table.null_mask(column), column,
                                           top_segments, min_segment_rows):
                part = Table({n: c[mask] for n, c in table.columns.items() if n != column},
                             {n: t for n, t in table.types.items() if n != column},
                             {n: m[mask] for n, m in table.nulls.items() if n != column})
                segments[key] = cls._references(part, spec, fine=False)
        numeric = {f.name: table.columns[f.name].astype(float) for f in spec.features
                   if f.kind == "numeric" and f.name in table.columns}
        multivariate = MultivariateReference.fit(numeric, variance=pca_variance, components=pca_components)
        return cls(model, version, spec.with_version(version), features, table.rows,
                   source, time.time_ns() // 1_000_000, segments=segments, multivariate=multivariate)

    @classmethod
    def _references(cls, table: Table, spec: FeatureSpec, *, fine: bool) -> dict[str, FeatureReference]:
        features: dict[str, FeatureReference] = {}
        for f in spec.features:
            if f.name not in table.columns:
                continue
            column = table.columns[f.name]
            if f.kind == "numeric":
                features[f.name] = cls._numeric(f.name, column, fine=fine)
            else:
                features[f.name] = cls._categorical(f.name, column)
        return features

    @staticmethod
    def _numeric(name: str, column: np.ndarray, *, fine: bool = True) -> NumericReference:
        raw = column.astype(float)
        values = np.sort(raw[np.isfinite(raw)])  # sorted once: quantiles and bin counts are searches
        edges = quantile_edges(values, COARSE_BINS)
        fine_edges = quantile_edges(values, FINE_BINS) if fine else np.zeros(0)
        return NumericReference(
            name, int(values.size), int(np.isnan(raw).sum()),
            float(values.mean()) if values.size else 0.0,
            float(values.std(ddof=1)) if values.size > 1 else 0.0,
            edges, sorted_bin_counts(values, edges).astype(float),
            fine_edges, sorted_bin_counts(values, fine_edges).astype(float) if fine else np.zeros(0),
            sorted_bin_sums(values, fine_edges) if fine else np.zeros(0),
        )

    @staticmethod
    def _categorical(name: str, column: np.ndarray, max_categories: int = MAX_CATEGORIES) -> CategoricalReference:
        nulls = sum(v is None for v in column.tolist())
        values = _category_values(column)
        distinct, codes = factorize(values)
        counts = np.bincount(codes, minlength=len(distinct))
        order = np.lexsort((np.array(distinct, dtype=object).astype(str), -counts))[:max_categories]
        categories = sorted(str(distinct[i]) for i in order)
        ref = CategoricalReference(name, int(values.size), int(nulls), categories,
                                   np.zeros(len(categories) + 1))
        ref.counts = category_counts(ref, values).astype(float)
        return ref

    # ------------------------------------------------------------ Avro
    def to_avro(self) -> dict:
        return {"model": self.model, "version": self.version, "created_at": self.created_at,
                "source": self.source, "rows": self.rows, "spec": self.spec.to_avro(),
                "features": _references_to_avro(self.features), "metrics": self.metrics,
                "segments": [{"segment": key, "features": _references_to_avro(refs)}
                             for key, refs in sorted(self.segments.items())],
                "calibration": self.calibration.to_avro() if self.calibration else None,
                "multivariate": self.multivariate.to_avro() if self.multivariate else None}

    @classmethod
    def from_avro(cls, record: dict) -> Profile:
        return cls(record["model"], record["version"], FeatureSpec.from_avro(record["spec"]),
                   _references_from_avro(record["features"]), record["rows"], record["source"],
                   record["created_at"], dict(record["metrics"]),
                   {item["segment"]: _references_from_avro(item["features"])
                    for item in record.get("segments", [])},
                   Calibration.from_avro(record.get("calibration")),
                   MultivariateReference.from_avro(record.get("multivariate")))

    def to_bytes(self) -> bytes:
        return Codec.default().encode("driftline.Profile", self.to_avro())

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        return cls.from_avro(Codec.default().decode(data, "driftline.Profile"))

    def save(self, path: str | Path) -> None:
        try:
            Path(path).write_bytes(self.to_bytes())
        except OSError as exc:
            raise ContractError(f"cannot write profile {path}: {exc.strerror or exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ContractError(f"cannot read profile {path}: {exc.strerror}") from None
        return cls.from_bytes(data)


def _references_to_avro(references: dict[str, FeatureReference]) -> list[dict]:
    features = []
    for ref in references.values():
        item = {"name": ref.name, "kind": ref.kind, "count": ref.count, "nulls": ref.nulls,
                "thresholds": {}, "sketch": b""}
        if isinstance(ref, NumericReference):
            item.update(mean=ref.mean, std=ref.std, bin_edges=ref.edges.tolist(),
                        histogram=ref.histogram.tolist(),
                        sketch=pack_sketch(ref.fine_edges, ref.fine_counts, ref.fine_sums))
        else:
            item.update(categories=ref.categories, category_freq=ref.counts.tolist())
        features.append(item)
    return features


def _references_from_avro(items: list[dict]) -> dict[str, FeatureReference]:
    features: dict[str, FeatureReference] = {}
    for item in items:
        if item["kind"] == "numeric":
            fine_edges, fine_counts, fine_sums = unpack_sketch(item["sketch"])
            features[item["name"]] = NumericReference(
                item["name"], item["count"], item["nulls"], item["mean"], item["std"],
                np.array(item["bin_edges"]), np.array(item["histogram"]), fine_edges, fine_counts, fine_sums)
        else:
            features[item["name"]] = CategoricalReference(
                item["name"], item["count"], item["nulls"], list(item["categories"]),
                np.array(item["category_freq"]))
    return features


def category_counts(ref: CategoricalReference, values: np.ndarray) -> np.ndarray:
    """Counts of ``values`` per reference category, with everything unseen in OTHER (last)."""
    other = len(ref.categories)
    if len(values) == 0:
        return np.zeros(other + 1, dtype=np.int64)
    distinct, codes = factorize(values)
    index = ref.index  # a Python lookup per *distinct* value only
    slots = np.array([index.get(v, other) for v in distinct], dtype=np.int64)
    return np.bincount(slots[codes], minlength=other + 1)


def pack_sketch(edges: np.ndarray, counts: np.ndarray, sums: np.ndarray) -> bytes:
    n = edges.size
    return struct.pack("<q", n) + np.concatenate([edges, counts, sums]).astype("<f8").tobytes()


def unpack_sketch(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    (n,) = struct.unpack_from("<q", data)
    body = np.frombuffer(data, dtype="<f8", offset=8)
    return body[:n].copy(), body[n:2 * n + 1].copy(), body[2 * n + 1:].copy()
