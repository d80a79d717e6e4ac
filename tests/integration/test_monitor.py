"""The monitor worker on the real broker: detection, exact windows across SIGKILL, no duplicate alerts."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from driftline import Producer
from driftline.deadletter import DeadLetter
from driftline.estimation import calibrate
from driftline.kafka_clients import make_producer
from schemas import Codec, Table, encode_rows
from streams.drift.profile import Profile
from streams.drift.summary import WindowSummary, summarize
from streams.stages.decay import DECAY_GROUP
from streams.stages.forward import BY_MODEL_TOPIC, WHOLE_EVENT_ROWS
from tests.integration.helpers import group_members, read_topic, service_env, wait_for_members

pytestmark = pytest.mark.integration

WINDOW_MS = 2000
TYPES = {"x": "float", "y": "float", "plan": "string"}
BASE = 1_700_000_000_000  # synthetic event time: windows do not depend on the wall clock


def columns(rng: np.random.Generator, rows: int, shift: float = 0.0) -> dict:
    return {"x": rng.normal(size=rows) + shift, "y": rng.normal(5, 2, size=rows),
            "plan": list(rng.choice(["a", "b", "c"], rows))}


@pytest.fixture
def profiled(settings):
    return settings, publish_profile(settings)


def publish_profile(settings, model: str = "m") -> Profile:
    """A model's reference profile, published (with segments: every test carries them through Kafka)."""
    rng = np.random.default_rng(0)
    table = Table({k: (np.array(v, dtype=object) if k == "plan" else v)
                   for k, v in columns(rng, 10_000).items()}, TYPES)
    profile = Profile.build(table, model, segment_by=["plan"])
    producer = make_producer(settings)
    producer.produce(settings.topic("profiles"), key=model.encode(), value=profile.to_bytes())
    assert producer.flush(30) == 0
    return profile


def start_monitor(settings, instance="t", stderr=subprocess.PIPE, idle: float = 3.0):
    env = service_env(settings)
    return subprocess.Popen(
        [sys.executable, "-m", "driftline.cli.main", "monitor", "--window", str(WINDOW_MS / 1000),
         "--grace", "0.5", "--idle", str(idle), "--metrics-port", "0", "--instance", instance],
        env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)


def produce_stream(settings, events: int, rows: int, shift_from_window: int | None, seed: int = 1,
                   pace: float = 0.0, on_event=None, flush_s: float = 60.0, **kafka_config):
    """Deterministic events: event i has time BASE + i * 100 ms (20 events per window).

    ``on_event()`` is called after each event the SDK accepted (a test can watch it block); ``flush_s``: how
    long the SDK may wait at the end for the broker to acknowledge them (across a failure: as long as the
    failure may last)."""
    rng = np.random.default_rng(seed)
    sent = []
    with Producer(model="m", settings=settings, **kafka_config) as producer:
        for i in range(events):
            t = BASE + i * 100
            shift = 1.0 if shift_from_window is not None and (t - BASE) // WINDOW_MS >= shift_from_window else 0.0
            cols = columns(rng, rows, shift)
            producer.predictions(cols, np.zeros(rows), event_time=t)
            sent.append((t, cols))
            if on_event is not None:
                on_event()
            if pace:
                time.sleep(pace)
        # Advance every partition's watermark past the last window.
        for j in range(40):
            producer.predictions(columns(rng, 1), np.zeros(1), event_time=BASE + events * 100 + 10 * WINDOW_MS + j)
        producer.flush(flush_s)
    return sent


def expected_windows(sent, profile) -> dict[int, WindowSummary]:
    by_window = collections.defaultdict(list)
    for t, cols in sent:
        by_window[t // WINDOW_MS * WINDOW_MS].append(cols)
    out = {}
    for start, parts in by_window.items():
        table = Table({"x": np.concatenate([p["x"] for p in parts]), "y": np.concatenate([p["y"] for p in parts]),
                       "plan": np.array([v for p in parts for v in p["plan"]], dtype=object)}, TYPES)
        out[start] = summarize(table.to_frame(), profile, start, start + WINDOW_MS)
    return out


def closed_windows(settings, want: set[int], timeout: float = 90.0) -> dict[int, WindowSummary]:
    codec = Codec.default()
    deadline = time.monotonic() + timeout
    found: dict[int, WindowSummary] = {}
    while time.monotonic() < deadline and not want <= set(found):
        for m in read_topic(settings, settings.topic("stats"), timeout=2):
            summary = WindowSummary.from_avro(codec.decode(m.value()))
            found[summary.window_start] = summary
        time.sleep(0.5)
    return found


def assert_same_window(got: WindowSummary, want: WindowSummary) -> None:
    assert got.rows == want.rows
    for name, w in want.features.items():
        g = got.features[name]
        assert (g.count, g.nulls) == (w.count, w.nulls), name
        if w.kind == "numeric":
            np.testing.assert_array_equal(g.histogram, w.histogram)
            np.testing.assert_array_equal(g.fine_counts, w.fine_counts)
            assert g.mean == pytest.approx(w.mean, rel=1e-9, abs=1e-12)
            assert g.m2 == pytest.approx(w.m2, rel=1e-9)
        else:
            assert g.categories == w.categories
    np.testing.assert_array_equal(got.multivariate, want.multivariate)  # PCA error counts, merged exactly
    assert want.multivariate.sum() in (0, want.rows)
    assert sorted(got.segments) == sorted(want.segments)
    for key, part in want.segments.items():
        assert got.segments[key].rows == part.rows, key
        np.testing.assert_array_equal(got.segments[key].features["x"].histogram, part.features["x"].histogram)


def stop(process, log: Path | None = None):
    """SIGTERM and wait; a process that does not stop dumps its threads' stacks (SIGUSR1) into the failure."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        time.sleep(2)
        process.kill()
        process.wait()
        output = log.read_text() if log is not None else process.stderr.read() if process.stderr else ""
        pytest.fail("monitor did not stop on SIGTERM; the end of its stderr (with its stacks):\n"
                    + output[-6000:])


def test_monitor_summarises_windows_exactly_and_alerts_on_drift(profiled):
    settings, profile = profiled
    monitor = start_monitor(settings)
    try:
        sent = produce_stream(settings, events=100, rows=50, shift_from_window=3)
        expected = expected_windows(sent, profile)
        got = closed_windows(settings, set(expected))
    finally:
        stop(monitor)
    assert monitor.returncode == 0, monitor.stderr.read()
    for start, want in expected.items():
        assert_same_window(got[start], want)
    alerts = [json.loads(m.value()) for m in read_topic(settings, settings.topic("alerts"))]
    drift = {a["data"]["window_start"]: a for a in alerts
             if a["type"] == "driftline.drift" and "segment" not in a["data"]}
    assert BASE + 3 * WINDOW_MS in drift, "the first shifted window raises a drift alert"
    segments = {a["data"]["segment"] for a in alerts
                if a["type"] == "driftline.drift" and a["data"].get("window_start") == BASE + 3 * WINDOW_MS
                and "segment" in a["data"]}
    assert segments == {"plan=a", "plan=b", "plan=c"}, "each cohort's shift is named too"
    first = drift[BASE + 3 * WINDOW_MS]
    names = [f["name"] for f in first["data"]["features"]]
    # x's shift also moves rows off the reference's principal axes: the multivariate test may name it too
    assert names[0] == "x" and set(names) <= {"x", "(multivariate)"}
    feature = first["data"]["features"][0]
    assert feature["statistic"] == "chi2" and feature["rows"] == 1000
    assert feature["value"] > feature["threshold"] and feature["p_value"] < feature["alpha"]
    assert first["data"]["sample_size"] == 1000 and first["data"]["reference_version"] == "1"
    assert all(a["data"]["window_start"] >= BASE + 3 * WINDOW_MS for a in alerts if a["type"] == "driftline.drift"), \
        "no drift alert (global or per segment) on the stable windows"


def stream_through_a_failure(settings, profile, fail, timeout: float = 90.0):
    """160 paced events (the shift from window 4), ``fail()`` 2.5 s in (mid-stream, mid-window), then
    the windows the monitor closed: (events sent, windows expected offline, windows closed)."""
    import threading

    sent: list = []
    # The SDK waits for the acknowledgements as long as the failure may last (a cluster restarted on a busy
    # machine: CI once saw 129 events unacknowledged after the SDK's default 60 s, and no event sent).
    producer = threading.Thread(target=lambda: sent.extend(
        produce_stream(settings, events=160, rows=50, shift_from_window=4, pace=0.03, flush_s=timeout)))
    producer.start()
    time.sleep(2.5)
    fail()
    producer.join(timeout=timeout + 60)
    assert not producer.is_alive(), "the producer finished"
    assert len(sent) == 160, "the SDK delivered every event (else its thread said why, above)"
    expected = expected_windows(sent, profile)
    return sent, expected, closed_windows(settings, set(expected), timeout=timeout)


def assert_exact_and_alerted_once(settings, expected, got) -> None:
    """Every window equals the offline computation; the shifted ones raised alerts, none twice."""
    assert set(expected) <= set(got)
    for start, want in expected.items():
        assert_same_window(got[start], want)
    ids = [json.loads(m.value())["id"] for m in read_topic(settings, settings.topic("alerts"))]
    assert ids, "the shifted windows raised alerts"
    assert len(ids) == len(set(ids)), "no alert id appears twice"


def test_a_model_whose_traffic_stops_gets_its_last_window_closed_while_another_model_streams(profiled):
    """The partitions go on carrying model 'other': their progress (sent to every partition at each window
    close) must move 'm' on too, though no row of 'm' arrives again and no partition is ever idle.

    Both models share each event time while 'm' streams, so stage 1's batches (it keeps up) end near m's
    last row: m's own progress alone would leave its window open for as long as 'other' streams."""
    import threading

    settings, profile = profiled
    publish_profile(settings, "other")
    monitor = start_monitor(settings, instance="two")
    codec = Codec.default()
    m_from: list[int] = []  # the index m's 20 events start at, once the monitor is keeping up
    at = [0]
    sent: list = []
    stop_other = threading.Event()

    def stream() -> None:
        rng = np.random.default_rng(9)
        with Producer(model="other", settings=settings) as other, Producer(model="m", settings=settings) as m:
            while not stop_other.is_set():
                i = at[0]
                t = BASE + i * 100
                other.predictions(columns(rng, 5), np.zeros(5), event_time=t)
                if m_from and m_from[0] <= i < m_from[0] + 20:
                    cols = columns(rng, 30)
                    m.predictions(cols, np.zeros(30), event_time=t)
                    sent.append((t, cols))
                at[0] = i + 1
                time.sleep(0.03)

    def stats_of(model: str) -> dict[int, WindowSummary]:
        found = {}
        for message in read_topic(settings, settings.topic("stats"), timeout=2):
            summary = WindowSummary.from_avro(codec.decode(message.value()))
            if summary.model == model:
                found[summary.window_start] = summary
        return found

    streaming = threading.Thread(target=stream)
    streaming.start()
    try:
        deadline = time.monotonic() + 90
        while not stats_of("other") and time.monotonic() < deadline:
            time.sleep(0.5)  # the monitor is up and keeping up
        m_from.append((at[0] // 20 + 2) * 20)  # a window of m's own, starting a little ahead
        start = BASE + m_from[0] * 100
        found = None
        while found is None and time.monotonic() < deadline:
            found = stats_of("m").get(start)
        still_streaming = streaming.is_alive() and not stop_other.is_set()
    finally:
        stop_other.set()
        streaming.join(timeout=30)
        stop(monitor)
    assert len(sent) == 20
    assert found is not None and still_streaming, "m's last window closed while 'other' kept every partition busy"
    assert_same_window(found, expected_windows(sent, profile)[start])


def test_window_summaries_survive_sigkill_exactly_and_alerts_are_not_repeated(profiled):
    settings, profile = profiled
    monitors = [start_monitor(settings, instance="k")]

    def crash_and_restart() -> None:
        monitors[0].send_signal(signal.SIGKILL)
        monitors[0].wait()
        time.sleep(1.0)
        monitors[0] = start_monitor(settings, instance="k")

    try:
        _, expected, got = stream_through_a_failure(settings, profile, crash_and_restart)
    finally:
        stop(monitors[0])
    assert_exact_and_alerted_once(settings, expected, got)


def test_bad_events_are_dead_lettered_and_counts_reconcile(profiled):
    settings, profile = profiled
    raw = make_producer(settings)
    for i in range(7):
        raw.produce(settings.topic("predictions"), key=f"bad{i}".encode(), value=b"not avro")
    # Decodable, but arrays that disagree with their request ids: a stage that summarised or joined them
    # would fail on every restart, so stage 1 dead-letters them too.
    codec = Codec.default()
    one = encode_rows([{"x": 1.0, "plan": "a"}])
    inconsistent = {
        b"short-numbers": {"model": "m", "model_version": "", "event_time": BASE, "request_ids": ["p", "q"],
                           "columns": one, "prediction": np.zeros(2).tobytes()},
        b"short-scores": {"model": "m", "model_version": "", "event_time": BASE, "request_ids": ["s"],
                          "columns": one, "prediction": b""},
    }
    for key, record in inconsistent.items():
        raw.produce(settings.topic("predictions"), key=key, value=codec.encode("driftline.Prediction", record))
    raw.flush()
    monitor = start_monitor(settings, instance="d")
    try:
        sent = produce_stream(settings, events=60, rows=20, shift_from_window=None)
        with Producer(model="m", settings=settings) as late:  # a window long closed: late rows
            late.predictions(columns(np.random.default_rng(5), 30), np.zeros(30), event_time=BASE)
        expected = expected_windows(sent, profile)
        tail = (BASE + 60 * 100 + 10 * WINDOW_MS) // WINDOW_MS * WINDOW_MS  # closed once partitions idle
        got = closed_windows(settings, set(expected) | {tail})
        deadline = time.monotonic() + 30
        late_rows = 0
        while time.monotonic() < deadline and late_rows < 30:
            codec = Codec.default()
            late_rows = sum(codec.decode(m.value()).get("late_rows", 0)
                            for m in read_topic(settings, settings.topic("stats.partial"), timeout=2)
                            if codec.writer_name(m.value()) == "driftline.PartitionProgress")
            time.sleep(0.5)
    finally:
        stop(monitor)
    dead = read_topic(settings, settings.topic("deadletter"), 9)
    assert len(dead) == 9
    reasons = {m.key(): DeadLetter.from_message(m.value(), m.key(), m.headers()).reason for m in dead}
    assert "numeric block has 8 bytes, 16 expected" in reasons[b"short-numbers"]
    assert "scores do not match its request ids" in reasons[b"short-scores"]
    rows_in = sum(len(c["x"]) for _, c in sent) + 40 + 30
    aggregated = sum(w.rows for w in got.values())
    assert late_rows == 30
    assert aggregated + late_rows == rows_in, "events in = aggregated + late (+ the 7 dead letters, not rows)"



def test_an_event_sent_twice_is_counted_once_while_running_and_across_a_sigkill(profiled):
    """A producer's repeat (librdkafka re-sends what was in flight after an epoch bump; an application
    retries) is dead-lettered with the offset it repeats, and its window stays exact: a repeat arriving
    while the monitor runs, and one arriving after a SIGKILL whose original lies before the committed offset
    (found by reading back on assignment). Both windows are still open when their repeat comes."""
    from confluent_kafka import Consumer, TopicPartition

    from driftline.kafka_clients import consumer_config
    from streams.stages.monitor import STAGE1_GROUP

    settings, profile = profiled
    topic = settings.topic("predictions")
    codec = Codec.default()
    rng = np.random.default_rng(3)
    sent: list = []
    firsts: dict[int, str] = {}
    raw = make_producer(settings)

    def send(producer, events: range) -> None:
        for i in events:
            cols = columns(rng, 20)
            firsts[i] = producer.predictions(cols, np.zeros(20), event_time=BASE + i * 100)[0]
            sent.append((BASE + i * 100, cols))
        producer.flush()

    def repeat(i: int) -> tuple[int, int]:
        """Event i's bytes again, on its partition: (the original's offset, the repeat's offset)."""
        original = next(m for m in read_topic(settings, topic, timeout=5)
                        if codec.decode(m.value())["request_ids"][0] == firsts[i])
        offsets: list[int] = []
        raw.produce(topic, key=original.key(), value=original.value(), partition=original.partition(),
                    on_delivery=lambda err, m: offsets.append(-1 if err else m.offset()))
        raw.flush(30)
        assert offsets and offsets[0] >= 0
        return original.offset(), offsets[0]

    def committed_everything() -> bool:
        probe = Consumer(consumer_config(settings, settings.group(STAGE1_GROUP)))
        try:
            parts = probe.list_topics(topic, timeout=10).topics[topic].partitions
            done = probe.committed([TopicPartition(topic, p) for p in parts], timeout=10)
            return all(tp.offset >= probe.get_watermark_offsets(TopicPartition(topic, tp.partition),
                                                                 timeout=10)[1] for tp in done)
        finally:
            probe.close()

    monitor = start_monitor(settings, instance="r", idle=60.0)  # windows close by event time only
    try:
        with Producer(model="m", settings=settings) as producer:
            send(producer, range(60))  # windows 0-2; window 2 stays open (the watermark is inside it)
            deadline = time.monotonic() + 60
            while not committed_everything():
                assert time.monotonic() < deadline, "stage 1 committed what it read"
                time.sleep(0.1)
            monitor.kill()
            monitor.wait()
            after_crash = repeat(55)  # its original was read and committed by the worker that died
            monitor = start_monitor(settings, instance="r", idle=60.0)
            send(producer, range(60, 80))
            time.sleep(2)
            while_running = repeat(75)  # window 3, still open
            send(producer, range(80, 100))
            for j in range(40):  # every partition's watermark past the last window
                producer.predictions(columns(rng, 1), np.zeros(1), event_time=BASE + 100 * 100 + 10 * WINDOW_MS + j)
        expected = expected_windows(sent, profile)
        got = closed_windows(settings, set(expected))
    finally:
        stop(monitor)
    dead = [DeadLetter.from_message(m.value(), m.key(), m.headers())
            for m in read_topic(settings, settings.topic("deadletter"), timeout=5)]
    assert sorted((d.source_offset, d.reason) for d in dead) == sorted(
        (again, f"a repeat of the event at offset {first} (the same model, version, first request id and "
                "time): a producer sent it twice, and its rows are counted once")
        for first, again in (after_crash, while_running))
    assert set(expected) <= set(got)
    for start, want in expected.items():
        assert_same_window(got[start], want)


def test_decay_quality_windows_are_exact_across_sigkill_and_raise_decay_alerts(profiled):
    """Labels joined to predictions (either order), windowed accuracy = numpy's, decay alert after the drop,
    across a SIGKILL of each of two workers while events go on arriving.

    Two workers, and labels batched differently from their predictions (so keyed differently, so often on
    another partition): the join still sees every pair, because the router puts a model's rows together.
    """
    settings, profile = profiled
    with_metrics = Profile.from_bytes(profile.to_bytes())
    with_metrics.metrics = {"accuracy": 0.9}
    # The model's calibration: on the reference a score of 0.8 was right 90 % of the time, so the
    # monitor estimates accuracy 0.9 in every window of predictions, before any label. The drop in
    # window 5 is concept drift (same scores, other labels): no label-free method can see it.
    calibration_rng = np.random.default_rng(11)
    reference_truth = calibration_rng.random(4000) < 0.5
    reference_right = calibration_rng.random(4000) < 0.9
    reference_scores = np.where(reference_right == reference_truth, 0.8, 0.2)
    with_metrics.calibration = calibrate(reference_truth.astype(int), reference_scores)
    p_high, p_low = with_metrics.calibration.probabilities(np.r_[0.8, 0.2])  # P(y = 1 | score)
    publisher = make_producer(settings)
    publisher.produce(settings.topic("profiles"), key=b"m", value=with_metrics.to_bytes())
    publisher.flush()
    rng = np.random.default_rng(3)
    windows, per_window = 10, 20
    assert 20 < WHOLE_EVENT_ROWS <= 40  # events of 40 rows are forwarded as they came, those of 20 merged into runs
    truth_by_window: dict[int, list[np.ndarray]] = collections.defaultdict(list)
    correct_by_window: dict[int, list[np.ndarray]] = collections.defaultdict(list)
    predictions_by_window: dict[int, int] = collections.defaultdict(int)
    positive_by_window: dict[int, int] = collections.defaultdict(int)  # predictions scored 0.8

    def send_labels(producer: Producer, ids: list[str], truth: np.ndarray, at: int) -> None:
        for part in (slice(0, 7), slice(7, None)):  # two batches keyed by ids[0] and ids[7]
            producer.labels(ids[part], truth[part].tolist(), event_time=at)

    def send(first: int, last: int) -> None:
        with Producer(model="m", settings=settings, model_version="7") as producer:
            for i in range(first, last):
                rows = 40 if i % 2 else 20
                t = BASE + i * (WINDOW_MS // per_window)
                window = (t + 300 - BASE) // WINDOW_MS
                truth = rng.random(rows) < 0.5
                correct = rng.random(rows) < (0.9 if window < 5 else 0.6)
                predicted = np.where(correct, truth, ~truth)
                ids = [f"r{i}-{j}" for j in range(rows)]
                labels_first = i % 7 == 0
                if labels_first:
                    send_labels(producer, ids, truth, t + 300)
                producer.predictions(columns(rng, rows), np.where(predicted, 0.8, 0.2), request_ids=ids,
                                     event_time=t)
                if not labels_first:
                    send_labels(producer, ids, truth, t + 300)
                start = BASE + window * WINDOW_MS
                truth_by_window[start].append(truth)
                correct_by_window[start].append(correct)
                predictions_by_window[t // WINDOW_MS * WINDOW_MS] += rows
                positive_by_window[t // WINDOW_MS * WINDOW_MS] += int(predicted.sum())
                time.sleep(0.01)

    total = windows * per_window - 3  # the last window's last labels fall beyond it
    # --idle 6: a source declared idle that then resumes may see a window closed without it (the rule
    # for idle sources); here nothing pauses that long, only the workers do.
    workers = {name: start_monitor(settings, instance=name, idle=6) for name in ("q", "q2")}
    by_model = settings.topic(BY_MODEL_TOPIC)
    try:
        send(0, total // 3)
        wait_for_members(settings, settings.group(DECAY_GROUP), 2)
        home, deadline = None, time.monotonic() + 30
        while home is None:  # where the model's rows go, once a worker forwarded some
            assert time.monotonic() < deadline, "a worker forwards the model's rows"
            home = next((m.partition() for m in read_topic(settings, by_model, timeout=2) if m.key() == b"m"), None)
        joining = next(name for name, parts in group_members(settings, settings.group(DECAY_GROUP)).items()
                       if (by_model, home) in parts)
        # First the worker that does *not* join model m: its stage-1 partitions stop while the survivor's
        # labels and predictions run ahead and its decay stage goes on closing windows. Then the one that
        # does: its join and windows are rebuilt from the committed (held-back) offsets.
        for victim in sorted(workers, key=lambda name: f"{name}-3" == joining):
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            send(*((total // 3, total // 2) if f"{victim}-3" != joining else (2 * total // 3, 5 * total // 6)))
            time.sleep(1.0)
            workers[victim] = start_monitor(settings, instance=victim, idle=6)
            send(*((total // 2, 2 * total // 3) if f"{victim}-3" != joining else (5 * total // 6, total)))
        codec = Codec.default()
        deadline = time.monotonic() + 60
        records: list[dict] = []
        last_prediction = BASE + (total - 1) * (WINDOW_MS // per_window)
        closed = {s for s in predictions_by_window if s + WINDOW_MS + 500 <= last_prediction}
        while time.monotonic() < deadline and not (
                set(truth_by_window) <= {r["window_start"] for r in records if not r["estimated"]}
                and closed <= {r["window_start"] for r in records if r["estimated"]}):
            records = [codec.decode(m.value(), "driftline.QualitySummary")
                       for m in read_topic(settings, settings.topic("quality"), timeout=2)]
            time.sleep(0.5)
    finally:
        for worker in workers.values():
            stop(worker)
    estimated = [r for r in records if r["estimated"]]
    assert closed and len({r["window_start"] for r in estimated}) == len(estimated), "estimated once per window"
    assert closed <= {r["window_start"] for r in estimated}, "every closed window of predictions is estimated"
    for record in estimated:
        assert record["rows"] == predictions_by_window[record["window_start"]], "no prediction lost or doubled"
        high = positive_by_window[record["window_start"]]
        low = record["rows"] - high  # a row scored 0.8 is right with P(y=1 | 0.8), one scored 0.2 with P(y=0 | 0.2)
        assert record["metrics"]["accuracy"] == pytest.approx((high * p_high + low * (1 - p_low)) / record["rows"])
        assert record["lower"]["accuracy"] < record["metrics"]["accuracy"] < record["upper"]["accuracy"]
    records = [r for r in records if not r["estimated"]]
    quality = {r["window_start"]: r for r in records}
    assert len(quality) == len(records), "a quality window was published twice"
    assert set(truth_by_window) <= set(quality)
    for start, parts in correct_by_window.items():
        record = quality[start]
        assert record["rows"] == sum(len(p) for p in parts), ("no pair lost or counted twice", start, {
            s: (quality[s]["rows"], sum(len(p) for p in ps)) for s, ps in correct_by_window.items() if s in quality})
        assert record["metrics"]["accuracy"] == pytest.approx(np.concatenate(parts).mean())
        assert record["model_version"] == "7" and record["baseline_source"] == "profile"
        assert {"f1", "log_loss", "roc_auc"} <= set(record["metrics"])
    alerts = [json.loads(m.value()) for m in read_topic(settings, settings.topic("alerts"))]
    decay = [a for a in alerts if a["type"] == "driftline.decay"]
    flagged = {a["data"]["window_start"] for a in decay if a["data"].get("metrics_failed", [{}])[0].get(
        "statistic") == "accuracy"}
    assert BASE + 5 * WINDOW_MS in flagged, "the first window after the quality drop raises a decay alert"
    assert all(start >= BASE + 5 * WINDOW_MS for start in flagged), "no decay alert before the drop"
    ids = [a["id"] for a in alerts]
    assert len(ids) == len(set(ids))
