"""Reading against the real broker: a batch bounded in bytes (large events make small batches), and a range
that starts before what retention kept.

Stage 1 reads up to 20,000 events or 8 MiB a transaction. The bound used to
be checked only between slices of 2,048 messages, so a batch of 100-row
events (18 KB each) came out 37 MB: a frame of 200,000 rows per transaction
and page faults for all of it.
"""

from __future__ import annotations

import pytest

from driftline.consumer import FIRST_SLICE, EventReader
from driftline.kafka_clients import make_producer

pytestmark = pytest.mark.integration

LARGE = 100_000  # bytes a message
BOUND = 350_000  # bytes a batch: three messages and a half


def test_a_batch_bounded_in_bytes_stops_near_the_bound_however_large_its_messages(settings):
    topic = settings.topic("predictions")
    producer = make_producer(settings)
    for i in range(40):
        producer.produce(topic, value=bytes([i]) * LARGE, partition=0)
    assert producer.flush(30) == 0
    reader = EventReader(settings, settings.group("batches"), [topic], stage="test")
    try:
        batches: list[int] = []
        for _ in range(200):
            if sum(batches) >= 40:
                break
            got = reader.poll_messages(5000, 0.5, max_bytes=BOUND)
            if got:
                batches.append(len(got))
        assert sum(batches) == 40, batches
        assert batches[0] <= FIRST_SLICE, "a reader that knows no sizes yet takes a small first slice"
        assert max(batches[1:]) <= BOUND // LARGE + 1, f"no batch passes the bound by more than a message: {batches}"
    finally:
        reader.close()


def test_a_range_that_starts_before_what_retention_kept_is_read_from_the_earliest_record(settings):
    """A read-back on assignment (driftline.repeats) may reach below the log start: it reads what is kept,
    and ends, instead of waiting out its timeout at the end of the partition."""
    import time

    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    from driftline.offsets import OffsetRange, read_ranges

    topic = settings.topic("features")
    producer = make_producer(settings)
    for i in range(10):
        producer.produce(topic, value=bytes([i]), partition=0)
    assert producer.flush(30) == 0
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    for future in admin.delete_records([TopicPartition(topic, 0, 6)]).values():
        future.result(30)
    began = time.monotonic()
    got = [m.offset() for batch in read_ranges(settings, [OffsetRange(topic, 0, 2, 9)], timeout=30,
                                               from_earliest=True) for m in batch]
    assert got == [6, 7, 8]
    assert time.monotonic() - began < 20, "it ended at the range's end, not at its timeout"
