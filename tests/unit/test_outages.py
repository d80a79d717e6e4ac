"""A worker's way through a Kafka failure: a librdkafka call past its deadline, then a restart from committed state.

No broker: the call that never returns is a real librdkafka ``flush`` of a
message to an address nobody listens on (it waits out its whole timeout), and
the restart is :func:`run_through_outages` with ``os.execv`` intercepted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from driftline.broker import free_port
from driftline.cli import service
from driftline.deadline import Pending, within


def unreachable_producer() -> Producer:
    """A producer holding one message for a port nobody listens on: its flush waits out its timeout."""
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.timeout.ms": 600_000,
                         "log_level": 0})
    producer.produce("t", b"x")
    return producer


def test_within_returns_what_the_call_returns_and_raises_what_it_raises():
    assert within(5, lambda: 42, "answer") == 42
    with pytest.raises(ZeroDivisionError):
        within(5, lambda: 1 / 0, "division")


def test_a_librdkafka_call_past_its_deadline_raises_a_kafka_timeout():
    producer = unreachable_producer()
    before = set(threading.enumerate())  # another test's helper of the same name must not count
    with pytest.raises(KafkaException) as raised:
        within(0.5, lambda: producer.flush(600), "flush", grace=0.0)
    assert raised.value.args[0].code() == KafkaError._TIMED_OUT
    assert "flush did not return within 0.5 s" in raised.value.args[0].str()
    assert any(t.name == "kafka flush" and t.is_alive() for t in set(threading.enumerate()) - before), \
        "it gave up while the call still waited (it did not wait the call out)"
    assert len(producer) == 1, "the message is still queued: the flush had not returned"


def test_a_pending_call_keeps_the_deadline_it_started_with():
    """The caller does other work before it asks: the deadline counts from the start, not from the asking.

    Asked after its deadline, the call (which would finish 0.3 s later) is given up at once; a deadline
    counted afresh from the asking (0.5 s) would have waited for it and returned its result.
    """
    release = threading.Event()
    pending = Pending(0.5, lambda: release.wait(60), "slow call", grace=0.0)
    time.sleep(0.6)  # the worker's other stages
    threading.Timer(0.3, release.set).start()
    with pytest.raises(KafkaException) as raised:
        pending.result()
    release.set()
    assert raised.value.args[0].code() == KafkaError._TIMED_OUT


def test_a_pending_call_that_finished_gives_its_result_or_its_error_later():
    done = Pending(5, lambda: 42, "answer")
    failed = Pending(5, lambda: 1 / 0, "division")
    time.sleep(0.1)
    assert done.result() == 42
    with pytest.raises(ZeroDivisionError):
        failed.result()


def test_a_process_exits_though_an_abandoned_call_still_waits():
    """The abandoned helper is a daemon: the interpreter's exit does not wait for the call it is stuck in."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.getcwd()!r})
        from tests.unit.test_outages import unreachable_producer
        from driftline.deadline import Pending, within
        producer = unreachable_producer()
        try:
            within(0.5, lambda: producer.flush(600), "flush", grace=0.0)
        except Exception as exc:
            print("gave up:", exc.args[0].code())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "gave up: -185" in done.stdout  # _TIMED_OUT


class FailingWorker:
    """A worker whose transaction fails as a dead cluster's does (or hangs in librdkafka until the deadline)."""

    def __init__(self, fail) -> None:
        self.fail = fail
        self.closed = False

    def run(self, stop) -> None:
        self.fail()

    def close(self) -> None:
        self.closed = True


class Reexecuted(Exception):
    pass


@pytest.fixture
def execv(monkeypatch):
    """``os.execv`` recorded instead of done, and no real backoff."""
    calls: list[tuple[str, list[str]]] = []

    def record(path, args):
        calls.append((path, args))
        raise Reexecuted

    monkeypatch.setattr(service.os, "execv", record)
    monkeypatch.setattr(service, "MAX_BACKOFF_S", 0.01)
    monkeypatch.delenv(service.RESTARTS_ENV, raising=False)
    return calls


def timed_out() -> None:
    raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "commit_transaction timed out"))


def test_a_failed_transaction_re_executes_the_process_without_closing_its_clients(execv):
    worker = FailingWorker(timed_out)
    with pytest.raises(Reexecuted):
        service.run_through_outages("monitor", lambda: worker, threading.Event())
    assert execv == [(sys.executable, [sys.executable, *sys.orig_argv[1:]])]
    assert os.environ[service.RESTARTS_ENV] == "1", "the new image knows it restarts (and waits for the cluster)"
    assert not worker.closed, "a client stuck in or failed by the outage is left to the old image, not closed"


def test_a_call_stuck_past_its_deadline_takes_the_same_path(execv):
    producer = unreachable_producer()
    worker = FailingWorker(lambda: within(0.3, lambda: producer.flush(600), "send_offsets_to_transaction", grace=0.0))
    with pytest.raises(Reexecuted):
        service.run_through_outages("monitor", lambda: worker, threading.Event())
    assert len(execv) == 1


def test_a_stop_during_the_backoff_ends_the_service_instead(execv):
    stopping = threading.Event()
    stopping.set()
    service.run_through_outages("monitor", lambda: FailingWorker(timed_out), stopping)
    assert execv == []


def test_a_bug_is_not_an_outage(execv):
    worker = FailingWorker(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        service.run_through_outages("monitor", lambda: worker, threading.Event())
    assert execv == [] and worker.closed
