"""The value-drift pipeline, as pure logic over numpy arrays (no Kafka).

Reference profiles (``profile``), mergeable window summaries (``summary``),
two-stage windowing (``windows``), schema skew (``skew``), drift statistics
(``statistics``) and the decisions made with them (``decision``), online
detectors over the sequence of windows (``detectors``), and the alerts built
from their findings (``alerts``). :mod:`streams.stages` runs them on Kafka.
"""
