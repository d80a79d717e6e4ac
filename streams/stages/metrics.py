"""Prometheus metrics of the monitor (served on /metrics by the worker)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("driftline_monitor_events_total", "Events consumed by stage 1", ["topic"])
ROWS_IN = Counter("driftline_monitor_rows_total", "Rows aggregated into window deltas", ["model"])
LATE_ROWS = Counter("driftline_monitor_late_rows_total", "Rows that arrived after their window closed",
                    ["model"])
UNPROFILED_ROWS = Counter("driftline_monitor_unprofiled_rows_total",
                          "Rows of models without a reference profile (counted, not aggregated)")
REFERENCE_CHANGED_ROWS = Counter("driftline_monitor_reference_changed_rows_total",
                                 "Rows left out of a window because the profile changed during it", ["model"])
DEAD_LETTERED = Counter("driftline_monitor_dead_lettered_total", "Events sent to the dead-letter topic")
WINDOWS_CLOSED = Counter("driftline_monitor_windows_closed_total", "Windows merged and judged", ["model"])
WINDOW_CLOSE_LATENCY = Histogram(
    "driftline_monitor_window_close_latency_seconds",
    "Wall time from a window's end plus grace to its judgement",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
DRIFT_STATISTIC = Gauge("driftline_drift_statistic", "Latest value of the deciding drift statistic",
                        ["model", "feature", "statistic"])
DRIFT_THRESHOLD = Gauge("driftline_drift_threshold", "The statistic's critical value at the feature's alpha",
                        ["model", "feature", "statistic"])
DRIFT_P_VALUE = Gauge("driftline_drift_p_value", "p-value of the latest window's drift test (drift when < alpha)",
                      ["model", "feature"])
ALERTS = Counter("driftline_alerts_total", "Alerts published", ["model", "type"])
CONSUMER_LAG = Gauge("driftline_monitor_consumer_lag", "Messages behind the end of the input",
                     ["topic", "partition"])
LABELS_JOINED = Counter("driftline_monitor_labels_joined_total", "Labels joined to their prediction", ["model"])
LATE_LABELS = Counter("driftline_monitor_late_labels_total",
                      "Labels whose quality window was already published (counted, not re-judged)", ["model"])
UNLABELLED_EXPIRED = Counter("driftline_monitor_unlabelled_expired_total",
                             "Predictions whose label did not arrive within the TTL")
DECAY_SKIPPED = Counter("driftline_monitor_decay_skipped_total",
                        "Prediction or label events whose arrays do not match their request ids (not joined)")
UNMATCHED_LABELS = Counter("driftline_monitor_unmatched_labels_total",
                           "Labels whose prediction did not arrive within the TTL")
QUALITY = Gauge("driftline_model_quality", "Quality metric of the latest closed window",
                ["model", "version", "metric"])
QUALITY_WINDOWS = Counter("driftline_monitor_quality_windows_total", "Quality windows published", ["model"])
QUALITY_ESTIMATED = Gauge("driftline_model_quality_estimated",
                          "Quality metric estimated from calibrated scores at the latest window close (no labels)",
                          ["model", "version", "metric"])
