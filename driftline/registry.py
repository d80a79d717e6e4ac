"""The model registry is three topics: ``models`` (versions), ``deployments`` (what serves), ``runs``.

There is no registry database: the compacted topics are the state, and this
module reads and writes them for the trainer and the CLI. Serving nodes
follow the same topics themselves (:mod:`serving.store`, through
:class:`driftline.follow.TopicFollower`).
"""

from __future__ import annotations

import time
from typing import Any

from driftline.control import ControlPublisher
from driftline.errors import ConfigError
from driftline.follow import read_compacted
from driftline.settings import Settings
from schemas import Codec


def version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


class Registry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.codec = Codec.default()
        self._publisher: ControlPublisher | None = None

    # ------------------------------------------------------------ read
    def _read(self, short: str, schema: str) -> list[dict[str, Any]]:
        stored = read_compacted(self.settings, self.settings.topic(short))
        return [self.codec.decode(v, schema) for v in stored.values()]

    def models(self, model: str | None = None) -> list[dict[str, Any]]:
        records = [r for r in self._read("models", "driftline.ModelRecord") if model is None or r["model"] == model]
        return sorted(records, key=lambda r: (r["model"], version_order(r["version"])))

    def model(self, model: str, version: str) -> dict[str, Any] | None:
        raw = read_compacted(self.settings, self.settings.topic("models")).get(f"{model}:{version}".encode())
        return self.codec.decode(raw, "driftline.ModelRecord") if raw is not None else None

    def deployments(self) -> dict[str, dict[str, Any]]:
        return {r["model"]: r for r in self._read("deployments", "driftline.Deployment")}

    def runs(self, model: str | None = None) -> list[dict[str, Any]]:
        """The latest record of every run, oldest first."""
        records = [r for r in self._read("runs", "driftline.TrainingRun") if model is None or r["model"] == model]
        return sorted(records, key=lambda r: r["started_at"])

    def run(self, run_id: str) -> dict[str, Any] | None:
        raw = read_compacted(self.settings, self.settings.topic("runs")).get(run_id.encode())
        return self.codec.decode(raw, "driftline.TrainingRun") if raw is not None else None

    # ------------------------------------------------------------ write
    def _send(self, short: str, key: str, schema: str, record: dict[str, Any]) -> None:
        if self._publisher is None:
            self._publisher = ControlPublisher(self.settings)
        self._publisher.publish(short, key.encode(), self.codec.encode(schema, record))

    def publish_model(self, record: dict[str, Any]) -> None:
        self._send("models", f"{record['model']}:{record['version']}", "driftline.ModelRecord", record)

    def publish_run(self, record: dict[str, Any]) -> None:
        self._send("runs", record["run_id"], "driftline.TrainingRun", record)

    def deploy(self, model: str, version: str, action: str, *, reason: str = "", actor: str = "") -> dict[str, Any]:
        """Point serving at ``version`` (a new Deployment record; the previous one is kept in it)."""
        if self.model(model, version) is None:
            raise ConfigError(f"model {model} has no version {version!r}; see 'driftline models list {model}'")
        current = self.deployments().get(model)
        record = {"model": model, "version": version, "created_at": int(time.time() * 1000), "action": action,
                  "previous_version": current["version"] if current else None, "reason": reason, "actor": actor}
        self._send("deployments", model, "driftline.Deployment", record)
        return record
