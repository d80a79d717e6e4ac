"""Prometheus metrics of the trainer (served on /metrics by ``driftline trainer``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TRIGGERS = Counter("driftline_trainer_triggers_total", "Triggers offered, by decision", ["model", "kind", "decision"])
RUNS = Counter("driftline_trainer_runs_total", "Training runs finished, by status", ["model", "status"])
RUN_SECONDS = Histogram("driftline_trainer_run_seconds", "Wall time of a training run", ["model"],
                        buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600))
DATASET_ROWS = Gauge("driftline_trainer_dataset_rows", "Labelled rows of the latest run", ["model"])
PUBLISHED_VERSION = Gauge("driftline_trainer_published_version", "Latest version the trainer published", ["model"])
DEAD_LETTERED = Counter("driftline_trainer_dead_lettered_total", "Unreadable records on the alerts topic")
