"""The monitor's decay stage: labels joined to predictions, quality windows, decay alerts.

It also watches the prediction scores themselves (:mod:`streams.decay.score_drift`),
which move before any label arrives.

It reads predictions and labels from ``monitor.by-model``, where
:mod:`streams.stages.forward` puts each model's events on one partition (so with
several workers, each model's join and windows live on exactly one), in its
own consumer group. Stage 1 also writes there, after the rows they cover, the
progress of each prediction and label partition and its idle declarations: an
estimated window closes when every live prediction partition of its model has
passed it (:class:`streams.drift.watermarks.SourceWatermarks`, the rule stage 2
uses), so a partition whose worker lags or restarts holds it open. A realised
window closes when every live label partition *and* every live prediction
partition has passed it (a pair needs both sides), by the same rule.
In one Kafka transaction per step it publishes closed quality windows to
``quality`` and decay alerts to ``alerts`` together with offsets held back to
the oldest row still in its state (see :mod:`streams.decay.join`). A restart
therefore rebuilds the join state from the topic, and the windows already
published (read back from ``quality``) are not counted again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from itertools import chain

from confluent_kafka import TopicPartition

from driftline.alerts import Alert, alert_message
from driftline.consumer import Event, EventReader, static_membership
from driftline.estimation import Calibration
from driftline.follow import TopicFollower, read_compacted
from driftline.offsets import held_back
from driftline.settings import Settings
from schemas import Codec
from streams.decay.coalesce import coalesce
from streams.decay.estimated import EstimatedQuality, reads_features
from streams.decay.join import JoinResult, LabelJoin
from streams.decay.judge import DecayJudge, DecayPolicy, measure
from streams.decay.score_drift import ScoreDrift
from streams.drift.profile import Profile
from streams.drift.watermarks import ANY_MODEL, NO_WATERMARK, SourceWatermarks
from streams.stages import metrics
from streams.stages.forward import BY_MODEL_TOPIC
from streams.stages.idle import TopicPartitions

log = logging.getLogger(__name__)
DECAY_GROUP = "monitor-decay"
SCORE_STATE_TOPIC = "monitor.score-state"  # compacted: per model version, what closed score windows taught
QUALITY_REPLAY_MS = 7 * 24 * 3600 * 1000


def model_record_summary(raw: bytes) -> dict:
    """What the monitor needs of a ModelRecord: task and validation metrics (not the artifact)."""
    record = Codec.default().decode(raw, "driftline.ModelRecord")
    return {"model": record["model"], "version": record["version"], "task": record["task"],
            "metrics": dict(record["metrics"]), "calibration": Calibration.from_avro(record.get("calibration"))}


class DecayStage:
    def __init__(self, settings: Settings, instance: str, profiles: Callable[[], dict[str, Profile]],
                 *, policy: DecayPolicy | None = None, ttl_seconds: float = 24 * 3600,
                 profiles_loaded: Callable[[], bool] = lambda: True,
                 partitions: TopicPartitions | None = None) -> None:
        self.settings = settings
        self.codec = Codec.default()
        self.window_ms = int(settings.window_seconds * 1000)
        self.grace_ms = int(settings.grace_seconds * 1000)
        self.ttl_ms = int(ttl_seconds * 1000)
        self.profiles = profiles
        self.profiles_loaded = profiles_loaded
        self.judge = DecayJudge(policy)
        self.scores = ScoreDrift(self.window_ms)
        self.estimated = EstimatedQuality(self.window_ms, self._calibration, policy)
        # of the prediction partitions, per model; positions in monitor.by-model
        self.watermarks: SourceWatermarks[tuple[str, int]] = SourceWatermarks()
        self.quality_topic = settings.topic("quality")
        self.score_state_topic = settings.topic(SCORE_STATE_TOPIC)
        self.join = self._fresh_join()
        by_model = settings.topic(BY_MODEL_TOPIC)
        self.reader = EventReader(
            settings, settings.group(DECAY_GROUP), [by_model], stage="monitor-decay",
            expect={by_model: ("driftline.Prediction", "driftline.Label", "driftline.PartitionProgress")},
            transactional_id=settings.group(f"monitor-3-{instance}"), on_assign=self._on_assign,
            dead_letter_topics=[],  # the router checked these events and dead-lettered the bad ones
            **static_membership(f"{instance}-3"))
        self.models = TopicFollower(settings, "models", model_record_summary)
        self.partitions = partitions or TopicPartitions(self.reader.consumer)
        self.predictions_topic = settings.topic("predictions")
        self.labels_topic = settings.topic("labels")
        # of the label partitions, per model: told for every model, applied on the model's home partition
        self.label_watermarks: SourceWatermarks[tuple[str, int]] = SourceWatermarks()
        self._next_expiry = 0.0
        self.rows_read = 0  # prediction and label rows (an event of the by-model topic holds a run of them)

    def _fresh_join(self) -> LabelJoin:
        return LabelJoin(self.window_ms, self.grace_ms, self.ttl_ms)

    def _calibration(self, model: str, version: str) -> tuple[Calibration | None, dict[str, float], str]:
        """The version's calibration and what quality to expect: its ModelRecord's (holdout metrics),
        else the profile's (the reference's realised quality)."""
        record = next((r for r in self.models.latest.values() if r["model"] == model and r["version"] == version),
                      None)
        if record is not None and record["calibration"] is not None:
            return record["calibration"], dict(record["metrics"]) or record["calibration"].expected, "model-record"
        profile = self.profiles().get(model)
        if profile is not None and profile.calibration is not None:
            return profile.calibration, dict(profile.metrics) or profile.calibration.expected, "profile"
        return None, {}, ""

    def records_loaded(self) -> bool:
        """Whether the ModelRecords that existed at start-up have been read (polling them until then)."""
        if not self.models.caught_up:
            self.models.poll(timeout=0.05)
        return self.models.caught_up

    def reads_features(self, model: str) -> bool:
        """Whether this stage may read the feature columns of ``model``'s predictions
        (:func:`~streams.decay.estimated.reads_features`): stage 1 forwards them to it only then."""
        records = [r for r in self.models.latest.values() if r["model"] == model]
        profile = self.profiles().get(model)
        calibrations = [r["calibration"] for r in records] + [profile.calibration if profile is not None else None]
        return reads_features([r["task"] for r in records], [c for c in calibrations if c is not None])

    def _on_assign(self, _: list[TopicPartition]) -> None:
        """Rebuild from the committed (held-back) offsets: state starts empty, published windows are known."""
        self.join = self._fresh_join()
        self.estimated = EstimatedQuality(self.window_ms, self._calibration, self.judge.policy)
        self.watermarks = SourceWatermarks()
        self.label_watermarks = SourceWatermarks()
        self.scores = ScoreDrift.restored(self.window_ms, read_compacted(self.settings, self.score_state_topic).items())
        since = int(time.time() * 1000) - QUALITY_REPLAY_MS
        for value in read_compacted(self.settings, self.quality_topic, since_ms=since).values():
            record = self.codec.decode(value, "driftline.QualitySummary")
            key = (record["model"], record["model_version"], record["window_start"])
            (self.estimated.published if record["estimated"] else self.join.published).add(key)

    def step(self, max_messages: int = 5000, timeout: float = 0.05) -> int:
        self.models.poll()
        if not (self.models.caught_up and self.profiles_loaded()):
            return 0  # calibrations come from both: a run read before them would go unestimated
        polled = self.reader.poll(max_messages, timeout)
        events = []
        for event in polled:
            if event.schema == "driftline.PartitionProgress":
                self._progress(event)
            else:
                events.append(event)
        self.rows_read += sum(len(e.record["request_ids"]) for e in events)
        runs, inconsistent = coalesce(events, self.window_ms)
        for event in inconsistent:
            self.reader.skipped += 1
            metrics.DECAY_SKIPPED.inc()
            log.warning("skipped %s[%d]@%d: its arrays do not match its request ids",
                        event.topic, event.partition, event.offset)
        joined: dict[str, JoinResult] = {}
        for run in runs:
            record = run.record()
            if run.kind == "label":
                result = self.join.add_label(record, run.source, run.offset)
            else:
                result = self.join.add_prediction(record, run.source, run.offset)
                block = self.join.last_prediction
                if block is not None:  # the block add_prediction just stored
                    self.scores.add(record["model"], block.version, block.event_time, block.values,
                                    run.source, run.offset)
                    self.estimated.add(record["model"], block.version, block.event_time, block.values,
                                       block.classes, run.source, run.offset, run.parts or [record])
            total = joined.setdefault(record["model"], JoinResult())
            total.joined += result.joined
            total.late_labels += result.late_labels
        for model, total in joined.items():  # metrics once per model and batch, not per event
            metrics.LABELS_JOINED.labels(model).inc(total.joined)
            metrics.LATE_LABELS.labels(model).inc(total.late_labels)
        if time.monotonic() >= self._next_expiry:
            expired = self.join.expire(self.join.clock)
            metrics.UNLABELLED_EXPIRED.inc(expired.expired_predictions)
            metrics.UNMATCHED_LABELS.inc(expired.expired_labels)
            self._next_expiry = time.monotonic() + 5.0
        self.watermarks.expect(self.partitions.sources(self.predictions_topic))
        self.label_watermarks.expect(self.partitions.sources(self.labels_topic))
        closing = self.join.closable(self._realised)
        score_alerts = self.scores.close(self._predictions_passed)
        score_states = self.scores.changed()
        estimating = self.estimated.closable(self._predictions_passed)
        if closing or score_alerts or score_states or estimating:
            self.reader.begin()
        for state_key, state in score_states:  # with the offsets past the windows they learnt from
            self.reader.producer.produce(self.score_state_topic, key=state_key, value=state)
        for key in closing:
            self._publish(key)
        for alert in score_alerts:
            self._alert(alert)
        for key in estimating:
            self._publish_estimate(key)
        if self.reader.in_transaction:
            assignment = self.reader.consumer.position(self.reader.consumer.assignment())
            positions = {(tp.topic, tp.partition): tp.offset for tp in assignment if tp.offset >= 0}
            safe = held_back(positions, chain(self.join.holding(), self.estimated.holding(), self.scores.holding(),
                                              self.watermarks.holding(), self.label_watermarks.holding()))
            self.reader.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in safe.items()], wait=False)
        return len(polled)

    def _progress(self, event: Event) -> None:
        """A prediction partition's progress (per model, or for every model), or a label partition's."""
        record = event.record
        here = (event.topic, event.partition)
        if record["source_topic"] == self.labels_topic:
            self.label_watermarks.apply(record, (here, event.offset))
            return
        self.watermarks.apply(record, (here, event.offset))
        if record["model"] != ANY_MODEL:  # where the model's rows arrive: its label partitions count there
            self.label_watermarks.follow(record["model"], here)

    def _close_of(self, start: int) -> int:
        """The event time a window's close is due at: its end plus grace."""
        return start + self.window_ms + self.grace_ms

    def _predictions_passed(self, model: str, start: int) -> bool:
        """Every live prediction partition of the model has passed the window's close: the rule for the
        windows of prediction time (estimated quality, score drift)."""
        return self.watermarks.passed(model, start, self._close_of(start))

    def _realised(self, key: tuple[str, str, int]) -> bool:
        """Whether a realised window may close: every label partition has passed its end plus grace (or all
        stopped), and so has every prediction partition of the model (or all stopped), so no pair of it is
        still in flight.

        Label partitions speak for every model; their word counts for a model where it is ordered after
        the model's rows, on the model's home partition. The newest label seen is no watermark: with two
        workers, one restarting, the other's labels ran seconds ahead and closed windows whose pairs were
        still to come (CI saw a window of 83 of its 400 pairs).
        """
        model, _, start = key
        close = self._close_of(start)
        return (self.label_watermarks.passed(model, start, close)
                and self.watermarks.passed(model, NO_WATERMARK, close))  # predictions all stopped: none due

    def _publish(self, key: tuple[str, str, int]) -> None:
        model, version, start = key
        pairs = self.join.close(key)
        record = next((r for r in self.models.latest.values()
                       if r["model"] == model and r["version"] == version), None)
        window = measure(model, version, start, self.window_ms, pairs, record["task"] if record else None)
        profile = self.profiles().get(model)
        window.baseline, window.baseline_source = self.judge.baseline(
            window, record["metrics"] if record else None, profile.metrics if profile else None)
        produce = self.reader.producer.produce
        produce(self.quality_topic, key=f"{model}:{version}:{start}".encode(),
                value=self.codec.encode("driftline.QualitySummary", window.to_avro()))
        for name, value in window.metrics.items():
            metrics.QUALITY.labels(model, version, name).set(value)
        metrics.QUALITY_WINDOWS.labels(model).inc()
        for alert in self.judge.alerts(window):
            self._alert(alert)

    def _publish_estimate(self, key: tuple[str, str, int]) -> None:
        window, alerts = self.estimated.close(key)
        if window is None:
            return
        self.reader.producer.produce(self.quality_topic, key=window.key,
                                     value=self.codec.encode("driftline.QualitySummary", window.to_avro()))
        for name, e in window.estimates.items():
            metrics.QUALITY_ESTIMATED.labels(window.model, window.version, name).set(e.value)
        for alert in alerts:
            self._alert(alert)

    def _alert(self, alert: Alert) -> None:
        self.reader.producer.produce(**alert_message(alert, self.settings))
        metrics.ALERTS.labels(alert.model, alert.type).inc()
        log.warning("%s", alert.summary())

    def close(self) -> None:
        for part in (self.reader, self.models):
            try:
                part.close()
            except Exception as exc:  # closing the other matters more
                log.warning("error while closing: %s", exc)
