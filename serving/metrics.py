"""Prometheus metrics of a serving node (served on its own ``/metrics``).

With ``--workers N`` every worker process answers ``/metrics`` for the whole
node: ``driftline serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a directory
the workers share, counters and histograms add up across them, and each gauge
says how it combines (``multiprocess_mode``; ignored with one process).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("driftline_serving_requests_total", "Inference requests answered",
                   ["model", "version", "status"])
LATENCY = Histogram("driftline_serving_request_seconds", "Inference request latency (parse, predict, respond)",
                    ["model", "version"],
                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
ROWS = Counter("driftline_serving_rows_total", "Rows scored", ["model", "version"])
IN_FLIGHT = Gauge("driftline_serving_in_flight_requests", "Requests being handled now",
                  multiprocess_mode="livesum")
MODEL_VERSION = Gauge("driftline_serving_model_version_info", "1 for the version this node serves",
                      ["model", "version"], multiprocess_mode="livemax")
SHADOW_SECONDS = Histogram("driftline_serving_shadow_seconds",
                           "A rollout's shadow prediction (after the answer is sent; its cost to the node)",
                           ["model", "version"], buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1))
SHADOW_FAILURES = Counter("driftline_serving_shadow_failures_total", "Shadow predictions that failed",
                          ["model", "version"])
SWAPS = Counter("driftline_serving_swaps_total", "Model versions swapped in", ["model", "action"])
LOAD_FAILURES = Counter("driftline_serving_load_failures_total",
                        "Versions refused (signature, load or warm-up failed)", ["model"])
EMIT_QUEUE = Gauge("driftline_serving_emit_queue_depth", "Prediction events waiting to be produced",
                   multiprocess_mode="livesum")
EMIT_BLOCKED = Counter("driftline_serving_emit_backpressure_total",
                       "Requests that waited for room in the full prediction-event buffer")
EMITTED = Counter("driftline_serving_predictions_emitted_total", "Prediction events acknowledged by Kafka")
EMIT_ERRORS = Counter("driftline_serving_emit_errors_total", "Prediction events Kafka did not acknowledge")


def exposition() -> tuple[bytes, str]:
    """The node's metrics in the text format: this process's, or every worker's when there are several."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def worker_exited(pid: int) -> None:
    """Drop a finished worker's live gauges (its counters still count)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
