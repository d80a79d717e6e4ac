"""Memory of every service under steady traffic, over a run and over one ten times longer.

Runs the demo's services (monitor, trainer, rollout controller, two serving
nodes, console) against the demo's application at 150 requests/s with labels,
and samples each service process's resident set (``VmRSS``) every second
during the stable phase, before the world changes. For a run of ``S``
seconds and one of ``10 S`` it reports each service's RSS at 10 %, 50 % and
95 % of the phase (``start``/``half``/``end``, MB) and ``growth`` (end over
start). Flat memory is growth near 1.0 in both runs: state bounded by models,
features and open windows, not by requests. Run: ``python bench/memory.py
[--quick]`` (quick: 20 s and 200 s; otherwise 60 s and 600 s).
"""

from __future__ import annotations

import logging
import secrets
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from _common import bench_settings, parser, report

from driftline.demo.loop import Loop, Scenario
from driftline.demo.simulator import Traffic


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
    report(figures)


if __name__ == "__main__":
    main()
