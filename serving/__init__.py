"""Serving nodes: Open Inference Protocol (KServe v2) over HTTP, hot-swapped from the models topic."""
