"""``driftline trainer``: the retraining consumer.

It reads ``alerts`` in the consumer group ``<topic prefix>trainer``, offers each
drift/skew/decay alert and operator command (``driftline retrain``) to the
model's trigger policy, runs what becomes due, and records every decision on
``runs``. Offsets are committed only up to the oldest alert a pending run
still depends on, so a trainer that dies during a debounce or a run gets the
alert again on restart, and the run id derived from it makes the rerun
idempotent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from driftline.alerts import Alert, AlertFormatError
from driftline.deadletter import DeadLetterQueue
from driftline.kafka_clients import make_consumer, make_producer, position_of
from driftline.offsets import ranges_for_times, read_ranges
from driftline.registry import Registry
from driftline.runtime import release_free_memory
from driftline.settings import Settings
from schemas import Codec, ContractError
from trainers import metrics
from trainers.job import FINISHED, TrainingJob, Trigger, now_ms, run_id_for, run_record
from trainers.modelfile import ModelConfig
from trainers.trigger import Decision, TriggerState

log = logging.getLogger(__name__)
GROUP = "trainer"
COMMAND_TYPE = "driftline.command.retrain"
ALERT_TRIGGERS = {"driftline.drift": "drift", "driftline.skew": "skew", "driftline.decay": "decay",
                  "driftline.decay.estimated": "estimated_decay", COMMAND_TYPE: "operator"}


def count_new_labels(settings: Settings, model: str, since_ms: int) -> int:
    """Labelled rows of ``model`` that arrived since ``since_ms``."""
    codec = Codec.default()
    rows = 0
    for batch in read_ranges(settings, ranges_for_times(settings, settings.topic("labels"), since_ms)):
        for message in batch:
            try:
                record = codec.decode(message.value() or b"", "driftline.Label")
            except ContractError:
                continue
            if record["model"] == model:
                rows += len(record["request_ids"])
    return rows


class Trainer:
    def __init__(self, settings: Settings, configs: list[ModelConfig]) -> None:
        self.settings = settings
        self.registry = Registry(settings)
        self.jobs = {c.name: TrainingJob(settings, c, self.registry) for c in configs}
        self.states = {c.name: TriggerState(c.trigger) for c in configs}
        for run in self.registry.runs():
            state = self.states.get(run["model"])
            if state is not None and (run["status"] in FINISHED or run["status"] == "skipped"):
                # a restart does not move the schedule: it ticks a period after the last run, tick or init
                state.last_tick_ms = max(state.last_tick_ms or 0, run["started_at"])
            # the first version (models init) does not start a cooldown: nothing was retrained yet
            if state is None or run["status"] not in FINISHED or run["trigger_type"] == "init":
                continue
            state.last_attempt_ms = max(state.last_attempt_ms or 0, run["started_at"])
            if run["status"] == "published":
                state.last_run_ms = max(state.last_run_ms or 0, run["started_at"])
        self.topic = settings.topic("alerts")
        self.consumer = make_consumer(settings, settings.group(GROUP))
        self.consumer.subscribe([self.topic])
        self._dead_letter_producer = make_producer(settings)
        self.deadletters = DeadLetterQueue.for_producer(settings, self._dead_letter_producer)
        self.held: dict[str, TopicPartition] = {}  # model -> the alert its pending run depends on

    def record(self, model: str, trigger: Trigger, decision: Decision) -> None:
        metrics.TRIGGERS.labels(model, trigger.kind, decision.action).inc()
        if decision.action == "pending":
            log.info("%s: %s trigger %s: %s", model, trigger.kind, trigger.id, decision.reason)
            return
        if self.registry.run(run_id_for(model, trigger.id)) is not None:
            return  # decided before a restart
        self.registry.publish_run(run_record(model, trigger, "skipped", decision.reason, finished=True))
        log.info("%s: %s trigger %s skipped: %s", model, trigger.kind, trigger.id, decision.reason)

    def _offer(self, alert: Alert, tp: TopicPartition) -> None:
        kind = ALERT_TRIGGERS.get(alert.type)
        if kind is None or alert.model not in self.jobs:
            return
        reason = alert.data.get("reason", "") if kind == "operator" else alert.message
        since = alert.data.get("window_start")
        trigger = Trigger(alert.id, kind, str(reason), since if isinstance(since, int) else None)
        decision = self.states[alert.model].offer(trigger, now_ms())
        if decision.action == "pending":
            self.held[alert.model] = tp
        self.record(alert.model, trigger, decision)

    def poll_alerts(self, timeout: float) -> None:
        for message in self.consumer.consume(200, timeout):
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                continue
            try:
                alert = Alert.from_json(message.value() or b"")
            except AlertFormatError as exc:
                self.deadletters.send_message(message, exc, "trainer")
                metrics.DEAD_LETTERED.inc()
                continue
            self._offer(alert, TopicPartition(*position_of(message)))

    def run_due(self) -> list[dict]:
        finished = []
        for model, state in self.states.items():
            scheduled = state.schedule_due(now_ms())
            if scheduled is not None:
                self.record(model, scheduled, state.offer(scheduled, now_ms()))
            pending = state.due(now_ms())
            if pending is None:
                continue
            job = self.jobs[model]
            since = state.last_attempt_ms or now_ms() - int(job.config.training_window_seconds * 1000)
            skip = state.enough_labels(count_new_labels(self.settings, model, since), pending.trigger)
            if skip is not None:
                state.pending = None
                self.held.pop(model, None)
                self.record(model, pending.trigger, skip)
                continue
            started = time.monotonic()
            run = job.run(pending.trigger)
            metrics.RUN_SECONDS.labels(model).observe(time.monotonic() - started)
            metrics.RUNS.labels(model, run["status"]).inc()
            metrics.DATASET_ROWS.labels(model).set(run["rows"])
            if run["status"] == "published" and run["candidate_version"].isdigit():
                metrics.PUBLISHED_VERSION.labels(model).set(int(run["candidate_version"]))
            state.finished(now_ms(), published=run["status"] == "published")
            self.held.pop(model, None)
            finished.append(run)
            release_free_memory()  # the run's working set is free now: the trainer waits at its own size
        return finished

    def commit(self) -> None:
        """Commit consumed offsets, held back to the oldest alert a pending run depends on."""
        self.deadletters_flush()
        assignment = self.consumer.assignment()
        if not assignment:
            return
        positions = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(assignment)
                     if tp.offset >= 0}
        for tp in self.held.values():
            key = (tp.topic, tp.partition)
            if key in positions:
                positions[key] = min(positions[key], tp.offset)
        if positions:
            try:
                self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in positions.items()],
                                     asynchronous=False)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError._NO_OFFSET:
                    raise

    def deadletters_flush(self) -> None:
        if self._dead_letter_producer.flush(30):
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "dead letters not acknowledged in 30 s"))

    def step(self, timeout: float = 0.5) -> list[dict]:
        self.poll_alerts(timeout)
        finished = self.run_due()
        self.commit()
        return finished

    def run(self, stop: Callable[[], bool]) -> None:
        while not stop():
            self.step()

    def close(self) -> None:
        self.deadletters_flush()
        self.consumer.close()
        self.registry.close()
