"""Reading control topics is all or an error: a partial read never passes for the state."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer

from driftline.follow import read_compacted
from driftline.kafka_clients import common_config

pytestmark = pytest.mark.integration


def test_read_compacted_returns_every_committed_key(settings):
    topic = settings.topic("profiles")
    producer = Producer(common_config(settings))
    for i in range(300):
        producer.produce(topic, key=f"k{i % 100}".encode(), value=str(i).encode())
    producer.produce(topic, key=b"k0", value=None)  # a tombstone deletes
    assert producer.flush(10) == 0
    state = read_compacted(settings, topic)
    assert len(state) == 99 and state[b"k99"] == b"299"


def test_an_open_transaction_is_not_state(settings):
    """Records of a transaction still open are above the committed end: not read, and no wait for them."""
    topic = settings.topic("profiles")
    producer = Producer({**common_config(settings), "transactional.id": f"open-{uuid.uuid4().hex}"})
    producer.init_transactions(10)
    producer.begin_transaction()
    producer.produce(topic, key=b"m", value=b"uncommitted")
    producer.flush(10)
    try:
        assert read_compacted(settings, topic, timeout=5.0) == {}
    finally:
        producer.abort_transaction(10)


def test_the_console_names_a_topic_that_does_not_exist(settings):
    from driftline.console.state import _Stream
    from driftline.errors import ConfigError

    with pytest.raises(ConfigError, match=r"topic nowhere\.predictions does not exist"):
        _Stream(settings.replace(topic_prefix="nowhere."), "predictions", 0)
