"""Predictions and labels handed to the decay stage, by model, as stage 1 reads them.

A label joins its prediction by request id, and a quality window is one
number per model version, so the decay stage needs every row of a model in
one place. The event topics cannot promise that: applications key batch
events by their first request id, the serving node batches whatever requests
arrived together, and several monitor workers split the partitions. So
stage 1, which reads and decodes every prediction anyway, also reads the
labels and writes both to ``monitor.by-model`` keyed by model (the
repartition step of a stream join, as Kafka Streams does it), in the same
transaction as its window deltas and its input offsets: a crash neither
loses nor duplicates a row downstream.

It writes *runs*, not events (:mod:`streams.decay.coalesce`): one-row
events of one model, version and window in a polled batch go out as one
Prediction (or Label) event of many rows, features included (a regression's
label-free estimate reads them). The decay stage therefore decodes each row
once in a compact event instead of each event a second time, and the topic
carries one message per run. (Until this, a separate router copied every
event's bytes — a third consume and a produce per event, then a second full
decode: two thirds of a monitor worker's time.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from driftline.consumer import Event
from driftline.contract import EventCodec
from schemas.columns import merged_record
from streams.decay.coalesce import Run, coalesce

BY_MODEL_TOPIC = "monitor.by-model"


def by_model_messages(events: Sequence[Event], window_ms: int, codec: EventCodec
                      ) -> tuple[list[tuple[bytes, bytes]], list[Event]]:
    """(key, value) messages for ``monitor.by-model``, and the events left out as inconsistent.

    ``events`` are decoded Prediction and Label events; an event whose arrays
    disagree with its request ids is returned apart (merged, it would break
    its whole run) for the caller to count.
    """
    runs, inconsistent = coalesce(events, window_ms)
    return list(_encoded(runs, codec)), inconsistent


def _encoded(runs: list[Run], codec: EventCodec) -> Iterator[tuple[bytes, bytes]]:
    for run in runs:
        record = run.record
        if run.kind == "label":
            yield record["model"].encode(), codec.encode("driftline.Label", record)
            continue
        if len(run.parts) > 1:  # the run's features, stacked into the merged event
            record = {**record, "columns": merged_record([(p["columns"], len(p["request_ids"])) for p in run.parts])}
        yield record["model"].encode(), codec.encode("driftline.Prediction", record)
