"""Prometheus metrics of a serving node (served on its own ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("driftline_serving_requests_total", "Inference requests answered",
                   ["model", "version", "status"])
LATENCY = Histogram("driftline_serving_request_seconds", "Inference request latency (parse, predict, respond)",
                    ["model", "version"],
                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
ROWS = Counter("driftline_serving_rows_total", "Rows scored", ["model", "version"])
IN_FLIGHT = Gauge("driftline_serving_in_flight_requests", "Requests being handled now")
MODEL_VERSION = Gauge("driftline_serving_model_version_info", "1 for the version this node serves",
                      ["model", "version"])
SWAPS = Counter("driftline_serving_swaps_total", "Model versions swapped in", ["model", "action"])
LOAD_FAILURES = Counter("driftline_serving_load_failures_total",
                        "Versions refused (signature, load or warm-up failed)", ["model"])
EMIT_QUEUE = Gauge("driftline_serving_emit_queue_depth", "Prediction events waiting to be produced")
EMIT_BLOCKED = Counter("driftline_serving_emit_backpressure_total",
                       "Requests that waited for room in the full prediction-event buffer")
EMITTED = Counter("driftline_serving_predictions_emitted_total", "Prediction events acknowledged by Kafka")
EMIT_ERRORS = Counter("driftline_serving_emit_errors_total", "Prediction events Kafka did not acknowledge")
