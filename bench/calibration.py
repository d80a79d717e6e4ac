"""Do drift alarms keep their promise? False-alarm rate and power over shapes and sizes.

The promise: a window in which nothing changed raises a drift alarm with
probability ``false_alarm_rate`` (1 %), over all its features. Per cell of
the grid (feature shape x window rows x reference rows), F independent
features of that shape, fresh references (more of them when they are small,
since a small reference's own noise is shared by every window judged against
it), and stable windows drawn from exactly the reference's distribution:

* ``rate``: share of windows with at least one drifted feature; ``ratio``:
  rate / target, which should sit in [0.5, 1.5];
* windows are drawn as the exact multinomial of the shape's probabilities on
  the profile's bins ("bins"; the same distribution as drawing the rows and
  binning them, at any size), and, where affordable, as rows through
  ``summarize`` ("rows") as a cross-check.

Power: one shifted feature among 25 (the Bonferroni level of a 25-feature
model), rows drawn and summarised: 0.25 sd shift at 2,000 rows, 0.1 sd at
20,000, x1.3 scale at 2,000, 10 % of a categorical's mass moved between two
levels at 2,000. Online detectors (ADWIN, Page-Hinkley, KSWIN on standardised
window means): alarms per feature-window on stable sequences of each numeric
shape.

Last line JSON: ``max_false_alarm_ratio``, ``min_false_alarm_ratio``,
``cells_outside_band`` (cells whose 95 % interval misses [0.5, 1.5]),
per-shape extremes, ``min_power`` and the detectors' worst rate.
``--quick`` (~4 min, 200 windows per cell) is a smoke run: its single cells
are noise; the full run (3,000 windows per cell) is what README reports.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from typing import Any

import numpy as np
from _common import parser
from scipy import stats
from shapes import SHAPES, CategoricalShape, NumericShape

from schemas import Table
from streams.drift.decision import DriftPolicy, compare
from streams.drift.detectors import DETECTORS, WindowMeanDetectors
from streams.drift.profile import OTHER, CategoricalReference, NumericReference, Profile
from streams.drift.summary import MAX_UNSEEN_NAMES, CategoricalSummary, NumericSummary, WindowSummary, summarize

POLICY = DriftPolicy()


def build_reference(shape: NumericShape | CategoricalShape, rows: int, features: int,
                    rng: np.random.Generator) -> Profile:
    columns = {f"f{j}": shape.draw(rng, rows) for j in range(features)}
    kind = "float" if shape.kind == "numeric" else "string"
    return Profile.build(Table(columns, {n: kind for n in columns}), "calibration")


def cell_probabilities(profile: Profile, shape: NumericShape | CategoricalShape) -> dict[str, np.ndarray]:
    """The shape's exact probabilities on each feature's cells of this profile."""
    out = {}
    for name, ref in profile.features.items():
        if isinstance(ref, NumericReference) and isinstance(shape, NumericShape):
            out[name] = shape.bin_probabilities(ref.edges)
        elif isinstance(ref, CategoricalReference) and isinstance(shape, CategoricalShape):
            out[name] = shape.probabilities  # per level: unseen ones are kept by name, as summaries do
    return out


def binned_window(profile: Profile, shape: NumericShape | CategoricalShape, cells: dict[str, np.ndarray],
                  rows: int, rng: np.random.Generator) -> WindowSummary:
    """A stable window's summary drawn directly as multinomial counts on the profile's cells."""
    features: dict[str, NumericSummary | CategoricalSummary] = {}
    for name, ref in profile.features.items():
        if isinstance(ref, NumericReference):
            counts = rng.multinomial(rows, cells[name])
            features[name] = NumericSummary(name, rows, histogram=counts)
        elif isinstance(ref, CategoricalReference) and isinstance(shape, CategoricalShape):
            counts = rng.multinomial(rows, cells[name])
            known = set(ref.categories)
            drawn = [(level, int(k)) for level, k in zip(shape.levels, counts, strict=True) if k]
            unseen = dict(sorted((level, k) for level, k in drawn if level not in known))
            kept = dict(list(unseen.items())[:MAX_UNSEEN_NAMES])
            overflow = sum(unseen.values()) - sum(kept.values())
            features[name] = CategoricalSummary(
                name, rows, categories={level: k for level, k in drawn if level in known},
                unseen={**kept, **({OTHER: overflow} if overflow else {})})
    return WindowSummary(profile.model, 0, 1, rows, features)


def row_window(profile: Profile, shape: NumericShape | CategoricalShape, rows: int,
               rng: np.random.Generator) -> WindowSummary:
    columns = {name: shape.draw(rng, rows) for name in profile.features}
    kind = "float" if shape.kind == "numeric" else "string"
    return summarize(Table(columns, {n: kind for n in columns}).to_frame(), profile, 0, 1)


def false_alarm_cell(shape_name: str, window_rows: int, reference_rows: int, windows: int, features: int,
                     mode: str, seed: int) -> dict[str, Any]:
    shape = SHAPES[shape_name]
    rng = np.random.default_rng(seed)
    # A window as large as ~1/20 of its reference shares much of the reference's own noise with
    # every other window judged against it: those cells draw a fresh reference per window.
    fresh = window_rows * 20 >= reference_rows
    if fresh and reference_rows > 20_000:
        windows = max(100, windows // 5)  # a fresh large reference per window is the cost here
    references = windows if fresh else int(np.clip(1_000_000 // reference_rows, 2, 40))
    per_reference = max(1, windows // references)
    alarms = judged = 0
    for _ in range(references):
        profile = build_reference(shape, reference_rows, features, rng)
        cells = cell_probabilities(profile, shape)
        for _ in range(per_reference):
            window = (binned_window(profile, shape, cells, window_rows, rng) if mode == "bins"
                      else row_window(profile, shape, window_rows, rng))
            report = compare(window, profile, POLICY)
            alarms += report.drift
            judged += 1
    rate = alarms / judged
    low, high = rate_interval(alarms, judged)
    target = POLICY.false_alarm_rate
    return {"shape": shape_name, "window_rows": window_rows, "reference_rows": reference_rows,
            "mode": mode, "windows": judged, "alarms": alarms, "rate": rate, "ratio": rate / target,
            "ratio_low": low / target, "ratio_high": high / target,
            # miscalibrated only when the whole 95 % interval misses [0.5, 1.5] x target
            "outside_band": high / target < 0.5 or low / target > 1.5}


def rate_interval(events: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a rate: a cell's ratio is only as sure as its events."""
    tail = (1 - level) / 2
    low = stats.beta.ppf(tail, events, trials - events + 1) if events else 0.0
    high = stats.beta.ppf(1 - tail, events + 1, trials - events) if events < trials else 1.0
    return float(low), float(high)


def power_cell(label: str, rows: int, change: dict[str, float], repeats: int, seed: int) -> dict[str, Any]:
    """Share of first windows in which one changed feature (of 25) is flagged."""
    rng = np.random.default_rng(seed)
    categorical = "move" in change
    shape = SHAPES["categorical_rare"] if categorical else SHAPES["normal"]
    flagged = 0
    profile = build_reference(shape, 100_000, 1, rng)
    for _ in range(repeats):
        if categorical:
            assert isinstance(shape, CategoricalShape)
            p = shape.probabilities.copy()
            p[0] -= change["move"]  # level0 gives 10 % of all mass to level3
            p[3] += change["move"]
            values = np.array(shape.levels, dtype=object)[rng.choice(p.size, size=rows, p=p)]
            table = Table({"f0": values}, {"f0": "string"})
        else:
            values = shape.draw(rng, rows)
            values = 10.0 + (values - 10.0) * change.get("scale", 1.0) + 3.0 * change.get("shift", 0.0)
            table = Table({"f0": values}, {"f0": "float"})
        report = compare(summarize(table.to_frame(), profile, 0, 1), profile, POLICY, tests_per_window=25)
        flagged += report.drift
    return {"change": label, "window_rows": rows, "repeats": repeats, "power": flagged / repeats}


def detector_cell(shape_name: str, window_rows: int, sequence: int, features: int, seed: int) -> dict[str, Any]:
    """Alarms per feature-window of each online detector on a stable sequence of windows."""
    shape = SHAPES[shape_name]
    rng = np.random.default_rng(seed)
    profile = build_reference(shape, 100_000, features, rng)
    detectors = WindowMeanDetectors()
    found = dict.fromkeys(DETECTORS, 0)
    for i in range(sequence):
        summary = row_window(profile, shape, window_rows, rng)
        summary.window_start = i
        for detection in detectors.update(summary, profile):
            found[detection.detector] += 1
    return {"shape": shape_name, "window_rows": window_rows, "feature_windows": sequence * features,
            **{f"{k}_rate": v / (sequence * features) for k, v in found.items()}}


def _false_alarm(job: tuple) -> dict[str, Any]:
    return false_alarm_cell(*job)


def _detector(job: tuple) -> dict[str, Any]:
    return detector_cell(*job)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    args = p.parse_args()
    started = time.perf_counter()
    quick = args.quick
    features = 10
    references = [2_000, 100_000] if quick else [2_000, 100_000, 1_000_000]
    windows = 200 if quick else 3_000
    jobs = []
    for shape_name in SHAPES:
        for reference_rows in references:
            sizes = {200, 2_000, 2 * reference_rows} | (set() if quick else {20_000})
            for window_rows in sorted(sizes):
                if reference_rows >= 1_000_000 and window_rows > 20_000:
                    continue  # a fresh 1,000,000-row reference per window is out of a bench's reach

                jobs.append((shape_name, window_rows, reference_rows, windows, features, "bins", len(jobs)))
    jobs += [(shape_name, 2_000, 100_000, windows // 2, features, "rows", 1000 + i)
             for i, shape_name in enumerate(SHAPES)]
    detector_jobs = [(shape_name, window_rows, 100 if quick else 400, 10, 2000 + i * 2 + j)
                     for i, (shape_name, shape) in enumerate(SHAPES.items()) if shape.kind == "numeric"
                     for j, window_rows in enumerate((200, 2_000))]
    with multiprocessing.Pool(max(1, args.workers)) as pool:
        cells = []
        for c in pool.imap_unordered(_false_alarm, jobs):
            cells.append(c)
            print(f"{c['shape']:17} ref {c['reference_rows']:>9,} window {c['window_rows']:>9,} {c['mode']:4} "
                  f"false alarms {c['alarms']:>4}/{c['windows']:<5} = {c['rate']:.2%} = {c['ratio']:.2f}x "
                  f"(95% {c['ratio_low']:.2f}-{c['ratio_high']:.2f}){'  OUTSIDE' if c['outside_band'] else ''}",
                  flush=True)
        detectors = pool.map(_detector, detector_jobs)
    for d in detectors:
        print(f"detectors {d['shape']:14} window {d['window_rows']:>6,}: " + ", ".join(
            f"{k} {d[f'{k}_rate']:.3%}" for k in DETECTORS) + f" of {d['feature_windows']} feature-windows")
    repeats = 60 if quick else 300
    powers = [power_cell("mean +0.25 sd", 2_000, {"shift": 0.25}, repeats, 1),
              power_cell("mean +0.1 sd", 20_000, {"shift": 0.1}, repeats // 2, 2),
              power_cell("scale x1.3", 2_000, {"scale": 1.3}, repeats, 3),
              power_cell("10% mass moved", 2_000, {"move": 0.10}, repeats, 4)]
    for power in powers:
        print(f"power {power['change']:<16} at {power['window_rows']:>6,} rows: "
              f"{power['power']:.1%} of {power['repeats']}")
    ratios = [c["ratio"] for c in cells]
    by_shape = {}
    for shape_name in SHAPES:
        mine = [c for c in cells if c["shape"] == shape_name]
        alarms, judged = sum(c["alarms"] for c in mine), sum(c["windows"] for c in mine)
        by_shape[shape_name] = alarms / judged / POLICY.false_alarm_rate
        print(f"{shape_name:17} all sizes: {alarms}/{judged} = {by_shape[shape_name]:.2f}x target")
    figures = {
        "target_false_alarm_rate": POLICY.false_alarm_rate,
        "cells": len(cells),
        "windows_per_cell": windows,
        "max_false_alarm_ratio": max(ratios),
        "min_false_alarm_ratio": min(ratios),
        "mean_false_alarm_ratio": float(np.mean(ratios)),
        "cells_outside_band": sum(c["outside_band"] for c in cells),
        "max_shape_ratio": max(by_shape.values()),
        "min_shape_ratio": min(by_shape.values()),
        "min_power": min(p["power"] for p in powers),
        **{f"power_{p['change'].replace(' ', '_').replace('%', 'pct')}": p["power"] for p in powers},
        "max_detector_rate": max(v for d in detectors for k, v in d.items() if k.endswith("_rate")),
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
