"""Predictions and labels re-keyed by model, so one decay worker sees all of a model's rows.

A label joins its prediction by request id, and a quality window is one
number per model version, so the decay stage needs every row of a model in
one place. The event topics cannot promise that: applications key batch
events by their first request id, the serving node batches whatever requests
arrived together, and several monitor workers split the partitions. This
router (stateless, any number of workers) copies each Prediction and Label
event, bytes unchanged, to ``monitor.by-model`` keyed by model; the decay
stage reads that topic, where a model's events share one partition. It is
the repartition step of a stream join, as Kafka Streams does it.

Copy and source offsets commit in one transaction, so a crash neither loses
nor duplicates an event downstream. Bad labels are dead-lettered here;
bad predictions by stage 1, which owns that topic. Predictions are not
decoded here: the model is the first field of the body and is read alone
(stage 1 and the decay stage decode them already).
"""

from __future__ import annotations

from driftline.consumer import EventReader, static_membership
from driftline.settings import Settings

ROUTE_GROUP = "monitor-route"
BY_MODEL_TOPIC = "monitor.by-model"


class DecayRouter:
    def __init__(self, settings: Settings, instance: str) -> None:
        self.topic = settings.topic(BY_MODEL_TOPIC)
        self.predictions = settings.topic("predictions")
        self.reader = EventReader(
            settings, settings.group(ROUTE_GROUP), [settings.topic("predictions"), settings.topic("labels")],
            stage="monitor-route",
            expect={settings.topic("predictions"): "driftline.Prediction",
                    settings.topic("labels"): "driftline.Label"},
            transactional_id=settings.group(f"monitor-4-{instance}"),
            answered_only=True,  # a rollout's shadow predictions are not traffic
            dead_letter_topics=[settings.topic("labels")],
            **static_membership(f"{instance}-4"))

    def step(self, max_messages: int = 5000, timeout: float = 0.05) -> int:
        """Copy the next batch; returns how many events it read."""
        messages = self.reader.poll_messages(max_messages, timeout)
        if not self.reader.in_transaction:
            return 0
        produce = self.reader.producer.produce
        peek = self.reader.codec.peek_model
        for message in messages:
            value = message.value() or b""
            model = peek(value, "driftline.Prediction") if message.topic() == self.predictions else None
            if model is None:
                event = self.reader.decode(message)  # labels; anything unreadable is dead-lettered or skipped
                if event is None:
                    continue
                model = event.record["model"]
            produce(self.topic, key=model.encode(), value=value)
        self.reader.commit()
        return len(messages)

    def close(self) -> None:
        self.reader.close()
