"""deploy/: what can run here runs (promtool), the rest is validated against the code it drives.

No Docker engine runs on this project's machines, so the compose file, the
Dockerfile's entrypoint and the Kubernetes and systemd units are checked for
what would break them: every command is a real ``driftline`` subcommand
whose ``--help`` succeeds, every environment name is a setting, ports and
probes agree, and every dashboard query names a metric the code exports.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import serving.metrics
import streams.stages.metrics
import trainers.metrics
from driftline.cli.main import main
from driftline.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTING_ENV = {f"DRIFTLINE_{f.name.upper()}" for f in fields(Settings)} | {"KAFKA_BOOTSTRAP_SERVERS"}
assert streams.stages.metrics and trainers.metrics and serving.metrics  # imported for their registrations


def exported_metric_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                    "gauge": [""], "info": ["_info"]}.get(family.type, [""])
        names |= {family.name + s for s in suffixes}
    return names


def assert_real_subcommand(args: list[str]) -> None:
    assert args, "empty command"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main([*args, "--help"])
    assert exit_info.value.code == 0, f"driftline {' '.join(args)} --help failed"
    assert "usage: driftline" in out.getvalue()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed")
def test_prometheus_rules_check_and_unit_tests_pass(tmp_path) -> None:
    rules = DEPLOY / "prometheus"
    check = subprocess.run(["promtool", "check", "rules", str(rules / "rules.yml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(["promtool", "test", "rules", "rules_test.yml"], cwd=rules, capture_output=True, text=True)
    assert test.returncode == 0, test.stdout + test.stderr
    config = (rules / "prometheus.yml").read_text().replace("/etc/prometheus/driftline-rules.yml",
                                                           str(rules / "rules.yml"))
    (tmp_path / "prometheus.yml").write_text(config)
    checked = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_rules_and_dashboard_only_query_metrics_the_code_exports() -> None:
    exported = exported_metric_names()
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    assert dashboard["panels"], "the dashboard has panels"
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        exprs += [t["expr"] for t in panel["targets"]]
    for expr in exprs:
        used = set(re.findall(r"\bdriftline_[a-z_]+", expr))
        assert used, expr
        assert used <= exported, f"{sorted(used - exported)} in {expr!r} is not exported by the code"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("lag", "drift", "alerts", "version", "latency", "swaps"):
        assert topic in titles


def test_compose_services_run_real_subcommands_with_real_settings() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"kafka", "monitor", "trainer", "serving", "prometheus", "grafana"} <= set(services)
    assert services["serving"]["deploy"]["replicas"] == 2
    assert "kafka-data" in compose["volumes"]
    for name in ("topics", "monitor", "trainer", "serving"):
        service = services[name]
        assert_real_subcommand(service["command"])
        assert set(service["environment"]) <= SETTING_ENV, name
    assert "--port" in services["serving"]["command"]
    port = services["serving"]["command"][services["serving"]["command"].index("--port") + 1]
    assert f"localhost:{port}/v2/health/ready" in " ".join(services["serving"]["healthcheck"]["test"])
    # Ed25519: only the trainer can sign; serving nodes hold the public key alone
    assert services["trainer"]["environment"]["DRIFTLINE_SIGNING_KEY_FILE"] == "/keys/signing.pem"
    assert "DRIFTLINE_SIGNING_KEY_FILE" not in services["serving"]["environment"]
    assert services["serving"]["environment"]["DRIFTLINE_VERIFY_KEY_FILE"] == "/keys/verify.pem"
    assert not any("SIGNING" in k for name in ("monitor", "serving", "topics") for k in services[name]["environment"])
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {c["job_name"]: c for c in scrape["scrape_configs"]}
    assert targets["driftline-monitor"]["static_configs"][0]["targets"] == ["monitor:9464"]
    assert "9464" in services["monitor"]["command"] and "9465" in services["trainer"]["command"]
    assert targets["driftline-serving"]["dns_sd_configs"][0]["port"] == int(port)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["driftline"]' in dockerfile
    for package in ("driftline", "schemas", "streams", "trainers", "serving"):
        assert f"COPY {package} {package}" in dockerfile
    build = next(line for line in dockerfile.splitlines() if line.startswith("COPY pyproject.toml"))
    assert "setup.py" in build.split()  # it builds the C reader, which the image imports once built
    assert 'python -c "import schemas._bodies"' in dockerfile


def test_kubernetes_manifests_use_real_commands_probes_and_settings() -> None:
    docs = [d for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(path.read_text())]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("Deployment", "driftline-serving"), ("Service", "driftline-serving"),
            ("Deployment", "driftline-trainer"), ("StatefulSet", "driftline-monitor"),
            ("ConfigMap", "driftline"), ("Secret", "driftline-signing-key"), ("Secret", "driftline-verify-key")} <= kinds
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "driftline")
    assert set(config["data"]) <= SETTING_ENV
    mounted: dict[str, set[str]] = {}
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        [container] = doc["spec"]["template"]["spec"]["containers"]
        assert {e["name"] for e in container.get("env", [])} - {"POD_NAME"} <= SETTING_ENV
        mounted[doc["metadata"]["name"]] = {v["secret"]["secretName"] for v in doc["spec"]["template"]["spec"]
                                            .get("volumes", []) if "secret" in v}
        assert_real_subcommand([a.replace("$(POD_NAME)", "pod-0") for a in container["args"]])
        assert container["resources"]["requests"]
        if doc["metadata"]["name"] == "driftline-serving":
            assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
            assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
            assert doc["spec"]["replicas"] >= 2
    assert mounted == {"driftline-trainer": {"driftline-signing-key"}, "driftline-serving": {"driftline-verify-key"},
                       "driftline-monitor": set()}, "only the trainer mounts the private key"


def test_systemd_units_start_real_subcommands() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert len(units) == 3
    for unit in units:
        text = unit.read_text()
        exec_start = re.search(r"^ExecStart=(.+)$", text, re.M).group(1)
        args = shlex.split(exec_start.replace("%i", "1").replace("%H", "host"))[1:]
        assert_real_subcommand(args)
        assert "EnvironmentFile=/etc/driftline/driftline.env" in text and "KillSignal=SIGTERM" in text
    env = dict(line.split("=", 1) for line in (DEPLOY / "systemd" / "driftline.env").read_text().splitlines()
               if line and not line.startswith("#"))
    assert set(env) <= SETTING_ENV
    assert "DRIFTLINE_SIGNING_KEY" not in env, "no shared secret in the common environment file"
    trainer = (DEPLOY / "systemd" / "driftline-trainer.service").read_text()
    serve = (DEPLOY / "systemd" / "driftline-serve@.service").read_text()
    assert "DRIFTLINE_SIGNING_KEY_FILE=" in trainer and "SIGNING" not in serve and "DRIFTLINE_VERIFY_KEY_FILE=" in serve


def test_no_placeholder_secret_ships_in_a_deploy_recipe() -> None:
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".yml", ".env", ".service", ""):
            assert "change-me" not in path.read_text(errors="replace"), path


def test_shipped_model_files_load() -> None:
    from trainers.modelfile import load_model_config, parse_model_config

    assert load_model_config(DEPLOY / "models" / "loans.yaml").name == "loans"
    models = next(d for d in yaml.safe_load_all((DEPLOY / "k8s" / "config.yaml").read_text())
                  if d["metadata"]["name"] == "driftline-models")
    for name, text in models["data"].items():
        assert parse_model_config(yaml.safe_load(text), name).segments == ("elevel",)
