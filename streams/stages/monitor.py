"""The monitor worker: the windowing stages and the decay stage as one Kafka service.

Stage 1 reads ``features``, ``predictions`` and ``labels``, writes window
deltas and partition progress to ``stats.partial``, each partition's
watermark to the compacted ``monitor.watermarks``, and the predictions and
labels by model to ``monitor.by-model`` (:mod:`streams.stages.forward`) with the progress of
each prediction partition; a partition it has verified quiet for ``--idle``
seconds it declares idle to both (:mod:`streams.stages.idle`);
stage 2 reads ``stats.partial``, closes windows, writes merged summaries to
``stats`` and alerts to ``alerts``. The decay stage
(:mod:`streams.stages.decay`) joins predictions and labels on
``monitor.by-model`` and writes quality windows to ``quality`` and decay
alerts to ``alerts``.

Each stage commits its outputs and its input offsets in one Kafka
transaction (confluent-kafka / librdkafka), so a worker killed at any point
resumes exactly where its last committed batch ended: no row lost, none
counted twice, no alert published twice. faust's at-least-once commits are
periodic and ack-driven (and have had offset bugs, faust-streaming#312), so
they cannot give that.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections import defaultdict
from collections.abc import Callable

from confluent_kafka import TopicPartition

from driftline.alerts import alert_message
from driftline.consumer import Event, EventReader, Polled, static_membership
from driftline.follow import TopicFollower, read_compacted
from driftline.repeats import RecentEvents
from driftline.settings import Settings
from schemas import Codec
from streams.decay.judge import DecayPolicy
from streams.drift.alerts import alerts_for, detector_alerts, rolling_alerts
from streams.drift.decision import DriftPolicy, compare
from streams.drift.detectors import WindowMeanDetectors
from streams.drift.profile import Profile
from streams.drift.summary import WindowSummary
from streams.drift.watermarks import NO_WATERMARK, QuietSources, SourcePartition, closes_passed, source_progress
from streams.drift.windows import PartitionWindows, RollingView, StageOneResult, WindowMerger
from streams.stages import metrics
from streams.stages.decay import DecayStage
from streams.stages.forward import BY_MODEL_TOPIC, label_messages, prediction_messages
from streams.stages.idle import EndProbe, TopicPartitions

log = logging.getLogger(__name__)
STAGE1_GROUP = "monitor"
STAGE2_GROUP = "monitor-merge"
# Closed windows older than this are never replayed into stage 2 (its commits hold back only to
# open windows) and are enough history for the detectors and the rolling view.
STATS_REPLAY_MS = 24 * 3600 * 1000
# A stage 1 transaction covers up to this many events or about this many bytes of them, whichever comes
# first. Each transaction has a cost of its own (the commit's round trips; a window delta per partition
# and window; a forwarded run each), so a backlog is read in big batches: single-row events 1.3x faster
# through a whole worker in batches of 20,000 than of 5,000. The bytes bound batches of wide events
# (20,000 events of 100 rows would be 2 million rows).
STAGE1_BATCH_EVENTS = 20_000
STAGE1_BATCH_BYTES = 8 * 1024 * 1024


class ProfileFollower(TopicFollower[Profile]):
    """Every model's latest profile, read from the compacted profiles topic (keyed by model) and followed."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "profiles", Profile.from_bytes)
        self.profiles: dict[str, Profile] = {}

    def poll(self, timeout: float = 0.0, max_messages: int = 100) -> list[Profile]:
        fresh = super().poll(timeout, max_messages)
        for profile in fresh:
            self.profiles[profile.model] = profile
            log.info("profile %s v%s loaded", profile.model, profile.version)
        return fresh


class Monitor:
    """One monitor worker process. Several with distinct ``instance`` ids share the work."""

    def __init__(self, settings: Settings, *, instance: str | None = None,
                 policy: DriftPolicy | None = None, idle_seconds: float = 30.0,
                 rolling_windows: int = 10, decay_policy: DecayPolicy | None = None,
                 label_ttl_seconds: float = 24 * 3600) -> None:
        self.settings = settings
        self.codec = Codec.default()
        self.policy = policy or DriftPolicy()
        window_ms = int(settings.window_seconds * 1000)
        grace_ms = int(settings.grace_seconds * 1000)
        self.windows = PartitionWindows(window_ms, grace_ms)
        self.merger = WindowMerger(window_ms, grace_ms)
        instance = instance or socket.gethostname()
        self.watermark_topic = settings.topic("monitor.watermarks")
        self.partial_topic = settings.topic("stats.partial")
        self.labels_topic = settings.topic("labels")
        self.predictions_topic = settings.topic("predictions")
        self.by_model_topic = settings.topic(BY_MODEL_TOPIC)
        self.window_ms = window_ms
        inputs = [settings.topic("features"), settings.topic("predictions"), self.labels_topic]
        self.stage1 = EventReader(
            settings, settings.group(STAGE1_GROUP), inputs, stage="monitor",
            expect={settings.topic("features"): "driftline.Features",
                    settings.topic("predictions"): "driftline.Prediction",
                    self.labels_topic: "driftline.Label"},
            transactional_id=settings.group(f"monitor-1-{instance}"), on_assign=self._restore_watermarks,
            answered_only=True,  # a rollout's shadow predictions are not traffic
            repeats=RecentEvents(),  # an event a producer sent twice is counted once (driftline.repeats)
            **static_membership(f"{instance}-1"))
        self.stage2 = EventReader(
            settings, settings.group(STAGE2_GROUP), [self.partial_topic], stage="monitor-merge",
            transactional_id=settings.group(f"monitor-2-{instance}"), on_assign=self._restore_closed,
            **static_membership(f"{instance}-2"))
        self.quiet = QuietSources(idle_seconds)
        self.ends = EndProbe(settings, self.stage1.consumer, every_s=min(1.0, idle_seconds / 4))
        self.partitions = TopicPartitions(self.stage1.producer)
        self.features_topic = settings.topic("features")
        self._told: dict[SourcePartition, int] = {}  # closes_passed() last sent as source progress
        self.grace_ms = grace_ms
        self.profiles = ProfileFollower(settings)
        self.detectors = WindowMeanDetectors()
        self.rolling = RollingView(rolling_windows)
        self._replay: list[WindowSummary] = []
        self.decay = DecayStage(settings, instance, lambda: self.profiles.profiles, policy=decay_policy,
                                ttl_seconds=label_ttl_seconds, profiles_loaded=self.profiles_loaded,
                                partitions=self.partitions)

    # ------------------------------------------------------------ recovery
    def _restore_watermarks(self, partitions: list[TopicPartition]) -> None:
        self.ends.forget()
        # Every (re)assigned source sends its progress to every model with the next batch; revoked ones are
        # forgotten (an extra report after a cooperative rebalance would be harmless).
        self._told.clear()
        stored = read_compacted(self.settings, self.watermark_topic)
        for tp in partitions:
            raw = stored.get(f"{tp.topic}:{tp.partition}".encode())
            if raw is not None:
                self.windows.watermarks[(tp.topic, tp.partition)] = json.loads(raw)["watermark"]

    def _restore_closed(self, partitions: list[TopicPartition]) -> None:
        """Closed windows (never re-judged) and the detectors' inputs, from the stats topic."""
        replay = []
        since = int(time.time() * 1000) - STATS_REPLAY_MS  # start-up work bounded by time, not by history
        for key, value in read_compacted(self.settings, self.settings.topic("stats"), since_ms=since).items():
            model, _, start = key.decode().rpartition(":")
            self.merger.closed.add((model, int(start)))
            replay.append(WindowSummary.from_avro(self.codec.decode(value, "driftline.WindowSummary")))
        self._replay = sorted(replay, key=lambda w: w.window_start)

    def _replay_detectors(self) -> None:
        """Feed restored windows to the detectors once their model's profile is known (no alerts)."""
        waiting = []
        for summary in self._replay:
            profile = self.profiles.profiles.get(summary.model)
            if profile is None:
                waiting.append(summary)
            else:
                self.detectors.update(summary, profile)
                self.rolling.add(summary)
        self._replay = waiting

    def profiles_loaded(self) -> bool:
        """Whether every profile that existed at start-up has been read (polling them until then).

        Stage 1 and the decay stage wait for it: a row read before its model's
        profile would be counted as unprofiled (and left out of its window and
        its estimate), and after a restart that depends on which consumer
        was faster — CI saw an estimated window of 200 of its 400 rows.
        """
        if not self.profiles.caught_up:
            self.profiles.poll(timeout=0.05)
        return self.profiles.caught_up

    # ------------------------------------------------------------ stage 1
    def step_stage1(self, max_messages: int = STAGE1_BATCH_EVENTS, timeout: float = 0.1,
                    max_bytes: int = STAGE1_BATCH_BYTES) -> int:
        """One transaction of stage 1 over the next batch (up to ``max_messages`` events or about
        ``max_bytes``); the number of events read."""
        if not (self.profiles_loaded() and self.decay.records_loaded()):  # both say which features to forward
            return 0
        # the batch is decoded and computed while the broker may still answer the previous batch's commit:
        # its transaction opens (waiting for that commit) only at its first output
        polled = self.stage1.poll_rows(max_messages, timeout, max_bytes, defer_begin=True)
        assigned = self.stage1.consumer.assignment()
        idle = self._idle_sources(assigned)
        unreported = [(tp.topic, tp.partition) for tp in assigned if (tp.topic, tp.partition) not in self._told]
        if not (self.stage1.holds_batch or idle or unreported):
            return 0
        labels: dict[SourcePartition, list[Event]] = defaultdict(list)
        for event in polled.events:  # every other kind is a Prediction or Features event, in polled.rows
            labels[(event.topic, event.partition)].append(event)
        for source, batch in labels.items():
            metrics.EVENTS_IN.labels(source[0]).inc(len(batch))
        for source, found in polled.rows.items():
            metrics.EVENTS_IN.labels(source[0]).inc(found.rows.events)
        forwarded = self._forwarded(polled)
        summarised = self.windows.process_batch(
            [(source, found.rows, found.next_offset) for source, found in polled.rows.items()],
            self.profiles.profiles)
        self.stage1.begin()
        produce = self.stage1.producer.produce
        for key, value in forwarded:
            produce(self.by_model_topic, key=key, value=value)
        heard = {**{source: batch[-1].offset + 1 for source, batch in labels.items()},
                 **{source: found.next_offset for source, found in polled.rows.items()}}
        for source in unreported:  # just assigned: every closing stage hears of it before any window closes
            if source not in heard:
                self._report(source, self.stage1.consumer.position([TopicPartition(*source)])[0].offset)
        self._publish(summarised)
        for source, batch in labels.items():  # only forwarded; their watermarks are the decay stage's clock
            self._advance_labels(source, batch)
        for source, next_offset in heard.items():
            self.quiet.saw_records(source)
            watermark = self.windows.watermarks[source]
            produce(self.watermark_topic, key=f"{source[0]}:{source[1]}".encode(),
                    value=json.dumps({"watermark": watermark}).encode())
            passed = closes_passed(watermark, self.window_ms, self.grace_ms)
            if passed > self._told.get(source, passed - 1):  # another window's close: every model hears it
                self._report(source, next_offset)
        for source in idle:
            if source not in heard:  # records in this very batch: not idle after all
                position = self.stage1.consumer.position([TopicPartition(*source)])[0].offset
                self._broadcast(source, idle=True, next_offset=max(position, 0))
                log.debug("%s[%d] idle", source[0], source[1])
        dead = self.stage1.deadletters.count
        self.stage1.commit(wait=False)  # the broker answers while stages 2 and decay, and the next batch, work
        metrics.DEAD_LETTERED.inc(dead - getattr(self, "_dead_seen", 0))
        self._dead_seen = dead
        return len(polled.events) + sum(found.rows.events for found in polled.rows.values())

    def _advance_labels(self, source: SourcePartition, batch: list[Event]) -> None:
        """A label partition's watermark (labels are not windowed here; the decay stage waits on it)."""
        newest = max(event.record["event_time"] for event in batch)
        self.windows.watermarks[source] = max(self.windows.watermarks.get(source, newest), newest)

    def _publish(self, result: StageOneResult) -> None:
        """The features and predictions partitions' window deltas and per-model progress (after the deltas:
        stage 2 and the decay stage take a partition's progress as covering what came before)."""
        produce = self.stage1.producer.produce
        for delta in result.deltas:
            produce(self.partial_topic, key=delta.model.encode(),
                    value=self.codec.encode("driftline.WindowSummary", delta.to_avro("partial")))
        for progress in result.progress:
            encoded = self.codec.encode("driftline.PartitionProgress", progress)
            produce(self.partial_topic, key=progress["model"].encode(), value=encoded)
            if progress["source_topic"] == self.predictions_topic:  # the decay stage's clock, after its rows
                produce(self.by_model_topic, key=progress["model"].encode(), value=encoded)
            metrics.ROWS_IN.labels(progress["model"]).inc(progress["rows"])
            metrics.LATE_ROWS.labels(progress["model"]).inc(progress["late_rows"])
        if result.unprofiled_rows:
            metrics.UNPROFILED_ROWS.inc(result.unprofiled_rows)

    def _idle_sources(self, assigned: list[TopicPartition]) -> list[SourcePartition]:
        """Source partitions verified quiet for ``--idle`` seconds (declarations due now)."""
        now = time.monotonic()
        for source, at_end in self.ends.poll(assigned).items():
            self.quiet.checked(source, at_end, now)
        self.quiet.forget({(tp.topic, tp.partition) for tp in assigned})
        return self.quiet.due(now)

    def _report(self, source: SourcePartition, next_offset: int) -> None:
        """The source's watermark to every partition that waits on it (see :meth:`_broadcast`)."""
        self._told[source] = closes_passed(self.windows.watermarks.get(source, NO_WATERMARK),
                                           self.window_ms, self.grace_ms)
        self._broadcast(source, idle=False, next_offset=max(next_offset, 0))

    def _broadcast(self, source: SourcePartition, *, idle: bool, next_offset: int) -> None:
        """Source progress (its watermark, or idle) to every partition of the stages that wait on the source:
        stats.partial for features and predictions, monitor.by-model for predictions and labels. Those
        partitions are keyed by model, and any model may wait on the source."""
        value = self.codec.encode("driftline.PartitionProgress", source_progress(
            source, self.windows.watermarks.get(source, NO_WATERMARK), next_offset, idle=idle))
        targets = ([self.partial_topic] if source[0] != self.labels_topic else []) + \
            ([self.by_model_topic] if source[0] in (self.predictions_topic, self.labels_topic) else [])
        for topic in targets:
            for partition in range(self.partitions.count(topic)):
                self.stage1.producer.produce(topic, key=b"", value=value, partition=partition)

    def _forwarded(self, polled: Polled) -> list[tuple[bytes, bytes]]:
        """(key, value) of the batch's predictions and labels for ``monitor.by-model``, in runs (produced in
        the batch's transaction, before its progress: the decay stage's clock comes after its rows)."""
        messages, inconsistent = label_messages(
            [e for e in polled.events if e.schema == "driftline.Label"], self.window_ms, self.codec)
        for event in inconsistent:
            metrics.DECAY_SKIPPED.inc()
            log.warning("not joined: %s[%d]@%d: its labels do not match its request ids",
                        event.topic, event.partition, event.offset)
        for source, found in polled.rows.items():
            if source[0] == self.predictions_topic:
                messages += prediction_messages(found.rows, self.window_ms, self.codec, originals=found.originals,
                                                features=self.decay.reads_features)
        return messages

    # ------------------------------------------------------------ stage 2
    def step_stage2(self, max_messages: int = 5000, timeout: float = 0.1) -> int:
        events = self.stage2.poll(max_messages, timeout)
        if self._replay:
            self._replay_detectors()
        for event in events:
            if event.schema == "driftline.WindowSummary":
                delta = WindowSummary.from_avro(event.record)
                before = self.merger.mismatched_reference_rows
                self.merger.add_delta(delta, event.partition, event.offset)
                if self.merger.mismatched_reference_rows > before:
                    metrics.REFERENCE_CHANGED_ROWS.labels(delta.model).inc(delta.rows)
                    log.warning("%s: %d rows of window %d were summarised against another profile "
                                "version and are left out of it", delta.model, delta.rows, delta.window_start)
            elif event.schema == "driftline.PartitionProgress":
                self.merger.add_progress(event.record, event.partition, event.offset)
        self.merger.watermarks.expect(self.partitions.sources(self.features_topic, self.predictions_topic))
        closing = self.merger.ready()
        if closing:
            self.stage2.begin()
        produce = self.stage2.producer.produce
        for summary in closing:
            profile = self.profiles.profiles.get(summary.model)
            merged = self.codec.encode("driftline.WindowSummary", summary.to_avro("merged"))
            produce(self.settings.topic("stats"), key=f"{summary.model}:{summary.window_start}".encode(),
                    value=merged)
            metrics.WINDOWS_CLOSED.labels(summary.model).inc()
            close_at = (summary.window_end + self.settings.grace_seconds * 1000) / 1000
            metrics.WINDOW_CLOSE_LATENCY.observe(max(0.0, time.time() - close_at))
            if profile is None or profile.version != summary.reference_version:
                log.warning("%s window %d: summarised against profile v%s, now v%s: not judged",
                            summary.model, summary.window_start, summary.reference_version,
                            profile.version if profile else "-")
                continue
            report = compare(summary, profile, self.policy)
            for f in report.features.values():
                if f.value is not None and f.method:
                    metrics.DRIFT_STATISTIC.labels(summary.model, f.name, f.method).set(f.value)
                    if f.threshold is not None:
                        metrics.DRIFT_THRESHOLD.labels(summary.model, f.name, f.method).set(f.threshold)
                    if f.p_value is not None:
                        metrics.DRIFT_P_VALUE.labels(summary.model, f.name).set(f.p_value)
            detections = self.detectors.update(summary, profile)
            alerts = [*alerts_for(report, summary), *detector_alerts(detections, summary, report.reference_version)]
            rolling = self.rolling.add(summary)
            if rolling is not None:
                alerts += rolling_alerts(compare(rolling, profile, self.policy), rolling, report,
                                         self.rolling.windows)
            for alert in alerts:
                produce(**alert_message(alert, self.settings))
                metrics.ALERTS.labels(alert.model, alert.type).inc()
                log.warning("%s", alert.summary())
        if self.stage2.in_transaction:
            assignment = self.stage2.consumer.position(self.stage2.consumer.assignment())
            safe = self.merger.commit_offsets({tp.partition: tp.offset for tp in assignment if tp.offset >= 0})
            self.stage2.commit(offsets=[TopicPartition(self.partial_topic, p, o) for p, o in safe.items()],
                               wait=False)
        return len(events)

    # ------------------------------------------------------------ service
    def record_lag(self) -> None:
        """Consumer lag of stage 1 per assigned partition (high watermark minus position)."""
        consumer = self.stage1.consumer
        for tp in consumer.position(consumer.assignment()):
            _, high = consumer.get_watermark_offsets(tp, cached=True) or (0, 0)
            if tp.offset >= 0:
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, high - tp.offset))

    def run(self, stop: Callable[[], bool], lag_every: float = 5.0) -> None:
        next_lag = 0.0
        while not stop():
            if time.monotonic() >= next_lag:
                self.record_lag()
                next_lag = time.monotonic() + lag_every
            self.profiles.poll()
            busy = self.step_stage1(timeout=0.05)
            # While stage 1 has a backlog, the other stages only take what is already there.
            self.step_stage2(timeout=0.0 if busy else 0.05)
            self.decay.step(timeout=0.0 if busy else 0.02)

    def close(self) -> None:
        for part in (self.stage1, self.stage2, self.decay, self.profiles):
            try:
                part.close()
            except Exception as exc:  # closing the others matters more
                log.warning("error while closing: %s", exc)
