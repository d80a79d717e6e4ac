"""The monitor's Kafka side: each stage consumes, computes with the pure pipelines, and commits outputs
and offsets in one transaction (``monitor``: windows, drift, skew; ``decay``: label join and quality;
``route``: predictions and labels re-keyed by model), plus the worker's Prometheus ``metrics``.
"""
