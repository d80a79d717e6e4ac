"""The label-join and model-decay pipeline, as pure logic over numpy arrays (no Kafka).

Labels joined to predictions by request id (``join``, fed in blocks by
``coalesce``), closed quality windows judged against the expected quality
(``judge``), the error stream watched by DDM (``ddm``) and the prediction
scores by river's detectors (``score_drift``). The metrics themselves are
shared with the trainer: :mod:`driftline.quality`. :mod:`streams.stages`
runs them on Kafka.
"""
