"""A real 3-node KRaft cluster and its failures: a broker crash, and the whole cluster down for 20 s.

Topics have 3 replicas and ``min.insync.replicas=2`` (as a production
cluster would), so one node can die without losing or refusing a write.
These tests are the slower group (``-m cluster``); ``make test`` runs them.
"""

from __future__ import annotations

import random
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from driftline.broker import LocalCluster
from driftline.deadletter import DeadLetter
from driftline.settings import load_settings
from driftline.topics import create_topics
from schemas import Codec
from tests.integration.helpers import read_topic
from tests.integration.serving_helpers import publish_first_version, start_node, stop_node
from tests.integration.test_monitor import (
    assert_exact_and_alerted_once,
    produce_stream,
    publish_profile,
    start_monitor,
    stop,
    stream_through_a_failure,
)

pytestmark = [pytest.mark.integration, pytest.mark.cluster]
REPO_ROOT = Path(__file__).resolve().parents[2]
OUTAGE_S = 20.0


def free_port_block(nodes: int) -> tuple[int, int]:
    """Client and controller base ports such that every node's pair (base + 2i, base + 1 + 2i) is free.

    Below Linux's ephemeral range (32768 and up): there, any client's outgoing connection can take a
    port between this check and a node's bind (or while a node is down for a failure test), and the
    node then fails to start with "Address already in use" (seen once in 8 runs under a busy machine).
    """
    for _ in range(50):
        base = random.randrange(20_000, 32_000 - 2 * nodes, 2)
        if all(can_bind(base + k) for k in range(2 * nodes)):
            return base, base + 1
    raise RuntimeError("no free block of ports")


def can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextmanager
def logged_monitor(settings, instance: str, log: Path) -> Iterator[subprocess.Popen]:
    """A monitor writing its stderr to ``log`` (not a pipe: nobody reads it while a failure makes it talk),
    stopped on the way out (SIGTERM; its stacks into the failure if it does not stop)."""
    with log.open("w") as out:
        monitor = start_monitor(settings, instance=instance, stderr=out)
        try:
            yield monitor
        finally:
            out.flush()
            stop(monitor, log)


def said(log: Path) -> list[str]:
    """The monitor's own lines in ``log`` (librdkafka's start with %)."""
    return [ln for ln in log.read_text().splitlines() if not ln.startswith("%")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    broker_port, controller_port = free_port_block(3)
    settings = load_settings(env={}, state_dir=str(tmp_path_factory.mktemp("cluster-state")),
                             broker_port=broker_port, controller_port=controller_port, replication_factor=3)
    jars = REPO_ROOT / ".driftline" / f"kafka-{settings.kafka_version}" / "libs"
    local = LocalCluster(settings, 3, jars_dir=jars)
    try:
        bootstrap = local.up(timeout=240, tied=True)  # dies with the session however it ends
        yield local, settings.replace(bootstrap_servers=bootstrap)
    finally:
        local.down(timeout=15)


@pytest.fixture
def on_cluster(cluster):
    """This test's topics on the cluster (3 replicas, min ISR 2) and a published profile for model m."""
    local, base = cluster
    for node in local.nodes:  # a previous test may have left a node down
        if node.pid() is None:
            local.start(node.node_id, tied=True)
    settings = base.replace(topic_prefix=f"c{uuid.uuid4().hex[:8]}.", partitions=2)
    create_topics(settings)
    return local, settings, publish_profile(settings)


def leader_of(settings, topic: str, partition: int) -> int:
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    return admin.list_topics(topic, timeout=10).topics[topic].partitions[partition].leader


def sdk_events(settings, model: str) -> list[dict]:
    """``model``'s events on the predictions topic, each once: a producer's repeat must have been dead-lettered
    by the monitor as one (:func:`repeats_dead_lettered`)."""
    codec = Codec.default()
    decoded = [codec.decode(m.value(), "driftline.Prediction")
               for m in read_topic(settings, settings.topic("predictions"), timeout=30)]
    return [e for e in decoded if e["model"] == model]


def whole_events_once(events: list[dict]) -> list[dict]:
    """The events less their repeats, each repeat the same whole event as its original: the idempotent
    producer may send an event twice when the whole cluster goes away under it (see
    :func:`repeats_dead_lettered`), never a part of one. No monitor runs here; the test above shows it
    counts such a repeat once."""
    first: dict[str, dict] = {}
    for event in events:
        earlier = first.setdefault(event["request_ids"][0], event)
        assert earlier == event, "a repeat is its original whole"
    return list(first.values())


def repeats_dead_lettered(settings) -> tuple[list[dict], int]:
    """The predictions topic's events less their repeats, and how many repeats there were; each repeat must
    be in the dead-letter topic as one. An idempotent producer can send an event twice when the cluster
    goes away under it (librdkafka bumps its epoch and re-sends what was in flight: confluentinc/librdkafka
    #4953; seen once in six runs of the outage test), and then the monitor must count it once."""
    codec = Codec.default()
    first: dict[str, dict] = {}
    repeats = set()
    for m in read_topic(settings, settings.topic("predictions"), timeout=30):
        event = codec.decode(m.value(), "driftline.Prediction")
        if event["request_ids"][0] in first:
            repeats.add((m.partition(), m.offset()))
        else:
            first[event["request_ids"][0]] = event
    dead = [DeadLetter.from_message(m.value(), m.key(), m.headers())
            for m in read_topic(settings, settings.topic("deadletter"), timeout=5)]
    assert {(d.source_partition, d.source_offset) for d in dead if d.reason.startswith("a repeat of")} == \
        repeats, "every event a producer sent twice was dead-lettered as a repeat, and only those"
    return list(first.values()), len(repeats)


def test_a_broker_crash_loses_and_duplicates_nothing(on_cluster, tmp_path):
    """SIGKILL the leader of a partition mid-stream: every event once, windows exact, no alert twice."""
    local, settings, profile = on_cluster
    topic = settings.topic("predictions")
    assert {len(p.replicas) for p in AdminClient({"bootstrap.servers": settings.bootstrap_servers})
            .list_topics(topic, timeout=10).topics[topic].partitions.values()} == {3}
    log = tmp_path / "monitor.log"  # read into any failure below: what the monitor went through
    with logged_monitor(settings, "crash", log) as monitor:
        sent, expected, got = stream_through_a_failure(
            settings, profile, lambda: local.kill(leader_of(settings, topic, 0)), timeout=120)
    lines = "\n".join(said(log))
    assert monitor.returncode == 0, lines[-3000:]
    events, _ = repeats_dead_lettered(settings)
    ids = [rid for e in events for rid in e["request_ids"] if e["model"] == "m"]
    assert len(sent) == 160 and len([e for e in events if e["model"] == "m"]) == 160 + 40, \
        "every event produced is on the topic (the 40 advance the watermark)"
    assert len(ids) == len(set(ids)), "no row twice but in a repeat of its whole event"
    assert set(expected) <= set(got), f"{len(got)} of {len(expected)} windows closed; the monitor said:\n" + \
        lines[-4000:]
    assert_exact_and_alerted_once(settings, expected, got)


@pytest.mark.timeout(600)
def test_the_monitor_across_a_whole_cluster_outage(on_cluster, tmp_path):
    """Every node SIGKILLed for 20 s mid-stream and mid-window, then restarted: every window equals the
    offline computation, with no alert twice, and the monitor stops on SIGTERM.

    Whether the outage fails one of its transactions is a race: usually one is open (or a fetched batch
    is still to be processed) and the monitor re-executes itself from committed state; sometimes (1 run
    in 8 here) the kill falls between two transactions and its consumers simply wait for the cluster.
    The windows must be exact either way. The restart path itself, and the deadline on the librdkafka
    call that can hang when the group coordinator dies (``driftline.deadline``), are tested in
    ``tests/unit/test_outages.py``."""
    local, settings, profile = on_cluster
    log = tmp_path / "monitor.log"

    def outage() -> None:
        for node in local.nodes:
            node.kill()
        time.sleep(OUTAGE_S)
        local.up(timeout=240, tied=True)

    with logged_monitor(settings, "outage", log) as monitor:
        # A first start that finds no cluster is one clear error by design: the outage must come after it.
        deadline = time.monotonic() + 120
        while "monitor started" not in log.read_text() and time.monotonic() < deadline:
            assert monitor.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        sent, expected, got = stream_through_a_failure(settings, profile, outage, timeout=240)
    everything = log.read_text().splitlines()
    assert monitor.returncode == 0, "\n".join(said(log)[-40:])
    assert any(ln.startswith("%") and "Connection refused" in ln for ln in everything), \
        "the monitor's clients lost the cluster"
    assert len(sent) == 160
    events, _ = repeats_dead_lettered(settings)
    ids = [rid for e in events if e["model"] == "m" for rid in e["request_ids"]]
    assert len(ids) == len(set(ids)), "no row twice but in a repeat of its whole event"
    assert_exact_and_alerted_once(settings, expected, got)


@pytest.mark.timeout(900)
def test_the_whole_cluster_down_for_20_s(on_cluster, tmp_path):
    """Every node SIGKILLed for 20 s mid-stream, then restarted: the SDK blocks on its bounded queue and
    resumes, the serving node answers every request throughout and its events arrive afterwards,
    and nothing is lost or doubled. (The monitor across the same outage: the test above.)"""
    local, base, _ = on_cluster
    settings = base.replace(signing_key="cluster-test-secret")
    publish_first_version(settings)
    # Logs to a file: a pipe nobody reads fills up with the outage's connection errors and blocks the writer.
    node_log = (tmp_path / "node.log").open("w")
    node, url = start_node(settings, stderr=node_log)
    bound = 50  # the SDK's local queue (messages): what a producer may hold while the cluster is away
    sent: list = []
    progress: list[float] = []
    answered: dict[str, int] = {}
    load_done = threading.Event()

    def load() -> None:  # ~20 requests/s to the node, each with its own request id
        from driftline.client import infer_body
        from tests.integration.serving_helpers import row_columns

        with httpx.Client(timeout=10) as client:
            i = 0
            while not load_done.is_set():
                rid = f"outage-{i}"
                try:
                    status = client.post(f"{url}/v2/models/loans/infer",
                                         json=infer_body(row_columns(i), request_id=rid)).status_code
                except httpx.HTTPError:
                    status = -1
                answered[rid] = status
                i += 1
                time.sleep(0.05)

    def produce() -> None:
        sent.extend(produce_stream(settings, events=300, rows=20, shift_from_window=None, pace=0.03,
                                   on_event=lambda: progress.append(time.monotonic()),
                                   **{"queue.buffering.max.messages": bound}))

    producer = threading.Thread(target=produce)
    loader = threading.Thread(target=load)
    try:
        producer.start()
        loader.start()
        time.sleep(3.0)
        for n in local.nodes:
            n.kill()
        down_at = time.monotonic()
        time.sleep(OUTAGE_S)
        during = sum(1 for t in progress if down_at < t)  # events the SDK accepted while nothing could take them
        print(f"# outage: {during} SDK events accepted, {len(answered)} requests so far", flush=True)
        local.up(timeout=240, tied=True)
        print(f"# cluster back after {time.monotonic() - down_at:.1f} s", flush=True)
        producer.join(timeout=240)
        print(f"# producer done after {time.monotonic() - down_at:.1f} s", flush=True)
        assert not producer.is_alive(), "the producer resumed and finished"
        time.sleep(2.0)
        load_done.set()
        loader.join(timeout=30)
    finally:
        load_done.set()
        node_exit = stop_node(node, timeout=90)
        lines = [ln for ln in (tmp_path / "node.log").read_text().splitlines() if not ln.startswith("%")]
        print("# node:", "\n# ".join(lines[-10:]), flush=True)
    assert during <= bound + 5, f"the SDK kept accepting events with no broker ({during}): its queue is not bounded"
    assert len(sent) == 300
    statuses = set(answered.values())
    assert statuses == {200}, f"the node answered every request during the outage: {statuses}"
    events = whole_events_once(sdk_events(settings, "m"))
    assert len(events) == 300 + 40, "every SDK event arrived"
    served = [rid for e in whole_events_once(sdk_events(settings, "loans")) for rid in e["request_ids"]]
    assert sorted(served) == sorted(answered), "every answered request's prediction event arrived"
    assert node_exit == 0

