"""The notify file: which sinks get which alerts, how hard to try, how fast to send.

.. code-block:: yaml

    sinks:
      - name: oncall                 # unique: the dedupe key is (sink, alert id)
        type: webhook                # webhook | slack | command
        url: https://hooks.example.com/driftline
        mode: structured             # CloudEvents structured (JSON body) or binary (ce-* headers)
        headers: {Authorization: "Bearer …"}
        models: [churn]              # filters: any model / type when absent
        types: [driftline.drift, driftline.decay]
        min_severity: warning        # info < warning < critical
        rate: 30/min                 # at most this many deliveries per period
        attempts: 8                  # then the alert goes to the dead-letter topic
      - name: chat
        type: slack
        url: https://hooks.slack.com/services/…
      - name: script
        type: command
        command: ["/usr/local/bin/page-someone", "--quiet"]   # the CloudEvent on stdin
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from driftline.alerts import SEVERITIES
from driftline.errors import ConfigError

SINK_TYPES = ("webhook", "slack", "command")
PERIODS = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}


@dataclass(frozen=True)
class SinkConfig:
    name: str
    type: str
    url: str = ""
    command: tuple[str, ...] = ()
    mode: str = "structured"
    headers: dict[str, str] = field(default_factory=dict)
    models: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    min_severity: str = "info"
    rate_per_s: float = 1.0  # 60/min by default
    burst: int = 10
    attempts: int = 8
    timeout_s: float = 10.0

    def wants(self, model: str, alert_type: str, severity: str) -> bool:
        """Does this sink take an alert of this model, type and severity?"""
        if self.models and model not in self.models:
            return False
        if self.types and alert_type not in self.types:
            return False
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        return rank.get(severity, 0) >= rank[self.min_severity]


def _rate(text: Any, where: str) -> float:
    count, _, period = str(text).partition("/")
    try:
        per_s = float(count) / PERIODS[period.strip() or "s"]
    except (ValueError, KeyError):
        raise ConfigError(f"{where}: rate must look like 30/min, 2/s or 100/h, got {text!r}") from None
    if per_s <= 0:
        raise ConfigError(f"{where}: rate must be positive, got {text!r}")
    return per_s


def parse_notify_config(data: Any, where: str = "notify file") -> list[SinkConfig]:
    if not isinstance(data, dict) or not isinstance(data.get("sinks"), list) or not data["sinks"]:
        raise ConfigError(f"{where}: expected a mapping with a non-empty 'sinks' list")
    sinks: list[SinkConfig] = []
    allowed = {"name", "type", "url", "command", "mode", "headers", "models", "types", "min_severity", "rate",
               "attempts", "timeout"}
    for i, item in enumerate(data["sinks"]):
        here = f"{where} sinks[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{here}: expected a mapping")
        unknown = set(item) - allowed
        if unknown:
            raise ConfigError(f"{here}: unknown keys {sorted(unknown)}; known: {sorted(allowed)}")
        name, kind = str(item.get("name", "")), item.get("type")
        if not name or kind not in SINK_TYPES:
            raise ConfigError(f"{here}: needs a name and a type out of {SINK_TYPES}")
        if kind in ("webhook", "slack") and not str(item.get("url", "")).startswith(("http://", "https://")):
            raise ConfigError(f"{here}: a {kind} sink needs an http(s) url")
        command = item.get("command", [])
        if kind == "command" and (not isinstance(command, list) or not command):
            raise ConfigError(f"{here}: a command sink needs command: [program, arg, …]")
        mode = item.get("mode", "structured")
        if mode not in ("structured", "binary"):
            raise ConfigError(f"{here}: mode must be structured or binary, got {mode!r}")
        severity = item.get("min_severity", "info")
        if severity not in SEVERITIES:
            raise ConfigError(f"{here}: min_severity must be one of {SEVERITIES}, got {severity!r}")
        attempts = item.get("attempts", 8)
        if not isinstance(attempts, int) or attempts < 1:
            raise ConfigError(f"{here}: attempts must be a whole number of at least 1")
        rate = _rate(item.get("rate", "60/min"), here)
        sinks.append(SinkConfig(
            name=name, type=kind, url=str(item.get("url", "")), command=tuple(str(c) for c in command),
            mode=mode, headers={str(k): str(v) for k, v in (item.get("headers") or {}).items()},
            models=frozenset(map(str, item.get("models") or ())), types=frozenset(map(str, item.get("types") or ())),
            min_severity=severity, rate_per_s=rate, burst=max(1, min(10, int(rate * 10))), attempts=attempts,
            timeout_s=float(item.get("timeout", 10.0))))
    names = [s.name for s in sinks]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: sink names must be unique (they key the dedupe state)")
    return sinks


def load_notify_config(path: str | Path) -> list[SinkConfig]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read notify file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"notify file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_notify_config(data, str(path))
