"""Finding a Kafka broker: an existing cluster, the local jars, or a container.

The order is the one DESIGN.md gives: ``KAFKA_BOOTSTRAP_SERVERS`` when set; the
Maven-resolved local broker when a JDK 17+ (and Maven, or cached jars) is
there; a testcontainers ``KafkaContainer`` when a Docker engine answers;
otherwise one sentence saying what is missing.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from driftline.broker.cluster import LocalCluster, recorded_nodes
from driftline.broker.container import docker_available, start_container, stop_container
from driftline.broker.local import LocalBroker, free_port, port_in_use
from driftline.errors import BrokerError
from driftline.kafka_clients import check_reachable, record_bootstrap
from driftline.settings import Settings

__all__ = ["BrokerChoice", "LocalBroker", "LocalCluster", "broker_down", "broker_up", "free_port", "port_in_use"]


@dataclass(frozen=True)
class BrokerChoice:
    kind: str  # external | local | container
    bootstrap: str


def _local_possible(broker: LocalBroker) -> bool:
    return shutil.which("java") is not None and (broker.jars_ready() or shutil.which("mvn") is not None)


def broker_up(settings: Settings, timeout: float = 90.0, brokers: int = 0) -> BrokerChoice:
    """Make sure a broker answers, starting one if needed, and say which.

    ``brokers`` > 1 starts a local cluster of that many nodes; 0 keeps
    whatever size was started here last (one node by default).
    """
    if settings.bootstrap_servers:
        check_reachable(settings)
        return BrokerChoice("external", settings.bootstrap_servers)
    brokers = brokers or recorded_nodes(settings)
    local = LocalBroker(settings)
    if brokers > 1:
        if not _local_possible(local):
            raise BrokerError("a local cluster needs Java 17+ and Maven (or cached jars)")
        if local.pid() is not None:
            raise BrokerError("a single-node broker is running here; 'driftline broker down' it first")
        return BrokerChoice(f"local cluster of {brokers}", LocalCluster(settings, brokers).up(max(timeout, 180.0)))
    if recorded_nodes(settings) > 1:
        raise BrokerError("a local cluster is running here; 'driftline broker down' it first")
    if _local_possible(local):
        return BrokerChoice("local", local.up(timeout))
    if docker_available():
        address, container_id = start_container(keep=True)
        record_bootstrap(settings, address)
        (settings.state_path / "kafka").mkdir(parents=True, exist_ok=True)
        (settings.state_path / "kafka" / "container.id").write_text(container_id)
        return BrokerChoice("container", address)
    if shutil.which("java") is None:
        raise BrokerError(
            "no Kafka broker is available: Java 17+ is not installed and no Docker engine answers; "
            "install a JDK 17+ and Maven, start Docker, or set KAFKA_BOOTSTRAP_SERVERS"
        )
    raise BrokerError(
        "no Kafka broker is available: Maven is not installed (needed once to fetch Kafka's jars) "
        "and no Docker engine answers; install Maven, start Docker, or set KAFKA_BOOTSTRAP_SERVERS"
    )


def broker_down(settings: Settings) -> bool:
    """Stop whatever ``broker_up`` started here. False when nothing was running."""
    container_file = settings.state_path / "kafka" / "container.id"
    if container_file.exists():
        stop_container(container_file.read_text().strip())
        container_file.unlink()
        record_bootstrap(settings, None)
        return True
    nodes = recorded_nodes(settings)
    if nodes > 1:
        return LocalCluster(settings, nodes).down()
    return LocalBroker(settings).down()
