"""Stream monitor: window statistics, schema skew, value drift and model decay.

The statistics (``statistics``), summaries (``summary``), profiles
(``profile``), skew checks (``skew``) and drift decisions (``drift``) are
pure numpy code with no Kafka in them, so ``driftline check`` runs them offline
and the tests check them against scipy. The faust worker (``worker``) applies
them to windows of events.
"""
