"""Running a worker as a service: /metrics, SIGTERM/SIGINT for a clean stop."""

from __future__ import annotations

import signal
import threading

from prometheus_client import start_http_server


def serve_metrics(port: int) -> None:
    if port:
        start_http_server(port)


def stop_event() -> threading.Event:
    """Set on SIGTERM or SIGINT: the service finishes its current step and closes cleanly."""
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    return stopping
