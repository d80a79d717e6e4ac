"""The package as a user installs it: a wheel in a fresh virtualenv, run outside the repository.

``driftline broker up`` (the broker recipe ships as package data),
``driftline profile`` / ``check``, and ``driftline demo`` as a user runs it,
while a third party burns a whole core: the loop closes with no failed
request and the application holds its rate; the topics show the loop; no
process is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest

from driftline.broker import free_port
from driftline.registry import Registry
from tests.conftest import REPO_ROOT
from tests.integration.helpers import read_topic
from tests.processes import cpu_hog, new_mark, wait_until_gone

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the built wheel; its dependencies are this environment's (the lock's)."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(root / "dist"), str(REPO_ROOT)], check=True, capture_output=True)
    [wheel] = (root / "dist").glob("driftline-*.whl")
    venv.create(root / "venv", with_pip=False)
    target = root / "venv"
    site = Path(sysconfig.get_path("purelib", vars={"base": str(target), "platbase": str(target)}))
    # The dependencies, not driftline: a bare path entry does not run this environment's editable-install hook.
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    return target / "bin" / "driftline"


def run(driftline: Path, *args: str, env: dict, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(driftline), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_the_wheel_is_driftline_from_site_packages_not_the_repo(installed, tmp_path):
    python = installed.parent / "python"
    out = subprocess.run([str(python), "-c", "import driftline.broker.local as m, schemas; print(m.RECIPE_DIR); "
                          "print(schemas.__file__)"], cwd=tmp_path, capture_output=True, text=True, check=True)
    recipe, schemas_file = out.stdout.split()
    assert "site-packages" in recipe and str(REPO_ROOT) not in recipe + schemas_file
    assert {"pom.xml", "server.properties", "log4j2.yaml"} <= {p.name for p in Path(recipe).iterdir()}


def test_broker_up_profile_and_check_from_the_wheel(installed, tmp_path):
    env = {**os.environ, "DRIFTLINE_STATE_DIR": str(tmp_path / "state"), "DRIFTLINE_BROKER_PORT": str(free_port()),
           "DRIFTLINE_CONTROLLER_PORT": str(free_port())}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    rng = np.random.default_rng(3)
    for name, shift in (("ref.csv", 0.0), ("same.csv", 0.0), ("shifted.csv", 1.0)):
        x = rng.normal(shift, 1, 3000)
        (tmp_path / name).write_text("x,y\n" + "\n".join(f"{a:.5f},{b:.5f}" for a, b in zip(x, rng.normal(0, 1, 3000),
                                                                                      strict=True)))
    try:
        up = run(installed, "broker", "up", env=env, cwd=tmp_path, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        status = run(installed, "broker", "status", env=env, cwd=tmp_path)
        assert status.returncode == 0 and "running" in status.stdout, status.stdout + status.stderr
    finally:
        down = run(installed, "broker", "down", env=env, cwd=tmp_path, timeout=60)
    assert down.returncode == 0, down.stdout + down.stderr
    profile = run(installed, "profile", "ref.csv", "--model", "m", "-o", "ref.profile.json", env=env, cwd=tmp_path)
    assert profile.returncode == 0, profile.stdout + profile.stderr
    assert run(installed, "check", "--profile", "ref.profile.json", "same.csv", env=env, cwd=tmp_path).returncode == 0
    drifted = run(installed, "check", "--profile", "ref.profile.json", "shifted.csv", env=env, cwd=tmp_path)
    assert drifted.returncode == 1 and "x" in drifted.stdout, drifted.stdout + drifted.stderr


def test_driftline_demo_from_the_wheel_closes_the_loop_under_a_cpu_hog(installed, settings, tmp_path):
    """`driftline demo` as a user runs it (shorter): exit 0, the JSON summary, and the topics behind it."""
    mark, env = new_mark()
    env.update({"KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "DRIFTLINE_TOPIC_PREFIX": settings.topic_prefix,
                "DRIFTLINE_STATE_DIR": str(tmp_path / "state")})
    try:
        with cpu_hog(cores=1):
            out = run(installed, "demo", "--window", "6", "--stable-seconds", "12", "--after-swap", "4", "--rate", "150",
                      "--json-file", str(tmp_path / "demo.json"), env=env, cwd=tmp_path, timeout=300)
    finally:
        left = wait_until_gone(mark)
    assert left == [], f"processes left behind: {left}"
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert summary["ok"] and summary["failed_requests"] == 0 and summary["reason"] is None
    assert abs(summary["rate_held"] - 150) <= 0.05 * 150, summary
    for key in ("drift_injected_at", "first_alert_s", "published_s", "swapped_all_nodes_s", "accuracy_stale",
                "accuracy_after", "requests", "events_produced", "events_monitored", "dead_lettered",
                "serving_url", "model_versions", "elapsed_s"):
        assert summary[key] is not None, key
    assert summary["accuracy_after"] > summary["accuracy_stale"]
    assert summary["events_monitored"] == summary["requests"]  # every answered request reached the monitor
    assert "monitor exit 0, trainer exit 0, rollout exit 0, node1 exit 0, node2 exit 0" in out.stdout
    # the retrained model reached traffic through the default canary rollout, decided by live quality
    assert summary["rollout"] == "canary" and summary["promoted_s"] is not None and not summary["rolled_back"]
    assert summary["published_s"] < summary["promoted_s"] <= summary["swapped_all_nodes_s"] + 1
    assert summary["rollout_evidence"]["pairs"] >= 150
    new = summary["model_versions"][-1]
    assert new != "1"
    s = settings.replace(topic_prefix=summary["topic_prefix"])
    alerts = [json.loads(m.value()) for m in read_topic(s, s.topic("alerts"))]
    drift = [a for a in alerts if a["type"] == "driftline.drift"]
    assert any("salary" in [f["name"] for f in a["data"]["features"]] for a in drift)
    stable = [a for a in alerts if a["type"] in ("driftline.drift", "driftline.decay")
              and a["data"]["window_end"] <= summary["drift_injected_at"] * 1000]
    assert stable == [], "no drift or decay alert on windows before the change"
    registry = Registry(s)
    [run_record] = [r for r in registry.runs("loans") if r["status"] == "published" and r["trigger_type"] != "init"]
    assert run_record["lineage"] and run_record["dataset_hash"] and run_record["candidate_version"] == new
    assert {r["topic"] for r in run_record["lineage"]} >= {s.topic("predictions"), s.topic("labels")}
    assert registry.model("loans", new)["run_id"] == run_record["run_id"]
    assert registry.deployments()["loans"]["version"] == new
