"""Starting serving nodes and publishing model versions in tests."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import numpy as np

from driftline import artifacts
from driftline.broker.local import free_port
from driftline.registry import Registry
from driftline.synthetic import agrawal
from schemas import Table
from tests.integration.helpers import service_env
from trainers.dataset import from_table
from trainers.job import TrainingJob, Trigger
from trainers.modelfile import parse_model_config

MODEL = {"name": "loans", "pipeline": "hoeffding_adaptive_tree", "validation": {"max_latency_p99_ms": 100}}


def env_for(settings) -> dict:
    return {**service_env(settings), "DRIFTLINE_SIGNING_KEY": settings.signing_key}


def publish_first_version(settings, rows: int = 1500) -> dict:
    columns, labels = agrawal(rows, function=0, seed=1)
    table = Table({**columns, "label": labels.astype(np.int64)}, {**{n: "float" for n in columns}, "label": "int"})
    run = TrainingJob(settings, parse_model_config(MODEL)).run(Trigger("init", "init"),
                                                               dataset=from_table(table, "label"))
    assert run["status"] == "published", run["reason"]
    return Registry(settings).model("loans", "1")


def publish_version(settings, base: dict, version: str, *, tamper: bool = False, deploy: bool = True,
                    changed_after_signing: dict | None = None) -> None:
    """The same model under another version number (signed), then its deployment.

    ``tamper`` flips an artifact byte; ``changed_after_signing`` rewrites fields of the signed record,
    keeping its signature (what someone with write access to the topic, but no key, can do).
    """
    record = artifacts.sign({**base, "version": version, "created_at": int(time.time() * 1000), "run_id": None},
                            settings)
    record.update(changed_after_signing or {})
    if tamper:
        flipped = bytearray(record["artifact"])
        flipped[len(flipped) // 3] ^= 0xFF
        record["artifact"] = bytes(flipped)
    registry = Registry(settings)
    registry.publish_model(record)
    if deploy:
        registry.deploy("loans", version, "deploy", reason="test")


def start_node(settings, *extra: str, port: int | None = None, stderr=subprocess.PIPE,
               env: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "driftline.cli.main", "serve", "--port", str(port), "--no-access-log", *extra],
        env={**env_for(settings), **(env or {})}, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serving node exited: {process.stderr.read()[-2000:] if process.stderr else ''}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError("serving node did not become ready in 60 s")


def row_columns(i: int, rows: int = 1) -> dict[str, np.ndarray]:
    columns, _ = agrawal(rows, function=0, seed=100 + i % 50)
    return columns


def stop_node(process: subprocess.Popen, timeout: float = 60) -> int:
    """SIGTERM a node and its exit code; killed (and the test fails on the timeout) if it hangs."""
    import signal

    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
