"""Kafka in a Docker container via testcontainers, for machines with a Docker engine.

Only used when no cluster is configured and the jar-based broker cannot run
(no JDK or Maven). The container lives as long as the process that started it
(testcontainers' reaper removes it), which suits test sessions; the CLI's
``broker up`` disables the reaper so the broker outlives the command and
``broker down`` removes it by its recorded id.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from driftline.errors import BrokerError

IMAGE = "apache/kafka:4.1.1"


def docker_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_container(keep: bool = False) -> tuple[str, str]:
    """Start ``apache/kafka`` in KRaft mode; return (bootstrap address, container id)."""
    try:
        from testcontainers.kafka import KafkaContainer
    except ImportError:
        raise BrokerError(
            "a Docker engine answers but testcontainers is not installed; "
            "pip install 'driftline[docker]'"
        ) from None
    if keep:
        os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    container = KafkaContainer(IMAGE).with_kraft()
    container.start()
    return container.get_bootstrap_server(), container.get_wrapped_container().id


def stop_container(container_id: str) -> None:
    subprocess.run(["docker", "rm", "-f", container_id], capture_output=True, timeout=60)
