"""The local broker's start, against its real jars: a broker given up on is not left running."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftline.broker import LocalBroker, free_port
from driftline.errors import BrokerError
from driftline.settings import load_settings

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]


def running_with(marker: str) -> list[int]:
    """Processes whose command line names ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:  # gone meanwhile
                continue
    return found


def test_a_broker_that_does_not_answer_in_time_is_stopped_not_left_behind_the_error(tmp_path):
    """No JVM starts Kafka in half a second: the call gives up, and the process it started is gone."""
    settings = load_settings(env={}, state_dir=str(tmp_path / "state"), broker_port=free_port(),
                             controller_port=free_port())
    broker = LocalBroker(settings, REPO_ROOT / ".driftline" / f"kafka-{settings.kafka_version}" / "libs")
    try:
        with pytest.raises(BrokerError, match=r"did not answer within 0s.*the broker it started is stopped"):
            broker.up(timeout=0.5)  # not tied: only up() itself may stop it
        assert broker.pid() is None and not broker.pid_file.exists()
        assert running_with(str(broker.properties_file)) == [], "no java process of this broker is left"
    finally:
        broker.down()
