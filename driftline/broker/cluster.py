"""A local KRaft cluster of several nodes from the same jars: ``driftline broker up --brokers 3``.

One broker cannot show what replication promises: that a node can crash
while producers, transactions and consumer groups carry on. Three combined
broker+controller nodes do (a controller quorum of 3 survives one loss), with
every internal topic at replication factor 3 and ``min.insync.replicas=2``.
Node *i* (1-based) listens on ``broker_port + 2(i-1)`` and
``controller_port + 2(i-1)`` and keeps its data under ``kafka/node<i>``; the
cluster's size is recorded in ``kafka/cluster.nodes`` so ``down`` and
``status`` find every node again.
"""

from __future__ import annotations

import time
from pathlib import Path

from driftline.broker.local import BrokerStatus, LocalBroker
from driftline.errors import BrokerError
from driftline.kafka_clients import record_bootstrap
from driftline.settings import Settings

MAX_NODES = 5


def recorded_nodes(settings: Settings) -> int:
    """How many nodes ``broker up`` last started here (1 when none was recorded)."""
    try:
        return int((settings.state_path / "kafka" / "cluster.nodes").read_text().strip())
    except (FileNotFoundError, ValueError):
        return 1


class LocalCluster:
    """``nodes`` :class:`LocalBroker` nodes sharing one cluster id and one controller quorum."""

    def __init__(self, settings: Settings, nodes: int = 3, jars_dir: Path | None = None) -> None:
        if not 1 < nodes <= MAX_NODES:
            raise BrokerError(f"a local cluster has 2 to {MAX_NODES} brokers, not {nodes}")
        self.settings = settings
        self.nodes = [LocalBroker(settings, jars_dir, node_id=i, nodes=nodes) for i in range(1, nodes + 1)]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def up(self, timeout: float = 180.0, *, tied: bool = False) -> str:
        """Start every node that is not running, wait until each sees the whole cluster; return the bootstrap list."""
        self.nodes[0].ensure_jars()
        marker = self.settings.state_path / "kafka" / "cluster.nodes"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{len(self.nodes)}\n")
        started = [(node, node.start(tied=tied)) for node in self.nodes]
        deadline = time.monotonic() + timeout
        try:
            for node, process in started:  # a quorum needs its peers: start all, then wait
                node.wait_ready(max(1.0, deadline - time.monotonic()), process)
        except BrokerError:
            self.down()
            raise
        record_bootstrap(self.settings, self.bootstrap)
        return self.bootstrap

    def start(self, node_id: int, timeout: float = 120.0, *, tied: bool = False) -> None:
        """Bring one node back (after :meth:`kill`) and wait until it serves metadata."""
        node = self.nodes[node_id - 1]
        node.wait_ready(timeout, node.start(tied=tied))

    def kill(self, node_id: int) -> None:
        """SIGKILL one node: a crash, as failure tests need it."""
        self.nodes[node_id - 1].kill()

    def down(self, timeout: float = 30.0) -> bool:
        """Stop every node at once (SIGTERM, then SIGKILL after ``timeout``); False when none was running.

        All together, not one by one: the last node alone has no controller
        quorum, and its controlled shutdown would wait for one until killed.
        """
        running = [node for node in self.nodes if node.pid() is not None]
        for node in running:
            node.terminate()
        deadline = time.monotonic() + timeout
        for node in running:
            node.down(max(0.0, deadline - time.monotonic()))
        (self.settings.state_path / "kafka" / "cluster.nodes").unlink(missing_ok=True)
        return bool(running)

    def status(self) -> list[BrokerStatus]:
        return [node.status() for node in self.nodes]
