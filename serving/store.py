"""Which model version answers: followed from ``models`` and ``deployments``, swapped atomically.

A background thread reads both compacted topics from the beginning, then
follows them. For each model's latest Deployment it loads the version
(signature verified first, then a warm-up prediction) *off the request path*
and then replaces one reference: ``current`` is a new dict each time, so a
request that took its model from the old dict finishes on that version.
The versions loaded before stay cached, so a rollback to them is instant.
A version that fails to load is refused once (alert and metric) and the
node keeps serving what it had.

A running rollout (the Deployment's ``rollout``) loads its challenger beside
the champion; :meth:`ModelStore.route` decides per request, by a hash of its
id, who answers and who predicts in the shadow.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline import artifacts
from driftline.errors import BrokerError
from driftline.follow import TopicFollower
from driftline.modeling import Model
from driftline.settings import Settings
from schemas import Codec, FeatureSpec
from serving import metrics

log = logging.getLogger(__name__)
KEEP_VERSIONS = 3


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    task: str
    model: Model
    spec: FeatureSpec
    loaded_at: float


@dataclass(frozen=True)
class Rollout:
    """A running rollout as a node applies it: the challenger loaded beside the champion."""

    id: str
    strategy: str  # shadow | canary
    share: float
    challenger: LoadedModel


@dataclass(frozen=True)
class Routed:
    """One request's versions: ``answer`` is returned (its ``role``: champion or challenger); ``shadow``
    predicts the same rows off the request path, for the rollout's paired comparison only."""

    answer: LoadedModel
    role: str
    shadow: LoadedModel | None
    rollout_id: str


def bucket(routing_key: str) -> float:
    """A request's place in [0, 1): uniform over keys, the same for the same key on every node."""
    digest = hashlib.blake2b(routing_key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def warm_up_row(spec: FeatureSpec) -> dict[str, Any]:
    """A plausible row from the spec (midpoints, first categories): exercises every code path once."""
    row: dict[str, Any] = {}
    for f in spec.features:
        if spec.kinds()[f.name] == "numeric":
            low, high = f.min if f.min is not None else 0.0, f.max if f.max is not None else 0.0
            row[f.name] = (low + high) / 2
        else:
            row[f.name] = f.domain[0] if f.domain else ""
    return row


class ModelStore:
    def __init__(self, settings: Settings, models: list[str] | None = None,
                 on_load_failed: Callable[[str, str, str], None] | None = None) -> None:
        self.settings = settings
        self.only = set(models) if models else None
        self.on_load_failed = on_load_failed
        codec = Codec.default()
        # every version's metadata; a version's artifact is read when it is loaded (kept, they were megabytes
        # each, and a node grew by one with each retraining)
        self._records = TopicFollower(settings, "models",
                                      lambda raw: artifacts.metadata(codec.decode(raw, "driftline.ModelRecord")))
        self._codec = codec
        self._deployments = TopicFollower(settings, "deployments",
                                          lambda raw: codec.decode(raw, "driftline.Deployment"))
        self.current: dict[str, LoadedModel] = {}
        self.rollouts: dict[str, Rollout] = {}  # replaced whole, like ``current``
        self.cache: dict[str, dict[str, LoadedModel]] = {}
        self.wanted: dict[str, dict[str, Any]] = {}
        self.failed: dict[tuple[str, str], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-store", daemon=True)
        self.caught_up = False

    # ------------------------------------------------------------ reads (request path)
    def get(self, name: str, version: str | None = None) -> LoadedModel | None:
        if version is None:
            return self.current.get(name)
        return self.cache.get(name, {}).get(version)

    def versions(self, name: str) -> list[str]:
        return sorted(self.cache.get(name, {}))

    def known(self, name: str) -> bool:
        return name in self.wanted or name in self.current

    @property
    def ready(self) -> bool:
        if not self.caught_up:
            return False
        names = self.only if self.only is not None else set(self.wanted)
        return all(name in self.current for name in names)

    # ------------------------------------------------------------ the follower thread
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # a store stepped by its owner (tests) never started the thread
            self._thread.join(timeout=10)
        for follower in (self._records, self._deployments):
            follower.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # a bad record or a broker hiccup must not end following
                log.exception("model store step failed")
                time.sleep(0.5)

    def step(self, timeout: float = 0.05) -> None:
        self._records.poll(timeout, 50)
        for deployment in self._deployments.poll(timeout, 500):
            if self.only is None or deployment["model"] in self.only:
                self.wanted[deployment["model"]] = deployment
        if self._records.caught_up and self._deployments.caught_up:
            self.caught_up = True
        if not self.caught_up:
            return  # apply only the latest deployment of each model, once everything is read
        for name, deployment in list(self.wanted.items()):
            self._apply(name, deployment)

    def _apply(self, name: str, deployment: dict[str, Any]) -> None:
        self._apply_champion(name, deployment)
        self._apply_rollout(name, deployment.get("rollout"))

    def _apply_champion(self, name: str, deployment: dict[str, Any]) -> None:
        version = deployment["version"]
        serving = self.current.get(name)
        if serving is not None and serving.version == version:
            return
        loaded = self._loaded(name, version)
        if loaded is None:
            return
        self.current = {**self.current, name: loaded}  # the swap: one reference
        metrics.SWAPS.labels(name, deployment["action"]).inc()
        if serving is not None:
            # 0 first: with several worker processes the shared value outlives remove()
            metrics.MODEL_VERSION.labels(name, serving.version).set(0)
            metrics.MODEL_VERSION.remove(name, serving.version)
        metrics.MODEL_VERSION.labels(name, version).set(1)
        log.info("%s now serves v%s (%s, was v%s)", name, version, deployment["action"],
                 serving.version if serving else "-")

    def _apply_rollout(self, name: str, rollout: dict[str, Any] | None) -> None:
        """A running rollout's challenger is loaded beside the champion; any other state removes it."""
        active = self.rollouts.get(name)
        if rollout is None or rollout["state"] != "running":
            if active is not None:
                self.rollouts = {k: v for k, v in self.rollouts.items() if k != name}
                log.info("%s: rollout %s ended (%s)", name, active.id, rollout["state"] if rollout else "cancelled")
            return
        if active is not None and active.id == rollout["id"]:
            return
        challenger = self._loaded(name, rollout["challenger"])
        if challenger is None:
            return
        self.rollouts = {**self.rollouts, name: Rollout(rollout["id"], rollout["strategy"], rollout["share"],
                                                        challenger)}
        log.info("%s: rollout %s of v%s (%s, share %.3g)", name, rollout["id"], challenger.version,
                 rollout["strategy"], rollout["share"])

    def _loaded(self, name: str, version: str) -> LoadedModel | None:
        """The version from the cache, or loaded (verified, warmed up) into it; None while its record has
        not arrived or after it was refused (alert and metric, once)."""
        if (name, version) in self.failed:
            return None
        loaded = self.cache.get(name, {}).get(version)
        if loaded is not None:
            return loaded
        key = f"{name}:{version}".encode()
        if key not in self._records.latest:
            return None  # the ModelRecord has not arrived yet
        try:
            raw = self._records.reread(key)
        except BrokerError as exc:  # not the version's fault: try again on the next step
            log.warning("%s v%s not loaded yet: %s", name, version, exc)
            return None
        if raw is None:
            return None  # replaced on the topic since: the follower reads the newer record next
        serving = self.current.get(name)
        try:
            loaded = self._load(self._codec.decode(raw, "driftline.ModelRecord"))
        except Exception as exc:  # bad signature, unpickling or warm-up: refuse, keep serving
            reason = f"{type(exc).__name__}: {exc}"
            self.failed[(name, version)] = reason
            metrics.LOAD_FAILURES.labels(name).inc()
            log.error("%s v%s refused: %s (still serving v%s)", name, version, reason,
                      serving.version if serving else "-")
            if self.on_load_failed is not None:
                self.on_load_failed(name, version, reason)
            return None
        versions = self.cache.setdefault(name, {})
        versions[version] = loaded
        rollout = self.rollouts.get(name)
        keep = {v.version for v in (serving, rollout.challenger if rollout else None) if v is not None}
        for old in sorted(versions, key=lambda v: versions[v].loaded_at)[:-KEEP_VERSIONS]:
            if old not in keep and old != version:
                del versions[old]
        return loaded

    # ------------------------------------------------------------ routing (request path)
    def route(self, name: str, routing_key: str) -> Routed | None:
        """Who answers this request and who predicts it in the shadow, by the model's rollout (if any).

        Deterministic by ``routing_key`` (the request's id): a caller's retry lands on the same version."""
        champion = self.current.get(name)
        if champion is None:
            return None
        rollout = self.rollouts.get(name)
        if rollout is None:
            return Routed(champion, "champion", None, "")
        picked = bucket(routing_key) < rollout.share
        if rollout.strategy == "canary" and picked:
            return Routed(rollout.challenger, "challenger", champion, rollout.id)
        return Routed(champion, "champion", rollout.challenger if picked else None, rollout.id)

    def _load(self, record: dict[str, Any]) -> LoadedModel:
        model = artifacts.load(record, self.settings)
        spec = FeatureSpec.from_avro(record["spec"])
        scores, _ = model.predict([warm_up_row(spec)])
        if scores.shape != (1,) or not np.all(np.isfinite(scores)):
            raise ValueError(f"warm-up prediction was {scores!r}, not one finite number")
        return LoadedModel(record["model"], record["version"], record["task"], model, spec, time.monotonic())
