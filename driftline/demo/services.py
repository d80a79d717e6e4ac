"""driftline services as child processes, the way an operator runs them (one CLI, one process each).

Each service runs in its own process group tied to this process
(:mod:`driftline.processes`): stopping it stops everything it started, and
it dies with its owner even when the owner is SIGKILLed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from driftline.client import http_get
from driftline.processes import kill_group, spawn, stop_group
from driftline.settings import Settings


def service_env(settings: Settings) -> dict[str, str]:
    """Everything a child needs to see the same cluster, topics and keys as the parent."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "DRIFTLINE_TOPIC_PREFIX": settings.topic_prefix, "DRIFTLINE_PARTITIONS": str(settings.partitions),
           "DRIFTLINE_SIGNING_KEY": settings.signing_key, "DRIFTLINE_WINDOW_SECONDS": str(settings.window_seconds),
           "DRIFTLINE_GRACE_SECONDS": str(settings.grace_seconds), "DRIFTLINE_LOG_LEVEL": "INFO"}
    for name in ("verify_key", "signing_key_file", "verify_key_file", "signing_key_id"):
        if getattr(settings, name):
            env[f"DRIFTLINE_{name.upper()}"] = str(getattr(settings, name))
    return env


class Service:
    """One ``driftline ...`` child process with its log file; can be killed and started again."""

    def __init__(self, name: str, args: list[str], settings: Settings, log_dir: Path,
                 health_url: str | None = None) -> None:
        self.name = name
        self.args = args
        self.settings = settings
        self.log_path = log_dir / f"{name}.log"
        self.health_url = health_url
        self.process: subprocess.Popen[bytes] | None = None
        self.pgids: list[int] = []  # every process group this service has had (one per start)
        self.starts = 0

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = spawn([sys.executable, "-m", "driftline.cli.main", *self.args],
                                 env=service_env(self.settings), stdout=log)
        self.pgids.append(self.process.pid)
        self.starts += 1

    def wait_healthy(self, timeout: float = 60.0) -> None:
        if self.health_url is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            if http_get(self.health_url, timeout=1)[0] == 200:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} was not healthy after {timeout:.0f} s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL the whole group: no goodbye, no flush (the chaos test's crash, a second Ctrl-C)."""
        if self.process is not None:
            kill_group(self.process)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait: the clean shutdown every service promises; SIGKILL after ``timeout``."""
        if self.process is None:
            return None
        return stop_group(self.process, timeout)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
