"""Stage 1's forwarding to monitor.by-model: runs of rows, split under a size, every row once and in order."""

from __future__ import annotations

import numpy as np

from driftline.consumer import Event
from schemas import Codec, FeatureFrame, encode_columns, encode_rows
from streams.stages.forward import by_model_messages

CODEC = Codec.default()


def prediction_event(offset: int, rows: int, rng: np.random.Generator) -> Event:
    ids = [f"r{offset}-{i}" for i in range(rows)]
    x = rng.normal(size=rows)
    plans = rng.choice(np.array(["free", "pro", "team"], dtype=object), rows).tolist()
    columns = encode_rows([{"x": float(a), "plan": p} for a, p in zip(x, plans, strict=True)]) if rows == 1 \
        else encode_columns({"x": x, "plan": plans})
    record = {"model": "churn", "model_version": "1", "event_time": 1_000 + offset, "request_ids": ids,
              "segment": None, "columns": columns, "prediction": rng.random(rows).tobytes(),
              "predicted_class": None}
    return Event("driftline.Prediction", record, "predictions", 0, offset, None, 0)


def test_runs_are_split_under_the_size_and_hold_every_row_once_in_order() -> None:
    rng = np.random.default_rng(3)
    events = [prediction_event(i, 1 if i % 3 else 40, rng) for i in range(60)]
    events.append(Event("driftline.Label", {"model": "churn", "event_time": 1_030, "request_ids": ["r0-0"],
                                            "labels": [True]}, "labels", 0, 0, None, 0))
    whole, _ = by_model_messages(events, 60_000, CODEC)
    split, bad = by_model_messages(events, 60_000, CODEC, max_bytes=4_000)
    assert bad == [] and len(whole) == 2 and len(split) > 4  # one prediction run and one label run, split
    assert {key for key, _ in split} == {b"churn"}
    decoded = [CODEC.decode_named(value) for _, value in split]
    predictions = [r for name, r in decoded if name == "driftline.Prediction"]
    ids = [i for r in predictions for i in r["request_ids"]]
    assert ids == [i for e in events[:-1] for i in e.record["request_ids"]]
    frame = FeatureFrame.concat(FeatureFrame.from_record(r["columns"], len(r["request_ids"])) for r in predictions)
    expected = FeatureFrame.concat(FeatureFrame.from_record(e.record["columns"], len(e.record["request_ids"]))
                                   for e in events[:-1])
    assert frame.categorical.tolist() == expected.categorical.tolist()
    assert np.array_equal(frame.numeric, expected.numeric)
    scores = np.concatenate([np.frombuffer(r["prediction"]) for r in predictions])
    assert np.array_equal(scores, np.concatenate([np.frombuffer(e.record["prediction"]) for e in events[:-1]]))
    assert [r["request_ids"] for name, r in decoded if name == "driftline.Label"] == [["r0-0"]]


def test_an_event_whose_arrays_disagree_with_its_ids_is_left_out_and_returned() -> None:
    rng = np.random.default_rng(4)
    good, broken = prediction_event(0, 2, rng), prediction_event(1, 2, rng)
    broken = broken._replace(record={**broken.record, "prediction": b"\x00" * 8})
    messages, bad = by_model_messages([good, broken], 60_000, CODEC)
    assert bad == [broken]
    assert CODEC.decode(messages[0][1])["request_ids"] == good.record["request_ids"]


def test_every_chunk_stays_under_the_limit_whatever_the_ids_and_texts_are() -> None:
    """The size is a bound, not a guess: long, non-ASCII request ids and categories cannot push a chunk over."""
    rng = np.random.default_rng(4)
    events = []
    for i in range(80):
        event = prediction_event(i, 1 + i % 5, rng)
        rows = len(event.record["request_ids"])
        event.record["request_ids"] = [f"{'é' * 150}-{i}-{r}" for r in range(rows)]
        events.append(event)
    split, bad = by_model_messages(events, 60_000, CODEC, max_bytes=6_000)
    assert bad == [] and len(split) > 5
    assert max(len(value) for _, value in split) <= 6_000
    ids = [i for _, value in split for i in CODEC.decode(value)["request_ids"]]
    assert ids == [i for e in events for i in e.record["request_ids"]]
