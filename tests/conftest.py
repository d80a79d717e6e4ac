"""Fixtures shared by the whole suite.

One real Kafka broker (KRaft, from Maven-resolved jars) serves the session;
each test gets a unique topic prefix, so tests never see each other's data.
Set ``KAFKA_BOOTSTRAP_SERVERS`` to run the suite against an existing cluster.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftline.broker import LocalBroker, free_port
from driftline.errors import BrokerError
from driftline.settings import Settings, load_settings
from driftline.topics import create_topics

REPO_ROOT = Path(__file__).resolve().parents[1]


def _sigterm_is_an_interrupt(signum: int, frame: object) -> None:
    """SIGTERM (a CI runner stopping the job) unwinds like Ctrl-C, so every fixture's teardown runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    signal.signal(signal.SIGTERM, _sigterm_is_an_interrupt)


class KafkaSession:
    """The session's broker and how to reach (and restart) it."""

    def __init__(self, settings: Settings, broker: LocalBroker | None) -> None:
        self.settings = settings
        self.broker = broker

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap_servers


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaSession]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield KafkaSession(load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": external}), None)
        return
    broker, settings, bootstrap = None, None, ""
    for attempt in range(2):  # a port taken between choosing and binding it: retry on fresh ports
        state = tmp_path_factory.mktemp("kafka-state")
        broker_port = free_port()
        controller_port = free_port()
        while controller_port == broker_port:
            controller_port = free_port()
        settings = load_settings(env={}, state_dir=str(state), broker_port=broker_port,
                                 controller_port=controller_port)
        jars = REPO_ROOT / ".driftline" / f"kafka-{settings.kafka_version}" / "libs"
        broker = LocalBroker(settings, jars_dir=jars)
        try:
            bootstrap = broker.up(timeout=120, tied=True)  # dies with this session, however it ends
            break
        except BrokerError:
            broker.down()
            if attempt:
                raise
    try:
        yield KafkaSession(settings.replace(bootstrap_servers=bootstrap), broker)
    finally:
        broker.down()


@pytest.fixture
def settings(kafka: KafkaSession) -> Settings:
    """Settings pointing at the session broker, with this test's own topics created."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    test_settings = kafka.settings.replace(topic_prefix=prefix, partitions=2)
    create_topics(test_settings)
    return test_settings
