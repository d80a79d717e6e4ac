"""Serving figures: single-row inference throughput and latency beside the server stack's ceiling.

One serving node (one uvicorn worker process, uvloop + httptools) serving a
river pipeline (standard scaler + logistic regression) over 20 features:
Agrawal's 9 plus 11 noise columns. For concurrency 1, 8 and 32 keep-alive
connections (closed loop, a raw asyncio HTTP/1.1 client so the client is
not the bottleneck) it reports ``rps``, ``p50_ms``, ``p99_ms``; the same
against ``ceiling``: the same stack (uvicorn, Starlette) answering a
constant JSON body with no model. ``--load wrk`` drives them with ``wrk``
(C, one thread: less of the two cores than the Python client takes).
Each figure is the median of 5 rounds of 3 s that alternate the servers,
and each ratio the median of the rounds' ratios, so a machine whose speed
drifts during the run moves both sides of a ratio alike.
``swap_ms``: from the Deployment record being acknowledged to the first
response from the new version.

``--peers`` (with the peers' venv, ``make peers``) adds MLServer 1.7 serving
the same pickled river pipeline through a custom runtime
(``bench/peers/mlserver_river.py``; in-process inference,
``parallel_workers: 0``, its fastest setting for a model this cheap), loaded
by the same load generator with the same request body: ``mlserver_rps_cN``,
``mlserver_p99_ms_cN`` and ``vs_mlserver_cN`` (the node over MLServer).
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import bench_settings, parser, peers_python, report

from driftline import artifacts
from driftline.broker.local import free_port
from driftline.client import infer_body
from driftline.processes import spawn, stop_group
from driftline.registry import Registry
from driftline.synthetic import agrawal
from schemas import Table
from trainers.dataset import from_table
from trainers.job import TrainingJob, Trigger
from trainers.modelfile import parse_model_config

CEILING = """
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

ANSWER = {"model_name": "bench", "model_version": "1", "outputs": [
    {"name": "score", "datatype": "FP64", "shape": [1], "data": [0.5]},
    {"name": "predicted_class", "datatype": "BYTES", "shape": [1], "data": ["1"]}],
    "parameters": {"request_ids": ["0123456789abcdef0123456789abcdef"]}}

async def infer(request):
    await request.body()
    return JSONResponse(ANSWER)

app = Starlette(routes=[Route("/v2/models/{name}/infer", infer, methods=["POST"])])
from driftline.runtime import tune_gc
tune_gc()  # the same process tuning as the node, so the ratio compares the request paths only
uvicorn.run(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), loop="uvloop", http="httptools",
            access_log=False, log_level="warning")
"""


def columns_for(rows: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    columns, labels = agrawal(rows, function=0, seed=seed)
    rng = np.random.default_rng(seed)
    columns.update({f"noise{i}": rng.normal(size=rows) for i in range(11)})
    return columns, labels


async def closed_loop(port: int, request: bytes, connections: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            answer = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{head[:40]!r} {answer[:200]!r}")
            latencies.append(time.perf_counter() - started)
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return latencies


_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_load(wrk: str, port: int, body: bytes, connections: int, seconds: float) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) from ``wrk`` (C, one thread) posting ``body`` over ``connections``."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body.decode())}\n'
                     'wrk.headers["Content-Type"] = "application/json"\n')
    try:
        out = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                              "-s", script.name, f"http://127.0.0.1:{port}/v2/models/bench/infer"],
                             capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    finally:
        os.unlink(script.name)
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw failed requests:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def percentile(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * _WRK_UNITS[unit]

    return rps, percentile("50"), percentile("99")


def wait_ready(port: int, path: str = "/v2/health/ready") -> None:
    import httpx

    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server on port {port} did not become ready")


def start_mlserver(settings, folder: Path, port: int) -> subprocess.Popen[bytes]:
    """MLServer serving the node's model (verified here, pickled for the peer) on ``port``."""
    python = peers_python()
    if python is None:
        raise SystemExit("--peers needs the peers' venv: run `make peers` (or set DRIFTLINE_PEERS_PYTHON)")
    model = artifacts.load(Registry(settings).model("bench", "1"), settings)  # signature checked
    (folder / "model.pkl").write_bytes(pickle.dumps(model.estimator))
    (folder / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "parallel_workers": 0,
        "debug": False}))
    runtime = Path(__file__).resolve().parent / "peers"
    (folder / "model-settings.json").write_text(json.dumps({
        "name": "bench", "implementation": "mlserver_river.RiverRuntime",
        "parameters": {"uri": str(folder / "model.pkl"), "version": "1"}}))
    env = {**os.environ, "PYTHONPATH": str(runtime)}
    # its own process group, tied to this process: MLServer and anything it starts stop with the bench
    return spawn([str(Path(python).parent / "mlserver"), "start", str(folder)], env=env,
                 stdout=subprocess.DEVNULL, python_child=False)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--peers", action="store_true", help="also measure MLServer (needs `make peers`)")
    p.add_argument("--load", choices=("python", "wrk"), default="python",
                   help="load generator: the closed-loop asyncio client here, or wrk (C; apt-get install wrk)")
    args = p.parse_args()
    seconds = 3.0 if args.quick else 15.0  # per server and concurrency, in rounds (below)
    settings = bench_settings().replace(signing_key="bench-signing-secret-0123")
    config = parse_model_config({"name": "bench", "pipeline": "logistic_regression",
                                 "validation": {"max_latency_p99_ms": 50}})
    columns, labels = columns_for(3000, 1)
    table = Table({**columns, "label": labels.astype(np.int64)}, {**{n: "float" for n in columns}, "label": "int"})
    TrainingJob(settings, config).run(Trigger("init", "init"), dataset=from_table(table, "label"))

    node_port, ceiling_port = free_port(), free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "DRIFTLINE_TOPIC_PREFIX": settings.topic_prefix, "DRIFTLINE_SIGNING_KEY": settings.signing_key,
           "DRIFTLINE_LOG_LEVEL": "WARNING"}
    # Tied to this process, each in its own group: whatever ends the bench (an error, Ctrl-C) ends them.
    node = spawn([sys.executable, "-m", "driftline.cli.main", "serve", "--port", str(node_port),
                  "--no-access-log"], env=env)
    ceiling = spawn([sys.executable, "-c", CEILING, str(ceiling_port)], python_child=False)
    processes = [node, ceiling]
    servers = [("", node_port), ("ceiling_", ceiling_port)]
    figures: dict[str, float | int | str] = {}
    folder = tempfile.TemporaryDirectory(prefix="driftline-mlserver-")
    try:
        if args.peers:
            mlserver_port = free_port()
            processes.append(start_mlserver(settings, Path(folder.name), mlserver_port))
            servers.append(("mlserver_", mlserver_port))
            wait_ready(mlserver_port, "/v2/models/bench/ready")
        wait_ready(node_port)
        body = json.dumps(infer_body({k: v[:1] for k, v in columns.items()})).encode()
        request = (f"POST /v2/models/bench/infer HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        wrk = shutil.which("wrk") if args.load == "wrk" else None
        if args.load == "wrk" and wrk is None:
            raise SystemExit("--load wrk needs wrk on the PATH (Debian: apt-get install wrk)")
        figures["load"] = args.load
        # Rounds alternate the servers, so a machine whose speed drifts (other tenants, clock scaling)
        # moves both sides of a ratio alike; each figure is the median over its rounds.
        rounds = 1 if args.quick else 5
        for connections in (1, 8, 32):
            runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in servers}
            for _ in range(rounds):
                for name, port in servers:
                    if wrk is not None:
                        runs[name].append(wrk_load(wrk, port, body, connections, seconds / rounds))
                    else:
                        latencies = asyncio.run(closed_loop(port, request, connections, seconds / rounds))
                        runs[name].append((len(latencies) / (seconds / rounds),
                                           *(float(np.percentile(latencies, q) * 1000) for q in (50, 99))))
            for name, _ in servers:
                rps, p50, p99 = (float(np.median(column)) for column in zip(*runs[name], strict=True))
                figures[f"{name}rps_c{connections}"] = rps
                figures[f"{name}p50_ms_c{connections}"] = p50
                figures[f"{name}p99_ms_c{connections}"] = p99
            node_rps = np.array([r[0] for r in runs[""]])
            figures[f"ratio_c{connections}"] = float(np.median(node_rps / [r[0] for r in runs["ceiling_"]]))
            if args.peers:
                figures[f"vs_mlserver_c{connections}"] = float(np.median(node_rps / [r[0] for r in runs["mlserver_"]]))
        figures["ceiling_rps"] = figures["ceiling_rps_c8"]
        figures["rps"] = figures["rps_c8"]
        figures["p99_ms"] = figures["p99_ms_c8"]
        figures["swap_ms"] = measure_swap(settings, node_port, body)
    finally:
        for process in processes:
            stop_group(process, 30)
        folder.cleanup()
    report(figures)


def measure_swap(settings, port: int, body: bytes) -> float:
    import httpx

    registry = Registry(settings)
    base = registry.model("bench", "1")
    record = artifacts.sign({**base, "version": "2", "created_at": int(time.time() * 1000)}, settings)
    registry.publish_model(record)
    registry.deploy("bench", "2", "deploy", reason="bench swap")
    acknowledged = time.perf_counter()
    with httpx.Client() as client:
        while True:
            answer = client.post(f"http://127.0.0.1:{port}/v2/models/bench/infer", content=body).json()
            if answer["model_version"] == "2":
                return (time.perf_counter() - acknowledged) * 1000


if __name__ == "__main__":
    main()
