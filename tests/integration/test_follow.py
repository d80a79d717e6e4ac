"""Reading control topics is all or an error: a partial read never passes for the state."""

from __future__ import annotations

import time
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


def test_catch_up_reads_what_arrived_since_and_located_records_read_back(settings):
    """A follower caught up sees every committed write made before the call, each key's latest record is
    where ``located`` says, and a place whose record is another key's (replaced) reads as None."""
    from driftline.follow import TopicFollower, read_record

    topic = settings.topic("profiles")
    producer = Producer(common_config(settings))
    follower = TopicFollower(settings, "profiles", lambda raw: raw.decode())
    try:
        follower.catch_up()
        assert follower.latest == {}
        for round_ in range(3):  # each call reads only what arrived since the last
            for i in range(50):
                producer.produce(topic, key=f"k{i}".encode(), value=f"{round_}:{i}".encode())
            assert producer.flush(10) == 0
            follower.catch_up()
            assert len(follower.latest) == 50 and follower.latest[b"k7"] == f"{round_}:7"
        producer.produce(topic, key=b"k3", value=None)
        assert producer.flush(10) == 0
        follower.catch_up()
        assert b"k3" not in follower.latest and b"k3" not in follower.located
        for key in (b"k0", b"k49"):
            assert read_record(settings, topic, *follower.located[key], key) == follower.latest[key].encode()
        assert read_record(settings, topic, *follower.located[b"k0"], b"k1") is None
    finally:
        follower.close()


def test_the_registry_keeps_versions_without_artifacts_and_reads_one_whole(settings):
    """Every version listed (its artifact's size, not its bytes), one version read whole by its place on the
    topic, and a version published after the registry's first read is seen by the next."""
    import hashlib

    import numpy as np

    from driftline import artifacts
    from driftline.registry import Registry

    signed = settings.replace(signing_key="registry-test-secret-0123456789")
    blobs = {str(v): np.random.default_rng(v).bytes(300_000) for v in range(1, 4)}
    with Registry(signed) as registry:
        for version, blob in blobs.items():
            assert registry.model_metadata("m", version) is None
            registry.publish_model(artifacts.sign({
                "model": "m", "version": version, "created_at": 1, "task": "classification",
                "flavor": artifacts.FLAVOR, "parent_version": None, "run_id": None, "compression": "zlib",
                "artifact": blob, "artifact_sha256": hashlib.sha256(blob).hexdigest(), "spec": {"model": "m", "version": version, "features": []},
                "metrics": {}, "status": "validated", "calibration": None}, signed))
            assert registry.model_metadata("m", version)["artifact_bytes"] == len(blob)
        listed = registry.models("m")
        assert [r["version"] for r in listed] == ["1", "2", "3"]
        assert all("artifact" not in r and r["artifact_bytes"] == 300_000 for r in listed)
        for version, blob in blobs.items():
            whole = registry.model("m", version)
            assert whole["artifact"] == blob
            artifacts.verify(whole, signed)  # the record read back is the signed one, byte for byte
        assert registry.model("m", "4") is None


def test_poll_returns_every_fresh_record_even_one_parsed_to_nothing(settings):
    """A follower that only counts records (the demo counts closed windows so) parses them to None: each is
    still fresh. (The follower's refactor in session 19 dropped them, and the demo counted no window.)"""
    from driftline.follow import TopicFollower

    topic = settings.topic("stats")
    producer = Producer(common_config(settings))
    for i in range(30):
        producer.produce(topic, key=f"w{i}".encode(), value=b"x")
    producer.produce(topic, key=None, value=b"keyless")  # no state: not fresh
    assert producer.flush(10) == 0
    follower = TopicFollower(settings, "stats", lambda raw: None)
    try:
        fresh: list = []
        deadline = time.monotonic() + 30
        while len(fresh) < 30 and time.monotonic() < deadline:
            fresh += follower.poll(0.1, 500)
        follower.poll(0.5, 500)
        assert fresh == [None] * 30 and len(follower.latest) == 30
    finally:
        follower.close()
