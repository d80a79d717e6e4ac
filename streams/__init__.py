"""Stream monitor: window statistics, schema skew, value drift and model decay.

Two pipelines of pure numpy code with no Kafka in them, so ``driftline check``
runs them offline and the tests check them against scipy:

* :mod:`streams.drift`: profiles, window summaries, skew, drift statistics and
  decisions, detectors over the sequence of windows, the alerts they raise;
* :mod:`streams.decay`: the label join, quality windows judged against the
  expected quality, DDM on the error stream, drift of prediction scores.

:mod:`streams.stages` is the Kafka side: the monitor worker's transactional
stages (confluent-kafka), which feed both pipelines and publish their output.
"""
