"""One typed settings object for every driftline process.

Precedence: environment (``DRIFTLINE_<FIELD>``, plus ``KAFKA_BOOTSTRAP_SERVERS``)
over a TOML file (``DRIFTLINE_CONFIG``, else ``./driftline.toml`` when it
exists) over the defaults below. Values are validated at start-up and a bad one
is a :class:`~driftline.errors.ConfigError` naming the field, the value and
what would be accepted.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from driftline.errors import ConfigError

ENV_PREFIX = "DRIFTLINE_"
SECRET_FIELDS = frozenset({"sasl_password", "signing_key", "verify_key", "ssl_key_password",
                           "schema_registry_basic_auth"})
MIN_SECRET_CHARS = 16
PLACEHOLDER_SECRETS = frozenset({"change-me", "changeme", "secret", "password", "test", "default", "driftline"})
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Settings:
    """Effective configuration. Field docs are what ``driftline config show`` explains."""

    # --- Kafka
    bootstrap_servers: str = ""
    """Existing cluster to use (``KAFKA_BOOTSTRAP_SERVERS``); empty means the local broker."""
    topic_prefix: str = "driftline."
    partitions: int = 4
    replication_factor: int = 1
    retention_ms: int = 7 * 24 * 3600 * 1000
    max_message_bytes: int = 16 * 1024 * 1024
    """Largest message on the models topic (signed model artifacts)."""
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_key_password: str = ""
    schema_registry_url: str = ""
    """Confluent-compatible registry; when set, events use the Confluent wire format."""
    schema_registry_basic_auth: str = ""
    """USER:PASSWORD for a registry behind HTTP basic auth (masked by ``config show``)."""
    schema_registry_ca_location: str = ""
    """CA bundle that signed an https registry's certificate."""
    schema_registry_cert_location: str = ""
    schema_registry_key_location: str = ""
    """Client certificate and key, for a registry that asks for mutual TLS."""
    schema_registry_retry_seconds: float = 120.0
    """How long a consumer rides out a registry outage (backoff) before it stops; events are never
    dead-lettered because the registry was away."""
    client_id: str = "driftline"

    # --- local broker
    state_dir: str = ".driftline"
    broker_host: str = "127.0.0.1"
    broker_port: int = 9092
    controller_port: int = 9093
    broker_heap_mb: int = 512
    kafka_version: str = "4.1.1"

    # --- services
    metrics_port: int = 0
    """Port for /metrics on workers (0: pick per service default)."""
    window_seconds: float = 60.0
    grace_seconds: float = 5.0
    signing_key: str = ""
    """HMAC-SHA256 secret the trainer signs model records with (at least 16 characters, not a placeholder)."""
    signing_key_id: str = "default"
    """The name published with HMAC signatures, so verifiers can tell keys apart (it reveals nothing)."""
    signing_key_file: str = ""
    """Path of an Ed25519 private key (PEM) the trainer signs with instead of an HMAC secret."""
    verify_key: str = ""
    """HMAC secret serving nodes verify with (default: ``signing_key``)."""
    verify_key_file: str = ""
    """Path of the Ed25519 public key (PEM) serving nodes verify with (default: ``signing_key_file``'s)."""
    log_level: str = "INFO"
    """DEBUG, INFO, WARNING, ERROR or CRITICAL."""

    # --- serving nodes (``driftline serve`` sets them from its flags; every worker process reads them)
    serve_models: str = ""
    """Comma-separated models a node serves; empty: every deployed one."""
    serve_node_id: str = ""
    """A node's name in alerts and logs; empty: host-pid."""
    serve_max_body_bytes: int = 4 * 1024 * 1024
    serve_emit: str = "async"
    """async: predictions are produced off the request path; ack: a response waits for Kafka's ack."""
    serve_emit_capacity: int = 10_000
    """Prediction events a node holds in memory before requests wait (back-pressure)."""
    serve_access_log: bool = True
    serve_limit_concurrency: int = 512
    """Inference requests a node works on at once; more get a JSON 503 at once instead of queueing."""

    extra_kafka: dict[str, str] = field(default_factory=dict)
    """Any other librdkafka property, passed through to every client."""

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        if self.security_protocol.upper() not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"security_protocol {self.security_protocol!r} is not one of "
                f"{', '.join(SECURITY_PROTOCOLS)}"
            )
        for name in ("partitions", "replication_factor", "broker_port", "controller_port",
                     "broker_heap_mb", "max_message_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive number, got {getattr(self, name)}")
        for name in ("signing_key", "verify_key"):
            _check_secret(name, getattr(self, name))
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"log_level {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if self.serve_emit not in ("async", "ack"):
            raise ConfigError(f"serve_emit must be async or ack, got {self.serve_emit!r}")
        if self.serve_limit_concurrency < 1:
            raise ConfigError(f"serve_limit_concurrency must be at least 1, got {self.serve_limit_concurrency}")
        if self.serve_max_body_bytes < 1024 or self.serve_emit_capacity < 1:
            raise ConfigError("serve_max_body_bytes must be at least 1024 and serve_emit_capacity at least 1")
        if self.window_seconds <= 0 or self.grace_seconds < 0:
            raise ConfigError("window_seconds must be > 0 and grace_seconds >= 0")
        if self.security_protocol.upper().startswith("SASL") and not self.sasl_mechanism:
            raise ConfigError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism "
                "(e.g. PLAIN, SCRAM-SHA-512)"
            )

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser().resolve()

    def topic(self, name: str) -> str:
        """Full topic name of a driftline topic (``features`` -> ``driftline.features``)."""
        return f"{self.topic_prefix}{name}"

    def group(self, name: str) -> str:
        """A service's consumer group (and transactional id) under the prefix, like its topics.

        Deployments that share a cluster under different prefixes must not share
        groups: a group's members would be handed the other deployment's topics.
        """
        return f"{self.topic_prefix}{name}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def masked(self) -> dict[str, Any]:
        """Settings as a dict with secrets replaced by ``***`` (for display)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            if f.name == "extra_kafka":
                value = {k: ("***" if "password" in k or "secret" in k else v)
                         for k, v in value.items()}
            out[f.name] = value
        return out


def _check_secret(name: str, value: str) -> None:
    """An HMAC secret that can be guessed, or a key file's path given as a secret, is refused."""
    if not value:
        return
    if Path(value).expanduser().is_file() or value.endswith(".pem"):
        raise ConfigError(f"{name} is an HMAC secret, but {value!r} looks like a key file: "
                          f"set {name}_file for an Ed25519 key")
    if value.strip().lower() in PLACEHOLDER_SECRETS or len(value) < MIN_SECRET_CHARS:
        raise ConfigError(f"{name} must be a real secret of at least {MIN_SECRET_CHARS} characters "
                          "(e.g. `python -c 'import secrets; print(secrets.token_hex(16))'`), not a placeholder")


def _coerce(name: str, raw: Any, kind: Any) -> Any:
    if kind is dict or getattr(kind, "__origin__", None) is dict:
        if isinstance(raw, dict):
            return {str(k): str(v) for k, v in raw.items()}
        try:
            return dict(item.split("=", 1) for item in str(raw).split(",") if item)
        except ValueError:
            raise ConfigError(f"{name} must be 'key=value,key=value', got {raw!r}") from None
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    if kind in (int, float):
        try:
            return kind(raw)
        except (TypeError, ValueError):
            expected = "an integer" if kind is int else "a number"
            raise ConfigError(f"{name} must be {expected}, got {raw!r}") from None
    return str(raw)


def load_settings(
    config_file: str | Path | None = None,
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from defaults, a TOML file, the environment and explicit overrides."""
    env = dict(os.environ if env is None else env)
    hints = get_type_hints(Settings)
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}

    path = config_file or env.get("DRIFTLINE_CONFIG")
    if path is None and Path("driftline.toml").exists():
        path = "driftline.toml"
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        data = data.get("driftline", data)
        for key, raw in data.items():
            if key not in known:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            values[key] = _coerce(key, raw, hints[key])

    if env.get("KAFKA_BOOTSTRAP_SERVERS"):
        values["bootstrap_servers"] = env["KAFKA_BOOTSTRAP_SERVERS"]
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == "DRIFTLINE_CONFIG":
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name not in known:
            continue  # other tools share the prefix space; unknown env vars are not ours to refuse
        values[name] = _coerce(key, raw, hints[name])

    for key, raw in overrides.items():
        if raw is None:
            continue
        if key not in known:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, raw, hints[key])
    return Settings(**values)
