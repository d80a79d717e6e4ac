"""Label-free quality estimation: estimated vs realised accuracy on 5,000-row windows, beside NannyML's CBPE.

Scenarios (each: a model, a labelled reference of 20,000 rows it is
calibrated on, then analysis windows of 5,000 rows, with and without
covariate shift; labels are used only to compute the realised metric):

* ``logistic``: our own generator, a logistic world and a miscalibrated
  model (scores too confident, offset), inputs shifted by +0.7 and -1 sd.
* ``sea`` / ``agrawal``: river's synthetic streams (SEA with 10 % label
  noise, Agrawal function 2), a river model (Hoeffding adaptive tree,
  driftline's ``RiverModel``) trained on 10,000 rows; shift by keeping rows
  with a probability that rises with one feature (the concept is unchanged).
* ``multiclass``: three classes, the model's predicted class and its
  probability only (what a prediction event carries).

NannyML's CBPE (``make peers``) runs on the same reference and windows in
the peers' venv (binary scenarios; it needs every class's probability for
multi-class). Both bands are read at 95 % (NannyML's ``sampling_error`` x 1.96).

Last line JSON: ``mae_accuracy`` (mean |estimated - realised| accuracy over
all windows), ``band_coverage`` (share of windows whose band holds the
realised accuracy), ``windows``, ``nannyml_mae_accuracy`` and
``nannyml_band_coverage`` over the windows NannyML estimated, and
``max_gap_to_nannyml`` (the largest difference between the two estimates of
one window: both calibrate isotonically, so they should agree).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import parser, peers_python

from driftline.estimation import calibrate, estimate
from driftline.quality import classification_metrics

WINDOW = 5_000
REFERENCE = 20_000

NANNYML = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
import nannyml as nml, pandas as pd
reference, analysis, window = pd.read_csv(sys.argv[1]), pd.read_csv(sys.argv[2]), int(sys.argv[3])
estimator = nml.CBPE(y_pred_proba="score", y_pred="pred", y_true="y", metrics=["accuracy"], chunk_size=window,
                     problem_type="classification_binary")
estimator.fit(reference)
out = estimator.estimate(analysis.drop(columns=["y"])).filter(period="analysis").to_df()
print(json.dumps({"value": out[("accuracy", "value")].tolist(),
                  "sampling_error": out[("accuracy", "sampling_error")].tolist()}))
"""

Sampler = Callable[[np.random.Generator, int, float], tuple[np.ndarray, np.ndarray, np.ndarray | None]]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def logistic(rng: np.random.Generator, rows: int, shift: float) -> tuple[np.ndarray, np.ndarray, None]:
    x = rng.normal(shift, 1.0, rows)
    truth = np.where(rng.random(rows) < sigmoid(2 * x - 0.3), "1", "0")
    return truth, sigmoid(3 * x + 0.5), None


def multiclass(rng: np.random.Generator, rows: int, shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = rng.normal(shift, 1.0, (rows, 2))
    logits = np.c_[x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]] * 1.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = (rng.random(rows)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    q = np.exp(logits * 1.8) / np.exp(logits * 1.8).sum(axis=1, keepdims=True)
    return truth.astype(str), q.max(axis=1), q.argmax(axis=1).astype(str)


def river_scenario(name: str) -> Sampler:
    """A river stream and a river model trained on its first rows; shift = keep rows by one feature."""
    from river.datasets import synth

    from driftline.modeling import RiverModel

    if name == "sea":
        stream, feature, scale = synth.SEA(variant=0, noise=0.1, seed=7), 0, 3.0
    else:
        stream, feature, scale = synth.Agrawal(classification_function=2, seed=7), "salary", 30_000.0
    source = iter(stream)
    first_x, _ = next(source)
    numeric = tuple(k for k, v in first_x.items() if isinstance(v, int | float))
    key = feature if feature in first_x else numeric[int(feature)]
    centre = float(np.median([next(source)[0][key] for _ in range(2_000)]))
    model = RiverModel("classification", "hoeffding_adaptive_tree", numeric, ())
    train = [next(source) for _ in range(10_000)]
    model.learn([x for x, _ in train], ["1" if y else "0" for _, y in train])

    def sample(rng: np.random.Generator, rows: int, shift: float) -> tuple[np.ndarray, np.ndarray, None]:
        kept_x, kept_y = [], []
        while len(kept_x) < rows:  # covariate shift: P(keep) rises (shift > 0) or falls with the feature
            x, y = next(source)
            if shift == 0 or rng.random() < sigmoid(shift * (x[key] - centre) / scale * 4):
                kept_x.append(x)
                kept_y.append("1" if y else "0")
        scores, _ = model.predict(kept_x)
        return np.asarray(kept_y), scores, None

    return sample


def nannyml_windows(python: str, reference: tuple, windows: list[tuple]) -> dict | None:
    import csv

    with tempfile.TemporaryDirectory(prefix="driftline-bench-estimation-") as tmp:
        paths = []
        for name, parts in (("reference", [reference]), ("analysis", windows)):
            path = Path(tmp) / f"{name}.csv"
            with path.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["score", "pred", "y"])
                for truth, scores, _ in parts:
                    writer.writerows(zip(scores.tolist(), (scores >= 0.5).astype(int).tolist(),
                                         truth.astype(int).tolist(), strict=True))
            paths.append(str(path))
        done = subprocess.run([python, "-c", NANNYML, *paths, str(WINDOW)], capture_output=True, text=True,
                              timeout=1800)
    if done.returncode != 0:
        print(f"# nannyml failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    per_shift = 4 if args.quick else 15
    rng = np.random.default_rng(2026)
    scenarios: dict[str, tuple[Sampler, list[float]]] = {
        "logistic": (logistic, [0.0, 0.7, -1.0]),
        "sea": (river_scenario("sea"), [0.0, 1.0]),
        "agrawal": (river_scenario("agrawal"), [0.0, 1.0]),
        "multiclass": (multiclass, [0.0, 0.8]),
    }
    python = peers_python()
    ours_err, ours_cover, peer_err, peer_cover, apart = [], [], [], [], []
    figures: dict[str, float] = {}
    for name, (sample, shifts) in scenarios.items():
        reference = sample(rng, REFERENCE, 0.0)
        calibration = calibrate(*reference)
        for shift in shifts:
            windows = [sample(rng, WINDOW, shift) for _ in range(per_shift)]
            started = time.perf_counter()
            errors, covered, values = [], [], []
            for i, (truth, scores, classes) in enumerate(windows):
                realised = classification_metrics(truth, scores, classes)["accuracy"]
                got = estimate(calibration, scores, classes, seed=i)["accuracy"]
                values.append(got.value)
                errors.append(abs(got.value - realised))
                covered.append(got.lower <= realised <= got.upper)
            seconds = (time.perf_counter() - started) / len(windows)
            label = f"{name}_shift{shift:+.1f}"
            figures[f"{label}_mae"], figures[f"{label}_coverage"] = float(np.mean(errors)), float(np.mean(covered))
            ours_err += errors
            ours_cover += covered
            line = (f"{label:26} ours: mae {np.mean(errors):.4f}, coverage {np.mean(covered):.2f}, "
                    f"{seconds * 1000:.0f} ms/window")
            if python is not None and name != "multiclass":
                peer = nannyml_windows(python, reference, windows)
                if peer is not None and len(peer["value"]) == len(windows):
                    realised_all = [classification_metrics(t, s, c)["accuracy"] for t, s, c in windows]
                    e = [abs(v - r) for v, r in zip(peer["value"], realised_all, strict=True)]
                    c = [abs(v - r) <= 1.96 * se
                         for v, r, se in zip(peer["value"], realised_all, peer["sampling_error"], strict=True)]
                    peer_err += e
                    peer_cover += c
                    apart += [abs(v - o) for v, o in zip(peer["value"], values, strict=True)]
                    figures[f"{label}_nannyml_mae"] = float(np.mean(e))
                    line += f" | NannyML CBPE: mae {np.mean(e):.4f}, coverage {np.mean(c):.2f}"
            print(line, flush=True)
    summary: dict[str, float | int] = {"mae_accuracy": float(np.mean(ours_err)),
                                       "band_coverage": float(np.mean(ours_cover)), "windows": len(ours_err)}
    if peer_err:
        summary |= {"nannyml_mae_accuracy": float(np.mean(peer_err)),
                    "nannyml_band_coverage": float(np.mean(peer_cover)), "nannyml_windows": len(peer_err),
                    "max_gap_to_nannyml": float(np.max(apart))}  # both calibrate isotonically: estimates agree
    print(json.dumps({**{k: round(v, 4) for k, v in figures.items()},
                      **{k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}}))


if __name__ == "__main__":
    main()
