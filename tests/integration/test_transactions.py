"""A stage's transaction committed without waiting (``commit(wait=False)``), against the real broker.

The monitor's stages start their commit and get on with the other stages;
these tests hold the promise that makes that safe: the outputs and offsets
are committed together once the reader next touches Kafka (or closes), and a
commit that failed is raised there, never lost.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException
from confluent_kafka import Producer as KafkaProducer

from driftline import Producer
from driftline.consumer import TRANSACTION_TIMEOUT_S, EventReader
from driftline.kafka_clients import make_producer
from driftline.settings import Settings
from tests.integration.helpers import read_topic

pytestmark = pytest.mark.integration


def predictions(settings: Settings, count: int) -> None:
    with Producer(model="m", settings=settings) as producer:
        for i in range(count):
            producer.prediction({"age": float(i)}, 0.5, request_id=f"r{i}")


def reader(settings: Settings, transactional_id: str) -> EventReader:
    topic = settings.topic("predictions")
    return EventReader(settings, settings.group("tx-test"), [topic], expect={topic: "driftline.Prediction"}, stage="test",
                       transactional_id=settings.group(transactional_id))


def read_all(reader: EventReader, count: int) -> None:
    for _ in range(60):
        if reader.consumed >= count:
            return
        reader.poll(100, 0.5)
    raise AssertionError(f"read {reader.consumed} of {count} events")


def test_a_commit_not_waited_for_is_whole_once_the_reader_closes(settings):
    """Outputs and offsets of a commit started with wait=False: both there after close(), and a second
    reader of the group starts after them."""
    predictions(settings, 5)
    out = settings.topic("alerts")
    first = reader(settings, "tx-a")
    read_all(first, 5)
    first.begin()
    first.producer.produce(out, key=b"k", value=b"the batch's result")
    first.commit(wait=False)
    first.close()  # settles the commit
    assert [m.value() for m in read_topic(settings, out, 1)] == [b"the batch's result"]
    second = reader(settings, "tx-b")
    assert second.poll(100, 3.0) == [] and second.consumed == 0, "the offsets were committed with the output"
    second.close()


def fenced_batch(settings: Settings, name: str, events: int) -> tuple[EventReader, KafkaProducer, str]:
    """A reader that read ``events`` and produced its batch's output, then fenced by a newer producer with
    its transactional id (the reader's commit will fail); with the newer producer and the output topic."""
    predictions(settings, events)
    out = settings.topic("alerts")
    first = reader(settings, name)
    read_all(first, events)
    first.begin()
    first.producer.produce(out, key=b"k", value=b"never committed")
    timeout_ms = int(TRANSACTION_TIMEOUT_S * 1000)  # as the reader's own producer
    newer = make_producer(settings, **{"transactional.id": settings.group(name),
                                       "transaction.timeout.ms": timeout_ms, "delivery.timeout.ms": timeout_ms})
    newer.init_transactions(30)
    return first, newer, out


def test_a_failed_commit_not_waited_for_is_raised_at_the_next_poll(settings):
    """Its commit fails, and the reader says so the next time it reads instead of reading on as if its
    batch were committed."""
    first, newer, out = fenced_batch(settings, "tx-fenced", 3)
    first.commit(wait=False)
    with pytest.raises(KafkaException):
        first.poll(100, 0.5)
    first.consumer.close()
    newer.flush(10)
    del newer, first  # librdkafka clients close when collected, before the session's broker stops
    assert read_topic(settings, out, timeout=5) == [], "nothing of the fenced transaction is visible"


def test_a_reader_closing_on_a_failed_commit_closes_and_leaves_nothing_committed(settings, caplog):
    """A stop that meets a failed commit: close() says so and closes (no abort that could wait on the
    same failure); the batch's output is not visible and its events are read again by the next reader."""
    first, newer, out = fenced_batch(settings, "tx-closing", 2)
    first.commit(wait=False)
    first.close()
    assert "the last commit did not complete" in caplog.text
    del newer, first
    assert read_topic(settings, out, timeout=5) == []
    again = reader(settings, "tx-closing-2")
    read_all(again, 2)
    again.close()


def read_all_deferred(reader: EventReader, count: int) -> None:
    """As stage 1 reads: each batch decoded before its transaction opens (``defer_begin``)."""
    for _ in range(60):
        if reader.consumed >= count:
            return
        reader.poll_rows(100, 0.5, defer_begin=True)
    raise AssertionError(f"read {reader.consumed} of {count} events")


def test_a_batch_read_before_its_transaction_opens_commits_its_offsets_with_no_output(settings):
    """A batch polled with defer_begin that produced nothing: its offsets still commit, in a transaction
    opened at commit, and a second reader of the group starts after them."""
    predictions(settings, 4)
    first = reader(settings, "tx-deferred")
    read_all_deferred(first, 4)
    assert first.holds_batch and not first.in_transaction
    first.commit()
    first.close()
    second = reader(settings, "tx-deferred-2")
    assert second.poll(100, 3.0) == [] and second.consumed == 0, "the offsets were committed"
    second.close()


def test_a_dead_letter_met_before_the_transaction_opens_is_committed_with_the_batch(settings):
    """An undecodable event in a batch polled with defer_begin: its dead letter opens the batch's
    transaction (a transactional producer refuses a record outside one) and commits with its offsets."""
    topic = settings.topic("predictions")
    raw = make_producer(settings)
    raw.produce(topic, value=b"not an event")
    raw.flush(10)
    predictions(settings, 2)
    first = reader(settings, "tx-dead")
    read_all_deferred(first, 3)
    assert first.in_transaction, "the dead letter opened the batch's transaction"
    first.commit()
    first.close()
    assert [m.value() for m in read_topic(settings, settings.topic("deadletter"), 1)] == [b"not an event"]
    second = reader(settings, "tx-dead-2")
    assert second.poll(100, 3.0) == [] and second.consumed == 0, "the offsets were committed"
    second.close()
