"""Running a worker as a service: /metrics, SIGTERM/SIGINT for a clean stop."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Protocol

from confluent_kafka import KafkaException
from prometheus_client import start_http_server

from driftline.errors import BrokerError
from driftline.settings import Settings

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 30.0


class Worker(Protocol):
    def run(self, stop: Callable[[], bool]) -> None: ...

    def close(self) -> None: ...


def serve_metrics(port: int) -> None:
    if port:
        start_http_server(port)


def stop_event() -> threading.Event:
    """Set on SIGTERM or SIGINT: the service finishes its current step and closes cleanly.

    SIGUSR1 writes every thread's stack to stderr without stopping anything:
    a service that does not answer SIGTERM (a client library call that does
    not return) says where it is waiting, as ``jstack`` would for the JVM.
    """
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    return stopping


RESTARTS_ENV = "DRIFTLINE_SERVICE_RESTARTS"


def run_through_outages(name: str, build: Callable[[], Worker], stopping: threading.Event) -> None:
    """Run a worker until ``stopping``; a Kafka failure restarts the process from committed state.

    A transactional worker that loses its cluster mid-transaction cannot
    commit, and its in-memory state then holds work Kafka will abort. The one
    recovery proven exact is the one after a crash (SIGKILL tests): a new
    process whose producer, with the same transactional id, fences the old
    one and whose consumers resume from the committed offsets. Rebuilding the
    clients inside the same process was tried and is not that: a static
    consumer group member that outlived the outage fenced its successor and
    the monitor stalled. So on a Kafka failure the process re-executes itself
    (same pid, same arguments, fresh clients) after a backoff that doubles up
    to 30 s; the new image waits for the cluster before starting
    (:func:`wait_for_cluster`). Only a stop request ends it.
    """
    worker: Worker | None = None
    try:
        worker = build()  # its clients may meet the outage first (init_transactions, a restore)
        worker.run(stopping.is_set)
    except (KafkaException, BrokerError) as exc:  # the cluster, not our data: start again once it answers
        restarts = int(os.environ.get(RESTARTS_ENV, "0")) + 1
        backoff = min(MAX_BACKOFF_S, 2.0 ** min(restarts, 5))
        reason = exc.args[0].str() if isinstance(exc, KafkaException) and exc.args else str(exc)
        log.warning("%s: Kafka failed (%s); restarting from committed state in %.0f s (restart %d)",
                    name, reason, backoff, restarts)
        if stopping.wait(backoff):
            return
        os.environ[RESTARTS_ENV] = str(restarts)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    except BaseException:
        if worker is not None:
            worker.close()
        raise
    else:
        worker.close()


def wait_for_cluster(settings: Settings, stopping: threading.Event, name: str) -> None:
    """After a restart for an outage: create/check the topics until the cluster answers (or a stop)."""
    from driftline.topics import create_topics

    if RESTARTS_ENV not in os.environ:
        create_topics(settings)  # a first start: a cluster that does not answer is one clear error
        return
    backoff = 1.0
    while not stopping.is_set():
        try:
            create_topics(settings)
            return
        except (KafkaException, BrokerError) as exc:
            log.warning("%s: waiting for the cluster (%s)", name, exc)
            stopping.wait(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)
