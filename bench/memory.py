"""Memory of every service under steady traffic, over a run and over one ten times longer.

Runs the demo's services (monitor, trainer, rollout controller, two serving
nodes, console) against the demo's application at 150 requests/s with labels,
and samples each service process's resident set (``VmRSS``) every second
during the stable phase, before the world changes. For a run of ``S``
seconds and one of ``10 S`` it reports each service's RSS at 10 %, 50 % and
95 % of the phase (``start``/``half``/``end``, MB) and ``growth`` (end over
start). Flat memory is growth near 1.0 in both runs: state bounded by models,
features and open windows, not by requests.

The demo's trainer runs once at most in a stable phase (nothing drifts), so
its memory there is that of a service waiting. Its memory over *runs* is
measured apart (``trainer_runs_*``): a ``driftline trainer`` process whose
model file schedules a run every second (so runs follow each other) trains
the demo's pipeline on the same 3,000 labelled rows for ``S`` and ``10 S``
seconds; every candidate passes and is published, so the registry grows by
a version a run. It reports the number of runs and the median of the runs'
peak RSS (each between the run's start and end as recorded on ``runs``)
over the first, middle and last tenth of the runs (``start``/``half``/
``end``), and the highest peak. Run:
``python bench/memory.py [--quick]`` (quick: 20 s and 200 s; otherwise 60 s
and 600 s).
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from _common import bench_settings, parser, report

from driftline import Producer
from driftline.demo.loop import Loop, Scenario
from driftline.demo.services import Service
from driftline.demo.simulator import Traffic
from driftline.registry import Registry
from driftline.synthetic import agrawal
from schemas import Table
from trainers.dataset import from_table
from trainers.job import TrainingJob, Trigger
from trainers.modelfile import parse_model_config

TRAINER_MODEL = "memory"
TRAINER_ROWS = 3000  # the demo's training window: 20 s of 150 labelled requests/s


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure(stable: float) -> tuple[dict[str, dict[str, float]], dict]:
    """RSS of each service at 10 %, 50 % and 95 % of a stable phase of ``stable`` seconds, and the
    demo's summary (the loop must still close: memory of a broken loop proves nothing)."""
    settings = bench_settings(partitions=2)
    settings = settings.replace(window_seconds=10.0, grace_seconds=1.0, signing_key=secrets.token_hex(16))
    scenario = Scenario(window=10.0, stable=stable, after_swap=4.0, traffic=Traffic(rate=150.0),
                        deadline=120.0)
    loop = Loop(settings, scenario, lambda tag, text: None)
    samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
    done = threading.Event()
    began = [0.0]

    def sample() -> None:
        while not done.wait(1.0):
            for name, service in loop.services.items():
                if service.process is not None and (rss := rss_mb(service.process.pid)) is not None:
                    samples[name].append((time.monotonic() - began[0], rss))

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        loop.prepare()
        loop.start_services()
        began[0] = time.monotonic()
        sampler.start()
        summary = loop.run()
    finally:
        done.set()
        loop.stop_services()
    out: dict[str, dict[str, float]] = {}
    for name, series in samples.items():
        points = {}
        for label, share in (("start", 0.10), ("half", 0.50), ("end", 0.95)):
            at = share * stable
            points[label] = min(series, key=lambda s: abs(s[0] - at))[1]
        points["growth"] = points["end"] / points["start"]
        out[name] = points
    return out, summary


def trainer_model(path: Path) -> Path:
    """The demo's pipeline, a run a second, every candidate passing: the registry grows a version a run."""
    path.write_text(json.dumps({
        "name": TRAINER_MODEL, "pipeline": "adaptive_random_forest", "params": {"n_models": 10},
        "label_delay": "0s", "training_window": "1h", "holdout_fraction": 0.25, "promotion": "manual",
        "validation": {"max_regression": 1.0, "max_latency_p99_ms": 1000, "min_holdout_rows": 100},
        "trigger": {"on": [], "debounce": "0s", "cooldown": "0s", "min_new_labels": 0, "schedule": "1s"}}))
    return path


def trainer_runs(seconds: float) -> dict[str, float]:
    """A ``driftline trainer``'s peak RSS in each of ``seconds`` of back-to-back runs: the median over the
    first, middle and last tenth of its runs, the highest, and how many runs it finished."""
    settings = bench_settings(partitions=2).replace(signing_key=secrets.token_hex(16))
    with tempfile.TemporaryDirectory(prefix="driftline-memory-") as folder:
        config_path = trainer_model(Path(folder) / "model.json")
        config = parse_model_config(json.loads(config_path.read_text()))
        columns, labels = agrawal(2000, function=0, seed=1)
        table = Table({**columns, "label": labels.astype(np.int64)}, {**{n: "float" for n in columns},
                                                                       "label": "int"})
        with Registry(settings) as registry:
            TrainingJob(settings, config, registry).run(Trigger("init", "init"), dataset=from_table(table, "label"))
        columns, labels = agrawal(TRAINER_ROWS, function=0, seed=2)
        with Producer(model=TRAINER_MODEL, settings=settings) as producer:
            for start in range(0, TRAINER_ROWS, 100):
                part = {k: v[start:start + 100] for k, v in columns.items()}
                ids = [f"m{i}" for i in range(start, start + 100)]
                producer.predictions(part, np.zeros(100), request_ids=ids)
                producer.labels(ids, labels[start:start + 100].astype(int).tolist())
        service = Service("trainer", ["trainer", str(config_path), "--metrics-port", "0"], settings, Path(folder))
        series: list[tuple[float, float]] = []
        try:
            service.start()
            assert service.process is not None
            ends = time.monotonic() + seconds
            while time.monotonic() < ends:
                if (rss := rss_mb(service.process.pid)) is not None:
                    series.append((time.time() * 1000, rss))
                if service.process.poll() is not None:
                    raise RuntimeError(f"the trainer exited with {service.process.returncode}: "
                                       f"{service.log_path.read_text()[-2000:]}")
                time.sleep(0.25)
        finally:
            code = service.stop()
        with Registry(settings) as registry:
            # a run still going when sampling stopped ends after SIGTERM, unsampled
            runs = [r for r in registry.runs(TRAINER_MODEL) if r["trigger_type"] == "schedule"
                    and r["finished_at"] is not None and r["finished_at"] <= series[-1][0]]
    figures: dict[str, float] = {"runs": len(runs), "published": sum(r["status"] == "published" for r in runs),
                                 "exit_code": float(code if code is not None else -1)}
    if len(runs) < 3:
        raise RuntimeError(f"only {len(runs)} runs finished in {seconds:.0f} s: no first, middle and last")
    peaks = []
    for run in runs:
        during = [rss for at, rss in series if run["started_at"] <= at <= run["finished_at"]]
        if not during:
            raise RuntimeError(f"no sample during run {run['run_id']} ({run['status']}: {run['reason']}, "
                               f"{run['finished_at'] - run['started_at']} ms)")
        peaks.append(max(during))
    tenth = max(1, len(peaks) // 10)
    middle = len(peaks) // 2 - tenth // 2
    for label, group in (("start", peaks[:tenth]), ("half", peaks[middle:middle + tenth]), ("end", peaks[-tenth:])):
        figures[label] = float(np.median(group))
    figures["highest"] = max(peaks)
    figures["growth"] = figures["end"] / figures["start"]
    return figures


def main() -> None:
    args = parser(__doc__).parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    short = 20.0 if args.quick else 60.0
    figures: dict[str, float | int] = {"short_s": short, "long_s": 10 * short}
    for tag, seconds in (("short", short), ("long", 10 * short)):
        print(f"# {tag} run: {seconds:.0f} s of steady traffic", file=sys.stderr)
        services, summary = measure(seconds)
        figures[f"{tag}_loop_ok"] = int(bool(summary["ok"]))
        figures[f"{tag}_requests"] = summary["requests"]
        for service, points in sorted(services.items()):
            for label, value in points.items():
                figures[f"{tag}_{service}_{label}"] = value
    for tag, seconds in (("short", short), ("long", 10 * short)):
        print(f"# {tag} trainer run: {seconds:.0f} s of back-to-back training runs", file=sys.stderr)
        for label, value in trainer_runs(seconds).items():
            figures[f"{tag}_trainer_runs_{label}"] = value
    report(figures)


if __name__ == "__main__":
    main()
