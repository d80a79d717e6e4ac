"""The offline gate at scale: rows/s of ``profile`` and ``check`` on CSV and Parquet, and peak memory.

25 features (20 numeric: normal and gamma; 5 categorical with 8 levels) at
200,000 rows (``--quick``) and 2,000,000 rows. Each step runs in a fresh
process, so ``peak_rss_mb`` is that step's own peak: ``check`` reads in
batches, so its peak should not grow with the file. Baselines in the same
run: pyarrow's CSV reader alone (what reading costs), our typed batch reader
alone, ``read_share`` (the time ``check``'s own loop waits on that reader over
its time after imports), and Evidently's default
drift preset on the same files (read by pandas, as its users do) when the
peers' venv exists (``make peers``: Evidently runs there, in its own venv).

Last line JSON: ``check_rows_per_s`` (CSV, largest size), ``peak_rss_mb``
(largest check), ``read_share`` (reading / check time), ``evidently_ratio``
when measured. Every step starts its clock after pyarrow's first array is
built: pyarrow imports pandas then when pandas is installed (0.3-0.5 s once
per process, which would otherwise land on whichever step pays it).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import parser, peers_python

STEP = r"""
import json, resource, sys, time
kind, path, profile_path = sys.argv[1:4]
import pyarrow
pyarrow.array([""])  # before the clock: pyarrow loads pandas (when installed) on its first list-built array
started = time.perf_counter()
if kind == "read":
    import pyarrow.csv as pa_csv
    working = time.perf_counter()
    pa_csv.read_csv(path)
elif kind == "read_typed":
    from driftline.api import spec_kinds
    from schemas.readers import read_batches
    from streams.drift.profile import Profile
    kinds = spec_kinds(Profile.load(profile_path).spec)
    working = time.perf_counter()
    for _ in read_batches(path, kinds):
        pass
elif kind == "profile":
    import driftline.api
    working = time.perf_counter()
    driftline.api.profile(path, "bench").save(profile_path)
elif kind == "check":
    import driftline.api
    working = time.perf_counter()
    driftline.api.check(path, profile_path)
elif kind == "check_split":  # check's own loop, timing each wait on the reader: reading's share of check
    from driftline.api import check_tables, spec_kinds
    from schemas.readers import read_ahead, read_batches
    from streams.drift.profile import Profile
    reading = 0.0
    def timed(batches):
        global reading
        while True:
            began = time.perf_counter()
            batch = next(batches, None)
            reading += time.perf_counter() - began
            if batch is None:
                return
            yield batch
    loaded = Profile.load(profile_path)
    kinds = spec_kinds(loaded.spec)
    working = time.perf_counter()
    check_tables(timed(read_ahead(read_batches(path, kinds))), loaded, None, where=str)
elif kind == "evidently":
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset
    working = time.perf_counter()
    Report([DataDriftPreset()]).run(pd.read_csv(path), pd.read_csv(profile_path))
done = time.perf_counter()
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across fork+exec, so a child would report its parent's
# peak (this bench's, which holds the 2M-row table it wrote).
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")]
peak = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": done - started, "work_seconds": done - working, "peak_rss_mb": peak,
                  "read_seconds": globals().get("reading", 0.0)}))
"""


def write_files(directory: Path, rows: int, seed: int) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    columns = {f"n{i}": rng.normal(i, 1 + i % 3, rows).round(4) for i in range(10)}
    columns |= {f"g{i}": rng.gamma(1 + i, 2.0, rows).round(4) for i in range(10)}
    levels = np.array([f"level{j}" for j in range(8)])
    columns |= {f"c{i}": levels[rng.choice(8, rows, p=np.r_[0.3, 0.2, 0.15, 0.1, 0.1, 0.07, 0.05, 0.03])]
                for i in range(5)}
    table = pa.table(columns)
    csv_path, parquet_path = directory / f"data{rows}_{seed}.csv", directory / f"data{rows}_{seed}.parquet"
    pa_csv.write_csv(table, csv_path)
    pq.write_table(table, parquet_path)
    return csv_path, parquet_path


def step(kind: str, path: Path, profile: Path, python: str = sys.executable) -> dict:
    done = subprocess.run([python, "-c", STEP, kind, str(path), str(profile)],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def evidently_python() -> str | None:
    python = peers_python()
    if python is None:
        return None
    found = subprocess.run([python, "-c", "import evidently, pandas"], capture_output=True).returncode == 0
    return python if found else None


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    sizes = [200_000] if args.quick else [200_000, 2_000_000]
    figures: dict[str, float | str] = {}
    with tempfile.TemporaryDirectory(prefix="driftline-bench-check-") as tmp:
        directory = Path(tmp)
        for rows in sizes:
            reference_csv, reference_parquet = write_files(directory, rows, seed=1)
            current_csv, current_parquet = write_files(directory, rows, seed=2)
            profile = directory / f"p{rows}.profile"
            read = step("read", current_csv, profile)
            built = step("profile", reference_csv, profile)
            checked = step("check", current_csv, profile)
            typed = step("read_typed", current_csv, profile)
            split = step("check_split", current_csv, profile)
            checked_pq = step("check", current_parquet, profile)
            label = f"{rows // 1000}k"
            figures[f"read_csv_rows_per_s_{label}"] = rows / read["seconds"]
            figures[f"profile_csv_rows_per_s_{label}"] = rows / built["seconds"]
            figures[f"check_csv_rows_per_s_{label}"] = rows / checked["seconds"]
            figures[f"check_parquet_rows_per_s_{label}"] = rows / checked_pq["seconds"]
            figures[f"check_peak_rss_mb_{label}"] = checked["peak_rss_mb"]
            figures[f"read_typed_rows_per_s_{label}"] = rows / typed["seconds"]
            figures[f"read_share_{label}"] = split["read_seconds"] / split["work_seconds"]
            if (python := evidently_python()) is not None:
                peer = step("evidently", current_csv, reference_csv, python)
                if "seconds" in peer:
                    figures[f"evidently_rows_per_s_{label}"] = rows / peer["seconds"]
                    figures[f"evidently_ratio_{label}"] = peer["seconds"] / checked["seconds"]
                else:
                    figures[f"evidently_{label}"] = peer["error"]
            for key in [k for k in figures if k.endswith(label)]:
                value = figures[key]
                print(f"{key:36} {value:,.2f}" if isinstance(value, float) else f"{key:36} {value}", flush=True)
            reference_csv.unlink()
            reference_parquet.unlink()
    largest = f"{sizes[-1] // 1000}k"
    summary = {"check_rows_per_s": figures[f"check_csv_rows_per_s_{largest}"],
               "peak_rss_mb": figures[f"check_peak_rss_mb_{largest}"],
               "read_share": figures[f"read_share_{largest}"]}
    if f"evidently_ratio_{largest}" in figures:
        summary["evidently_ratio"] = figures[f"evidently_ratio_{largest}"]
    print(json.dumps({**{k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()},
                      **{k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()},
                      "max_rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
