"""The model file: what a team declares about a model so driftline can retrain it.

YAML or TOML. Durations are seconds or strings like ``90s``, ``15m``, ``6h``,
``2d``. Everything but ``name`` and ``pipeline`` has a default; a mistake is
reported as one sentence naming the key::

    name: loans
    task: classification            # or regression (default: the pipeline's)
    pipeline: logistic_regression   # see driftline.modeling.PIPELINES
    params: {lr: 0.05}
    label_delay: 5m                 # labels newer than this may still be missing
    training_window: 6h             # history a run trains on
    train_since_change: false       # true: an alert's run trains only from its window's start on
    holdout_fraction: 0.25          # the newest rows, never trained on
    warm_start: false               # true: clone the champion and learn on the new data
    segments: [plan]                # features whose values are validated one by one
    promotion: auto                 # or manual (driftline models promote)
    validation: {floors: {accuracy: 0.6}, max_regression: 0.0, ...}
    trigger: {on: [drift, decay], debounce: 10s, cooldown: 10m, min_new_labels: 500, schedule: 0}
    rollout: {strategy: canary, share: 0.2, margin: 0.01, confidence: 0.95, min_pairs: 200,
              max_pairs: 5000, timeout: 30m, probation: 10m}   # default strategy: replace
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from driftline.comparison import Policy
from driftline.errors import ConfigError
from driftline.modeling import PIPELINES

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any, key: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*", str(value))
    if not match:
        raise ConfigError(f"{key} must be a duration like 90, '90s', '15m', '6h' or '2d', got {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class ValidationPolicy:
    """What a candidate must show on the holdout to be published."""

    primary_metric: str = ""  # default: accuracy (classification) / rmse (regression)
    floors: dict[str, float] = field(default_factory=dict)  # minimum (or, for errors, maximum) values
    max_regression: float = 0.0  # absolute: candidate may be worse than the champion by at most this
    max_relative_regression: float = 0.0  # relative to the champion's value
    segment_min_rows: int = 50
    segment_tolerance: float = 0.05  # how much worse than the champion one segment may be
    max_latency_p99_ms: float = 20.0  # single-row predict
    max_artifact_bytes: int = 8 * 1024 * 1024
    min_holdout_rows: int = 50


@dataclass(frozen=True)
class TriggerPolicy:
    """When an alert (or the clock) starts a run."""

    on: tuple[str, ...] = ("drift", "decay")
    debounce_seconds: float = 5.0
    cooldown_seconds: float = 300.0
    min_new_labels: int = 200
    schedule_seconds: float = 0.0  # 0: no scheduled runs


@dataclass(frozen=True)
class RolloutConfig:
    """How a published candidate reaches traffic: ``replace`` at once, or a ``shadow``/``canary`` rollout
    that the rollout controller promotes or rolls back by live quality (see driftline.comparison)."""

    strategy: str = "replace"
    share: float = 0.1
    policy: Policy = field(default_factory=lambda: Policy.for_rollout(0.01, 0.95, 200, 5000))
    timeout_seconds: float = 3600.0
    probation_seconds: float = 0.0


@dataclass(frozen=True)
class ModelConfig:
    name: str
    pipeline: str
    task: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    label_delay_seconds: float = 0.0
    training_window_seconds: float = 3600.0
    # A run triggered by a drift or decay alert starts its data at the alerted window's start (still
    # within training_window): after an abrupt change, rows from the old world only teach the old concept.
    train_since_change: bool = False
    holdout_fraction: float = 0.25
    warm_start: bool = False
    segments: tuple[str, ...] = ()
    promotion: str = "auto"
    validation: ValidationPolicy = field(default_factory=ValidationPolicy)
    trigger: TriggerPolicy = field(default_factory=TriggerPolicy)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    source: str = ""

    @property
    def primary_metric(self) -> str:
        return self.validation.primary_metric or ("rmse" if self.task == "regression" else "accuracy")


def _known(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(allowed))}")


def _number(data: dict[str, Any], key: str, where: str, kind: type = float) -> Any:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    return kind(value)


def _validation(data: dict[str, Any], where: str) -> ValidationPolicy:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: validation must be a mapping")
    allowed = {f.name for f in fields(ValidationPolicy)}
    _known(data, allowed, f"{where} validation")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "floors":
            if not isinstance(value, dict) or not all(isinstance(v, (int, float)) for v in value.values()):
                raise ConfigError(f"{where}: validation.floors must map metric names to numbers")
            out[key] = {str(k): float(v) for k, v in value.items()}
        elif key == "primary_metric":
            out[key] = str(value)
        else:
            out[key] = _number(data, key, f"{where} validation",
                               int if key in ("segment_min_rows", "max_artifact_bytes", "min_holdout_rows") else float)
    return ValidationPolicy(**out)


def _flag(data: dict[str, Any], key: str, where: str) -> bool:
    """A true/false field. Only a YAML/JSON boolean counts: ``bool("false")`` is True, so a quoted
    ``"false"`` would silently mean the opposite of what it says."""
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false (unquoted), got {value!r}")
    return value


def _trigger(data: dict[Any, Any], where: str) -> TriggerPolicy:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: trigger must be a mapping")
    if True in data:  # YAML 1.1 reads an unquoted `on:` key as the boolean true
        data = {**{k: v for k, v in data.items() if k is not True}, "on": data[True]}
    _known(data, {"on", "debounce", "cooldown", "min_new_labels", "schedule"}, f"{where} trigger")
    on = data.get("on", list(TriggerPolicy.on))
    kinds = {"drift", "skew", "decay", "estimated_decay"}
    if not isinstance(on, list) or not set(on) <= kinds:
        raise ConfigError(f"{where}: trigger.on must be a list of {sorted(kinds)}, got {on!r}")
    return TriggerPolicy(
        on=tuple(on),
        debounce_seconds=parse_duration(data.get("debounce", TriggerPolicy.debounce_seconds), "trigger.debounce"),
        cooldown_seconds=parse_duration(data.get("cooldown", TriggerPolicy.cooldown_seconds), "trigger.cooldown"),
        min_new_labels=_number(data, "min_new_labels", where, int) if "min_new_labels" in data
        else TriggerPolicy.min_new_labels,
        schedule_seconds=parse_duration(data.get("schedule", 0), "trigger.schedule"),
    )


def _rollout(data: Any, where: str) -> RolloutConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: rollout must be a mapping (strategy, share, margin, ...)")
    where = f"{where} rollout"
    _known(data, {"strategy", "share", "margin", "confidence", "min_pairs", "max_pairs", "timeout", "probation"},
           where)
    strategy = data.get("strategy", "replace")
    if strategy not in ("replace", "shadow", "canary"):
        raise ConfigError(f"{where}: strategy must be replace, shadow or canary, got {strategy!r}")
    defaults = RolloutConfig()

    def number(key: str, default: Any, kind: type) -> Any:
        return _number(data, key, where, kind) if key in data else default

    try:
        policy = Policy.for_rollout(number("margin", defaults.policy.margin, float),
                                    number("confidence", defaults.policy.confidence, float),
                                    number("min_pairs", defaults.policy.min_pairs, int),
                                    number("max_pairs", defaults.policy.max_pairs, int))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    config = RolloutConfig(
        strategy=strategy, share=number("share", defaults.share, float), policy=policy,
        timeout_seconds=parse_duration(data.get("timeout", defaults.timeout_seconds), "rollout.timeout"),
        probation_seconds=parse_duration(data.get("probation", 0), "rollout.probation"))
    if not 0 < config.share <= 1:
        raise ConfigError(f"{where}: share must be in (0, 1], got {config.share}")
    return config


def parse_model_config(data: Any, where: str = "model file") -> ModelConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of settings")
    _known(data, {"name", "task", "pipeline", "params", "label_delay", "training_window", "holdout_fraction",
                  "train_since_change", "warm_start", "segments", "promotion", "validation", "trigger",
                  "rollout"}, where)
    for key in ("name", "pipeline"):
        if not data.get(key) or not isinstance(data[key], str):
            raise ConfigError(f"{where}: {key!r} is required")
    pipeline = data["pipeline"]
    if pipeline not in PIPELINES:
        raise ConfigError(f"{where}: unknown pipeline {pipeline!r}; known: {', '.join(sorted(PIPELINES))}")
    task = data.get("task", PIPELINES[pipeline][0])
    if task != PIPELINES[pipeline][0]:
        raise ConfigError(f"{where}: pipeline {pipeline!r} is for {PIPELINES[pipeline][0]}, not {task}")
    holdout = data.get("holdout_fraction", 0.25)
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 < holdout < 1:
        raise ConfigError(f"{where}: holdout_fraction must be between 0 and 1, got {holdout!r}")
    promotion = data.get("promotion", "auto")
    if promotion not in ("auto", "manual"):
        raise ConfigError(f"{where}: promotion must be auto or manual, got {promotion!r}")
    segments = data.get("segments", [])
    if isinstance(segments, str):
        segments = [segments]
    since_change = _flag(data, "train_since_change", where)
    warm_start = _flag(data, "warm_start", where)
    params = data.get("params", {}) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: params must be a mapping")
    return ModelConfig(
        name=data["name"], pipeline=pipeline, task=task, params=params,
        label_delay_seconds=parse_duration(data.get("label_delay", 0), "label_delay"),
        training_window_seconds=parse_duration(data.get("training_window", 3600), "training_window"),
        train_since_change=since_change,
        holdout_fraction=float(holdout), warm_start=warm_start,
        segments=tuple(str(s) for s in segments), promotion=promotion,
        validation=_validation(data.get("validation", {}) or {}, where),
        trigger=_trigger(data.get("trigger", {}) or {}, where),
        rollout=_rollout(data.get("rollout", {}) or {}, where), source=where)


def load_model_config(path: str | Path) -> ModelConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read model file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"model file {path} is not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: "
                          f"{str(exc).splitlines()[0]}") from None
    return parse_model_config(data, str(path))
