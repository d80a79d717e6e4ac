"""The model registry is three topics: ``models`` (versions), ``deployments`` (what serves), ``runs``.

There is no registry database: the compacted topics are the state, and this
module reads and writes them for the trainer and the CLI. Serving nodes
follow the same topics themselves (:mod:`serving.store`, through
:class:`driftline.follow.TopicFollower`).

A registry follows each topic it reads: its first read reads the topic from
the start, each later one what arrived since, and every read sees what was
committed when it was called (a run sees the version it just published).
Versions are kept without their artifacts (:func:`driftline.artifacts.metadata`);
:meth:`Registry.model` reads one version's record whole, by where it is on
the topic. Read whole on every call, as they were, the records of every
version a model ever had were in memory at once in each training run: an
artifact of the demo's forest is 5.5 MB, and fourteen runs took a trainer
from 219 to 315 MB. Reads return copies: what the follower keeps is not the
caller's to change.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from driftline import artifacts
from driftline.comparison import Policy
from driftline.control import ControlPublisher
from driftline.errors import ConfigError
from driftline.follow import TopicFollower
from driftline.settings import Settings
from schemas import Codec


def version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


SCHEMAS = {"models": "driftline.ModelRecord", "deployments": "driftline.Deployment", "runs": "driftline.TrainingRun"}


class Registry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.codec = Codec.default()
        self._publisher: ControlPublisher | None = None
        self._followers: dict[str, TopicFollower[dict[str, Any]]] = {}

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for follower in self._followers.values():
            follower.close()
        self._followers.clear()
        if self._publisher is not None:
            self._publisher.close()

    # ------------------------------------------------------------ read
    def _latest(self, short: str) -> TopicFollower[dict[str, Any]]:
        """The topic's follower, caught up with everything committed now."""
        follower = self._followers.get(short)
        if follower is None:
            schema = SCHEMAS[short]
            keep: Callable[[dict[str, Any]], dict[str, Any]] = artifacts.metadata if short == "models" else dict
            follower = self._followers[short] = TopicFollower(
                self.settings, short, lambda raw: keep(self.codec.decode(raw, schema)))
        follower.catch_up()
        return follower

    def models(self, model: str | None = None) -> list[dict[str, Any]]:
        """Every version's record without its artifact (``artifact_bytes`` says its size)."""
        records = [dict(r) for r in self._latest("models").latest.values() if model is None or r["model"] == model]
        return sorted(records, key=lambda r: (r["model"], version_order(r["version"])))

    def model_metadata(self, model: str, version: str) -> dict[str, Any] | None:
        """One version's record without its artifact."""
        record = self._latest("models").latest.get(f"{model}:{version}".encode())
        return dict(record) if record is not None else None

    def model(self, model: str, version: str) -> dict[str, Any] | None:
        """One version's record whole, artifact included (read from the topic by its place there)."""
        key = f"{model}:{version}".encode()
        for _ in range(3):  # compaction may replace the record between finding it and reading it
            follower = self._latest("models")
            if key not in follower.latest:
                return None
            raw = follower.reread(key)
            if raw is not None:
                return self.codec.decode(raw, SCHEMAS["models"])
        return None

    def deployments(self) -> dict[str, dict[str, Any]]:
        return {r["model"]: dict(r) for r in self._latest("deployments").latest.values()}

    def runs(self, model: str | None = None) -> list[dict[str, Any]]:
        """The latest record of every run, oldest first."""
        records = [dict(r) for r in self._latest("runs").latest.values() if model is None or r["model"] == model]
        return sorted(records, key=lambda r: r["started_at"])

    def run(self, run_id: str) -> dict[str, Any] | None:
        record = self._latest("runs").latest.get(run_id.encode())
        return dict(record) if record is not None else None

    # ------------------------------------------------------------ write
    def _send(self, short: str, key: str, record: dict[str, Any]) -> None:
        if self._publisher is None:
            self._publisher = ControlPublisher(self.settings)
        self._publisher.publish(short, key.encode(), self.codec.encode(SCHEMAS[short], record))

    def publish_model(self, record: dict[str, Any]) -> None:
        self._send("models", f"{record['model']}:{record['version']}", record)

    def publish_run(self, record: dict[str, Any]) -> None:
        self._send("runs", record["run_id"], record)

    def deploy(self, model: str, version: str, action: str, *, reason: str = "", actor: str = "") -> dict[str, Any]:
        """Point serving at ``version`` (a new Deployment record; the previous one is kept in it)."""
        if self.model_metadata(model, version) is None:
            raise ConfigError(f"model {model} has no version {version!r}; see 'driftline models list {model}'")
        current = self.deployments().get(model)
        record = {"model": model, "version": version, "created_at": int(time.time() * 1000), "action": action,
                  "previous_version": current["version"] if current else None, "reason": reason, "actor": actor,
                  "rollout": None}
        self._send("deployments", model, record)
        return record

    def start_rollout(self, model: str, version: str, strategy: str, *, share: float, policy: Policy,
                      timeout_s: int, probation_s: int = 0, reason: str = "", actor: str = "") -> dict[str, Any]:
        """Put ``version`` beside the serving version on live traffic (``shadow`` or ``canary``) until the
        rollout controller promotes it or rolls it back (``driftline rollout``)."""
        if strategy not in ("shadow", "canary"):
            raise ConfigError(f"rollout strategy must be shadow or canary (replace is 'models promote'), "
                              f"got {strategy!r}")
        if not 0 < share <= 1:
            raise ConfigError(f"a rollout's share must be in (0, 1], got {share}")
        if self.model_metadata(model, version) is None:
            raise ConfigError(f"model {model} has no version {version!r}; see 'driftline models list {model}'")
        current = self.deployments().get(model)
        if current is None:
            raise ConfigError(f"model {model} has no serving version to roll out against; deploy one first")
        if current["version"] == version:
            raise ConfigError(f"{model} v{version} already serves")
        running = current.get("rollout")
        if running and running["state"] == "running":
            raise ConfigError(f"{model} already has rollout {running['id']} of v{running['challenger']} running")
        now = int(time.time() * 1000)
        rollout = {"id": f"{model}-{version}-{now}", "strategy": strategy, "challenger": version, "share": share,
                   "started_at": now, "margin": policy.margin, "confidence": policy.confidence,
                   "min_pairs": policy.min_pairs, "max_pairs": policy.max_pairs, "timeout_s": timeout_s,
                   "probation_s": probation_s, "state": "running", "evidence": ""}
        record = {**current, "created_at": now, "action": "rollout", "reason": reason, "actor": actor,
                  "rollout": rollout}
        self._send("deployments", model, record)
        return record

    def conclude_rollout(self, model: str, rollout_id: str, decision: str, evidence: dict[str, Any], *,
                         reason: str, actor: str = "rollout-controller") -> dict[str, Any] | None:
        """The rollout's one decision record: promote (the challenger serves) or rollback (the champion
        stays or returns). None when the rollout is not the model's running one any more (decided before:
        a controller restarted after publishing does not publish twice)."""
        current = self.deployments().get(model)
        rollout = (current or {}).get("rollout")
        if current is None or rollout is None or rollout["id"] != rollout_id or rollout["state"] != "running":
            return None
        promote = decision == "promote"
        return self._conclude(current, rollout, rollout["challenger"] if promote else current["version"],
                              "promote" if promote else "rollback", evidence, reason, actor)

    def end_probation(self, model: str, rollout_id: str, evidence: dict[str, Any], *, reason: str,
                      actor: str = "rollout-controller") -> dict[str, Any] | None:
        """Roll a promoted version back to the champion it replaced (its probation failed), once."""
        current = self.deployments().get(model)
        rollout = (current or {}).get("rollout")
        if (current is None or rollout is None or rollout["id"] != rollout_id or rollout["state"] != "promoted"
                or current["version"] != rollout["challenger"]):
            return None
        if current["previous_version"] is None:
            return None
        return self._conclude(current, rollout, current["previous_version"], "rollback", evidence, reason, actor)

    def _conclude(self, current: dict[str, Any], rollout: dict[str, Any], version: str, action: str,
                  evidence: dict[str, Any], reason: str, actor: str) -> dict[str, Any]:
        """The one record that ends a rollout's running or probation: ``version`` serves after it."""
        record = {**current, "created_at": int(time.time() * 1000), "reason": reason, "actor": actor,
                  "action": action, "version": version,
                  "previous_version": current["version"] if version != current["version"] else rollout["challenger"],
                  "rollout": {**rollout, "state": "promoted" if action == "promote" else "rolled_back",
                              "evidence": json.dumps(evidence)}}
        self._send("deployments", current["model"], record)
        return record
