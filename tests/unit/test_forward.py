"""Stage 1's forwarding to monitor.by-model: runs of rows, split under a size, every row once and in order.

The runs are found with numpy over columns; the independent reckoning is
:func:`~streams.decay.coalesce.coalesce`, the per-event grouping the decay
stage uses, applied to the same events.
"""

from __future__ import annotations

import numpy as np

from driftline.consumer import Event
from schemas import Codec, FeatureFrame, encode_columns, encode_rows
from schemas.rows import PREDICTION, Rows
from streams.decay.coalesce import coalesce
from streams.stages.forward import WHOLE_EVENT_ROWS, label_messages, prediction_messages

CODEC = Codec.default()
WINDOW_MS = 60_000


def prediction_event(offset: int, rows: int, rng: np.random.Generator, *, model: str = "churn",
                     version: str = "1", event_time: int | None = None, classes: bool = False) -> Event:
    ids = [f"r{offset}-{i}" for i in range(rows)]
    x = rng.normal(size=rows)
    plans = rng.choice(np.array(["free", "pro", "team"], dtype=object), rows).tolist()
    columns = encode_rows([{"x": float(a), "plan": p} for a, p in zip(x, plans, strict=True)]) if rows == 1 \
        else encode_columns({"x": x, "plan": plans})
    record = {"model": model, "model_version": version,
              "event_time": 1_000 + offset if event_time is None else event_time, "request_ids": ids,
              "segment": None, "columns": columns, "prediction": rng.random(rows).tobytes(),
              "predicted_class": [f"k{i % 2}" for i in range(rows)] if classes else None}
    return Event("driftline.Prediction", record, "predictions", 0, offset, None, 0)


def as_rows(events: list[Event]) -> Rows:
    return Rows.from_records(PREDICTION, [e.record for e in events])


def decoded_predictions(messages: list[tuple[bytes, bytes]]) -> list[dict]:
    return [CODEC.decode(value, "driftline.Prediction") for _, value in messages]


def test_runs_are_split_under_the_size_and_hold_every_row_once_in_order() -> None:
    rng = np.random.default_rng(3)
    events = [prediction_event(i, 1 if i % 3 else 40, rng) for i in range(60)]
    whole = prediction_messages(as_rows(events), WINDOW_MS, CODEC)
    split = prediction_messages(as_rows(events), WINDOW_MS, CODEC, max_bytes=4_000)
    assert len(whole) == 1 and len(split) > 4
    assert {key for key, _ in split} == {b"churn"}
    predictions = decoded_predictions(split)
    ids = [i for r in predictions for i in r["request_ids"]]
    assert ids == [i for e in events for i in e.record["request_ids"]]
    frame = FeatureFrame.concat(FeatureFrame.from_record(r["columns"], len(r["request_ids"])) for r in predictions)
    expected = FeatureFrame.concat(FeatureFrame.from_record(e.record["columns"], len(e.record["request_ids"]))
                                   for e in events)
    assert frame.categorical.tolist() == expected.categorical.tolist()
    assert np.array_equal(frame.numeric, expected.numeric)
    scores = np.concatenate([np.frombuffer(r["prediction"]) for r in predictions])
    assert np.array_equal(scores, np.concatenate([np.frombuffer(e.record["prediction"]) for e in events]))


def test_runs_are_the_ones_the_per_event_grouping_finds() -> None:
    """Models, versions, windows and classes mixed and interleaved: the same runs, in the same order, with
    the same rows, as coalesce() makes of the events one by one."""
    rng = np.random.default_rng(8)
    events = []
    for i in range(300):
        events.append(prediction_event(
            i, int(rng.integers(1, 4)), rng, model=str(rng.choice(["a", "b", "c"])),
            version=str(rng.choice(["1", "2", ""])), event_time=int(rng.integers(0, 4 * WINDOW_MS)),
            classes=bool(rng.random() < 0.3)))
    got = decoded_predictions(prediction_messages(as_rows(events), WINDOW_MS, CODEC))
    runs, bad = coalesce(events, WINDOW_MS)
    assert bad == [] and len(got) == len(runs) > 20
    for record, run in zip(got, runs, strict=True):
        parts = run.parts
        assert record["model"] == parts[0]["model"] and record["model_version"] == parts[0]["model_version"]
        assert record["event_time"] == max(p["event_time"] for p in parts)
        assert record["request_ids"] == [i for p in parts for i in p["request_ids"]]
        assert record["prediction"] == b"".join(p["prediction"] for p in parts)
        expected_classes = None if parts[0]["predicted_class"] is None else \
            [c for p in parts for c in p["predicted_class"]]
        assert record["predicted_class"] == expected_classes
        frame = FeatureFrame.from_record(record["columns"], len(record["request_ids"]))
        assert frame.numeric[:, 0].tolist() == [
            v for p in parts for v in np.frombuffer(p["columns"]["numeric_values"]).tolist()]


def test_an_event_of_many_rows_goes_out_as_the_bytes_it_came_in() -> None:
    """Batch events kept as they came (no merge, no encode); the smaller ones, and one whose bytes were not
    kept, still merged into their run; messages in order of their first event, every row once."""
    rng = np.random.default_rng(5)
    sizes = [1, 1, WHOLE_EVENT_ROWS, 1, 100, 3, 2, WHOLE_EVENT_ROWS - 1, 1, 100]
    events = [prediction_event(i, rows, rng) for i, rows in enumerate(sizes)]
    originals = [CODEC.encode("driftline.Prediction", e.record) for e in events]
    kept = {i: o for i, o in enumerate(originals) if i != 9}  # the last one's bytes were not kept
    messages = prediction_messages(as_rows(events), WINDOW_MS, CODEC, originals=kept)
    values = [value for _, value in messages]
    assert len(values) == 3 and values[1] is originals[2] and values[2] is originals[4]  # not re-encoded
    merged = [0, 1, 3, 5, 6, 7, 8, 9]
    assert CODEC.decode(values[0])["request_ids"] == [i for k in merged for i in events[k].record["request_ids"]]
    assert {key for key, _ in messages} == {b"churn"}
    assert len(prediction_messages(as_rows(events), WINDOW_MS, CODEC)) == 1  # without originals: one run


def test_labels_run_by_model_and_one_that_disagrees_with_its_ids_is_returned() -> None:
    good = Event("driftline.Label", {"model": "churn", "event_time": 1_030, "request_ids": ["r0-0", "r1-0"],
                                     "labels": [True, False]}, "labels", 0, 0, None, 0)
    other = Event("driftline.Label", {"model": "churn", "event_time": 1_040, "request_ids": ["r2-0"],
                                      "labels": [1.0]}, "labels", 0, 1, None, 0)
    broken = Event("driftline.Label", {"model": "churn", "event_time": 1_050, "request_ids": ["r3-0"],
                                       "labels": []}, "labels", 0, 2, None, 0)
    messages, bad = label_messages([good, other, broken], WINDOW_MS, CODEC)
    assert bad == [broken]
    assert [CODEC.decode(value, "driftline.Label")["request_ids"] for _, value in messages] == \
        [["r0-0", "r1-0", "r2-0"]]


def test_every_chunk_stays_under_the_limit_whatever_the_ids_and_texts_are() -> None:
    """The size is a bound, not a guess: long, non-ASCII request ids and categories cannot push a chunk over."""
    rng = np.random.default_rng(4)
    events = []
    for i in range(80):
        event = prediction_event(i, 1 + i % 5, rng)
        rows = len(event.record["request_ids"])
        event.record["request_ids"] = [f"{'é' * 150}-{i}-{r}" for r in range(rows)]
        events.append(event)
    split = prediction_messages(as_rows(events), WINDOW_MS, CODEC, max_bytes=6_000)
    assert len(split) > 5
    assert max(len(value) for _, value in split) <= 6_000
    ids = [i for _, value in split for i in CODEC.decode(value)["request_ids"]]
    assert ids == [i for e in events for i in e.record["request_ids"]]
    labels = [Event("driftline.Label", {"model": "churn", "event_time": 1_000, "request_ids": [f"{'ü' * 300}{i}"],
                                        "labels": ["ö" * 100]}, "labels", 0, i, None, 0) for i in range(40)]
    messages, _ = label_messages(labels, WINDOW_MS, CODEC, max_bytes=6_000)
    assert len(messages) > 3 and max(len(value) for _, value in messages) <= 6_000


def test_a_model_whose_features_the_decay_stage_never_reads_goes_without_them() -> None:
    """A classifier's predictions are forwarded with ids, times, scores and classes only, batch events
    included (their original bytes hold the features); a model that may need them keeps them whole."""
    rng = np.random.default_rng(8)
    events = [prediction_event(i, rows, rng, model=model, classes=model == "clf")
              for i, (rows, model) in enumerate([(1, "clf"), (100, "clf"), (1, "reg"), (100, "reg"), (3, "clf")])]
    originals = {i: CODEC.encode("driftline.Prediction", e.record) for i, e in enumerate(events)}
    messages = prediction_messages(as_rows(events), WINDOW_MS, CODEC, originals=originals,
                                   features=lambda model: model == "reg")
    by_model: dict[bytes, list[dict]] = {}
    for key, value in messages:
        by_model.setdefault(key, []).append(CODEC.decode(value, "driftline.Prediction"))
    clf = by_model[b"clf"]
    assert [i for r in clf for i in r["request_ids"]] == [i for k in (0, 1, 4) for i in events[k].record["request_ids"]]
    assert all(not r["columns"]["numeric_names"] and not r["columns"]["categorical_names"] for r in clf)
    assert b"".join(r["prediction"] for r in clf) == b"".join(events[k].record["prediction"] for k in (0, 1, 4))
    assert [c for r in clf for c in r["predicted_class"]] == \
        [c for k in (0, 1, 4) for c in events[k].record["predicted_class"]]
    assert all(FeatureFrame.from_record(r["columns"], len(r["request_ids"])).rows == len(r["request_ids"])
               for r in clf)  # what the decay stage decodes
    assert originals[3] in [value for _, value in messages]  # the regression's batch event as it came
    reg = by_model[b"reg"]
    assert [r["columns"]["numeric_names"] for r in reg] == [["x"], ["x"]]


def test_features_are_forwarded_unless_a_model_is_known_only_as_a_classifier() -> None:
    from driftline.estimation import Calibration
    from streams.decay.estimated import reads_features

    def calibration(task: str) -> Calibration:
        return Calibration(task=task, rows=10)

    assert reads_features([], [])  # nothing known yet: a record may bring a regression's loss model
    assert not reads_features(["classification"], [])
    assert not reads_features([], [calibration("binary")])
    assert not reads_features(["classification"], [calibration("multiclass"), calibration("binary")])
    assert reads_features(["regression"], [])
    assert reads_features(["classification"], [calibration("regression")])
