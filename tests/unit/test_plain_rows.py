"""A polled batch's plain events grouped by source partition (driftline.consumer.plain_rows), no broker.

The messages are confluent-kafka ``Message`` objects as ``consume`` returns
them, from two topics and three partitions, interleaved in runs and one by
one; the reckoning to compare with is a plain loop over them that reads each
event alone with fastavro.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from confluent_kafka import Message

from driftline.consumer import DECODE_SLICE, plain_rows
from schemas import Codec
from schemas.rows import FEATURES, PREDICTION
from tests.unit.test_batch_decode import fastavro_read, framed, one_row

CARRIES = {"predictions": PREDICTION, "features": FEATURES}


def features_of(record: dict) -> dict:
    return {k: record[k] for k in ("model", "event_time", "request_ids", "segment", "columns")}


def test_plain_events_are_grouped_by_source_in_offset_order_and_the_wrong_kind_is_left_out() -> None:
    """A reader that has learnt no layout yet (a worker's first batch) takes them all too."""
    rng = random.Random(3)
    codec = Codec(Codec.default()._current)
    messages: list[Message] = []
    next_offset = {}
    kinds = []
    count = DECODE_SLICE + 700  # two decode slices
    for i in range(count):
        topic = "predictions" if rng.random() < 0.7 else "features"
        partition = (i // 50) % 3 if i < count // 2 else rng.randrange(3)  # runs first, then one by one
        record = one_row(rng, 0, "m", "v1", 1_700_000_000_000 + i, f"r{i}", ["a", "b"])
        kind = CARRIES[topic] if rng.random() > 0.02 else FEATURES if topic == "predictions" else PREDICTION
        value = framed(codec, kind, record if kind == PREDICTION else features_of(record))
        offset = next_offset.get((topic, partition), 0)
        next_offset[(topic, partition)] = offset + 1
        messages.append(Message(topic=topic, partition=partition, offset=offset, value=value))
        kinds.append(kind)

    parts: dict = {}
    taken = plain_rows(codec, lambda topic, schema: CARRIES[topic] == schema, messages, parts)

    right_kind = np.array([CARRIES[m.topic()] == kind for m, kind in zip(messages, kinds, strict=True)])
    assert not taken[~right_kind].any(), "an event of the kind its topic does not carry is left to decode()"
    assert taken[right_kind].all(), "every plain event of the kind its topic carries is taken"
    expected: dict = {}
    for message, took in zip(messages, taken, strict=True):
        if took:
            expected.setdefault((message.topic(), message.partition()), []).append(message)
    assert set(parts) == set(expected)
    for source, pieces in parts.items():
        offsets = np.concatenate([o for o, _ in pieces])
        assert offsets.tolist() == [m.offset() for m in expected[source]], "each source in offset order"
        ids = [i for _, rows in pieces for i in rows.request_ids]
        numbers = np.concatenate([rows.frame.numeric for _, rows in pieces])
        for k, message in enumerate(expected[source]):
            record = fastavro_read(codec, CARRIES[source[0]], message.value())
            assert ids[k] == record["request_ids"][0]
            assert numbers[k].tobytes() == record["columns"]["numeric_values"]


def test_a_batch_drops_end_of_partition_events_raises_other_errors_and_skips_shadows() -> None:
    from confluent_kafka import KafkaError, KafkaException

    from driftline.consumer import answered_records, records_of

    plain = [Message(topic="t", partition=0, offset=i, value=b"x") for i in range(3)]
    assert records_of(plain) is plain, "the common batch passes as it is"
    end = Message(error=KafkaError(KafkaError._PARTITION_EOF))
    assert records_of([plain[0], end, plain[1]]) == [plain[0], plain[1]]
    with pytest.raises(KafkaException):
        records_of([plain[0], Message(error=KafkaError(KafkaError._TRANSPORT))])
    shadow = Message(topic="t", partition=0, offset=9, value=b"x", headers=[("driftline.role", b"shadow")])
    champion = Message(topic="t", partition=0, offset=10, value=b"x", headers=[("driftline.role", b"champion")])
    assert answered_records(plain) is plain
    assert answered_records([plain[0], shadow, champion, plain[1]]) == [plain[0], champion, plain[1]]
