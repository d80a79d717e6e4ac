"""Reference profiles: what a model's input looked like, and how noisy that is.

A profile holds, per feature, the bins every window summary is counted on
(quantile bins for numbers, the category domain for text), the reference's
counts on them, its moments, a fine binned sketch for KS and Wasserstein,
and *calibrated* thresholds: each statistic is computed for chunks of the
reference against the rest of it, so we know how large it gets when nothing
has changed (the NannyML approach). Windows are judged against that spread,
scaled to their own size, instead of a fixed guess such as PSI > 0.2.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from schemas import Codec, ContractError, FeatureSpec, Table
from streams.drift import statistics as st

COARSE_BINS = 10
FINE_BINS = 200
CALIBRATION_DRAWS = 100
OTHER = "__other__"


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Interior edges at the reference's quantiles (ties collapsed)."""
    if values.size == 0:
        return np.zeros(0)
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of ``values`` in the bins ``(-inf, e0), [e0, e1), ..., [e_last, inf)``."""
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)


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
    thresholds: dict[str, float] = field(default_factory=dict)
    kind: str = "numeric"


@dataclass
class CategoricalReference:
    name: str
    count: int
    nulls: int
    categories: list[str]
    counts: np.ndarray  # per category, then OTHER last
    thresholds: dict[str, float] = field(default_factory=dict)
    kind: str = "categorical"

    @property
    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.categories)}


FeatureReference = NumericReference | CategoricalReference


def _category_values(column: np.ndarray) -> np.ndarray:
    present = [("true" if v else "false") if isinstance(v, bool) else str(v)
               for v in column.tolist() if v is not None]
    return np.array(present, dtype=object)


def numeric_stats(ref: NumericReference, counts: np.ndarray, fine_counts: np.ndarray,
                  fine_sums: np.ndarray, n: int) -> dict[str, float]:
    """Every numeric drift statistic of a current sample against ``ref``."""
    ks = st.ks_from_sketches(ref.fine_counts, fine_counts)
    scale = ref.std if ref.std > 0 else 1.0
    return {
        "psi": st.psi(ref.histogram, counts),
        "js": st.jensen_shannon(ref.histogram, counts),
        "ks": ks,
        "ks_p": st.ks_p_value(ks, ref.count, n),
        "wasserstein": st.wasserstein_from_sketches(ref.fine_counts, ref.fine_sums,
                                                    fine_counts, fine_sums) / scale,
    }


def categorical_stats(ref: CategoricalReference, counts: np.ndarray) -> dict[str, float]:
    chi2, chi2_p = st.chi2_homogeneity(ref.counts, counts)
    return {
        "psi": st.psi(ref.counts, counts),
        "js": st.jensen_shannon(ref.counts, counts),
        "chi2": chi2,
        "chi2_p": chi2_p,
    }


def _calibrate(stat_rows: list[dict[str, float]], chunk_rows: int, rest_rows: int) -> dict[str, float]:
    """Mean and spread of each statistic over reference chunks, and the sizes they were measured at."""
    out: dict[str, float] = {"chunk_rows": float(chunk_rows), "rest_rows": float(rest_rows)}
    for key in stat_rows[0]:
        if key.endswith("_p"):
            continue
        values = np.array([row[key] for row in stat_rows])
        out[f"{key}_mean"] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return out


def _chunks(rows: int, chunk_rows: int, seed: int) -> list[np.ndarray]:
    """Random subsamples of the reference (each later compared with the rest of it).

    Disjoint chunks would give only rows / chunk_rows draws (10 for a typical
    reference), too few to estimate a statistic's spread per feature; random
    subsamples give as many draws as we ask for.
    """
    rng = np.random.default_rng(seed)
    return [rng.choice(rows, size=chunk_rows, replace=False) for _ in range(CALIBRATION_DRAWS)]


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
        chunk_rows: int | None = None,
        seed: int = 0,
    ) -> Profile:
        """Profile reference columns; calibrate thresholds on chunks of ``chunk_rows`` rows."""
        if table.rows < 20:
            raise ContractError(f"a reference needs at least 20 rows, got {table.rows}")
        spec = spec or FeatureSpec.infer(table, model, version=version)
        chunk_rows = min(chunk_rows or 2000, table.rows // 2)
        chunks = _chunks(table.rows, chunk_rows, seed)
        features: dict[str, FeatureReference] = {}
        for f in spec.features:
            if f.name not in table.columns:
                continue
            column = table.columns[f.name]
            if f.kind == "numeric":
                features[f.name] = cls._numeric(f.name, column, chunks)
            else:
                features[f.name] = cls._categorical(f.name, column, chunks)
        return cls(model, version, spec.with_version(version), features, table.rows,
                   source, time.time_ns() // 1_000_000)

    @staticmethod
    def _numeric(name: str, column: np.ndarray, chunks: list[np.ndarray]) -> NumericReference:
        raw = column.astype(float)
        values = raw[np.isfinite(raw)]
        edges = quantile_edges(values, COARSE_BINS)
        fine_edges = quantile_edges(values, FINE_BINS)
        ref = NumericReference(
            name, int(values.size), int(np.isnan(raw).sum()),
            float(values.mean()) if values.size else 0.0,
            float(values.std(ddof=1)) if values.size > 1 else 0.0,
            edges, bin_counts(values, edges).astype(float),
            fine_edges, bin_counts(values, fine_edges).astype(float), bin_sums(values, fine_edges),
        )
        rows = []
        for chunk in chunks:
            part = raw[chunk]
            part = part[np.isfinite(part)]
            if part.size == 0:
                continue
            counts = bin_counts(part, edges)
            fine, sums = bin_counts(part, fine_edges), bin_sums(part, fine_edges)
            rest = NumericReference(name, ref.count - part.size, 0, ref.mean, ref.std, edges,
                                    ref.histogram - counts, fine_edges, ref.fine_counts - fine,
                                    ref.fine_sums - sums)
            rows.append(numeric_stats(rest, counts, fine, sums, part.size))
        if rows:
            chunk_size = int(np.mean([len(c) for c in chunks]))
            ref.thresholds = _calibrate(rows, chunk_size, ref.count - chunk_size)
        return ref

    @staticmethod
    def _categorical(name: str, column: np.ndarray, chunks: list[np.ndarray],
                     max_categories: int = 50) -> CategoricalReference:
        nulls = sum(v is None for v in column.tolist())
        values = _category_values(column)
        names, counts = np.unique(values, return_counts=True) if values.size else (np.array([]), np.array([]))
        order = np.argsort(-np.asarray(counts), kind="stable")[:max_categories]
        categories = sorted(str(names[i]) for i in order)
        ref = CategoricalReference(name, int(values.size), int(nulls), categories,
                                   np.zeros(len(categories) + 1))
        ref.counts = category_counts(ref, values).astype(float)
        rows = []
        for chunk in chunks:
            part = _category_values(column[chunk])
            if part.size == 0:
                continue
            counts = category_counts(ref, part)
            rest = CategoricalReference(name, ref.count - part.size, 0, categories, ref.counts - counts)
            rows.append(categorical_stats(rest, counts))
        if rows:
            chunk_size = int(np.mean([len(c) for c in chunks]))
            ref.thresholds = _calibrate(rows, chunk_size, ref.count - chunk_size)
        return ref

    # ------------------------------------------------------------ Avro
    def to_avro(self) -> dict:
        features = []
        for ref in self.features.values():
            item = {"name": ref.name, "kind": ref.kind, "count": ref.count, "nulls": ref.nulls,
                    "thresholds": ref.thresholds, "sketch": b""}
            if isinstance(ref, NumericReference):
                item.update(mean=ref.mean, std=ref.std, bin_edges=ref.edges.tolist(),
                            histogram=ref.histogram.tolist(),
                            sketch=pack_sketch(ref.fine_edges, ref.fine_counts, ref.fine_sums))
            else:
                item.update(categories=ref.categories, category_freq=ref.counts.tolist())
            features.append(item)
        return {"model": self.model, "version": self.version, "created_at": self.created_at,
                "source": self.source, "rows": self.rows, "spec": self.spec.to_avro(),
                "features": features, "metrics": self.metrics}

    @classmethod
    def from_avro(cls, record: dict) -> Profile:
        features: dict[str, FeatureReference] = {}
        for item in record["features"]:
            if item["kind"] == "numeric":
                fine_edges, fine_counts, fine_sums = unpack_sketch(item["sketch"])
                features[item["name"]] = NumericReference(
                    item["name"], item["count"], item["nulls"], item["mean"], item["std"],
                    np.array(item["bin_edges"]), np.array(item["histogram"]),
                    fine_edges, fine_counts, fine_sums, dict(item["thresholds"]))
            else:
                features[item["name"]] = CategoricalReference(
                    item["name"], item["count"], item["nulls"], list(item["categories"]),
                    np.array(item["category_freq"]), dict(item["thresholds"]))
        return cls(record["model"], record["version"], FeatureSpec.from_avro(record["spec"]),
                   features, record["rows"], record["source"], record["created_at"],
                   dict(record["metrics"]))

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


def category_counts(ref: CategoricalReference, values: np.ndarray) -> np.ndarray:
    """Counts of ``values`` per reference category, with everything unseen in OTHER (last)."""
    other = len(ref.categories)
    if len(values) == 0:
        return np.zeros(other + 1, dtype=np.int64)
    distinct, inverse = np.unique(values, return_inverse=True)
    index = ref.index  # a Python lookup per *distinct* value only
    slots = np.array([index.get(v, other) for v in distinct.tolist()], dtype=np.int64)
    return np.bincount(slots[inverse.ravel()], minlength=other + 1)


def pack_sketch(edges: np.ndarray, counts: np.ndarray, sums: np.ndarray) -> bytes:
    n = edges.size
    return struct.pack("<q", n) + np.concatenate([edges, counts, sums]).astype("<f8").tobytes()


def unpack_sketch(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    (n,) = struct.unpack_from("<q", data)
    body = np.frombuffer(data, dtype="<f8", offset=8)
    return body[:n].copy(), body[n:2 * n + 1].copy(), body[2 * n + 1:].copy()
