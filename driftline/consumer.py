"""The consume loop every confluent-kafka service shares.

It polls a batch, decodes each message with the codec, lets the caller
validate it, sends every message that fails either step to the dead-letter
topic (original bytes, reason, source offsets), hands the good ones to the
caller, and only then commits: the producer is flushed first, so the offsets
committed never cover work (or dead letters) that is not yet durable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from itertools import repeat
from operator import is_not
from typing import Any, NamedTuple

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from driftline.contract import EventCodec, codec_for
from driftline.deadletter import DeadLetterQueue
from driftline.deadline import Pending, within
from driftline.errors import BrokerError, ConfigError
from driftline.kafka_clients import make_consumer, make_producer, position_of
from driftline.offsets import OffsetRange, read_ranges
from driftline.producer import ROLE_HEADER, SHADOW_ROLE
from driftline.repeats import LOOKBACK_BYTES, RecentEvents, RepeatedEvent, identities, record_keys
from driftline.settings import Settings
from schemas import ContractError, DecodeError
from schemas.rows import FEATURES, PREDICTION, Rows, inconsistency

log = logging.getLogger(__name__)
# A stage's transaction: the broker aborts one open longer (its outputs are then never seen).
TRANSACTION_TIMEOUT_S = 10.0

Validator = Callable[[dict[str, Any]], None]


def static_membership(instance: str, session_timeout_ms: int = 15000) -> dict[str, Any]:
    """Consumer settings for a worker with a stable identity (KIP-345 static membership).

    A worker restarted under the same instance id gets its partitions straight
    back instead of waiting for the group to notice the old process died (the
    45 s default session timeout); the shorter session timeout bounds how long
    partitions of a worker that is gone for good stay unserved.
    """
    return {"group.instance.id": instance, "session.timeout.ms": session_timeout_ms}


def records_of(messages: list[Message]) -> list[Message]:
    """The records of a consumed batch: end-of-partition events dropped, any other error raised.

    The common batch has none: one C-level pass says so, not a Python step per message.
    """
    errors = list(map(Message.error, messages))
    if not any(map(is_not, errors, repeat(None))):  # identity: a KafkaError's == refuses None
        return messages
    records = []
    for message, error in zip(messages, errors, strict=True):
        if error is None:
            records.append(message)
        elif error.code() != KafkaError._PARTITION_EOF:
            raise KafkaException(error)
    return records


def answered_records(records: list[Message]) -> list[Message]:
    """The records that are not a rollout's shadow predictions (most batches have no headers at all)."""
    if not any(map(is_not, map(Message.headers, records), repeat(None))):
        return records
    return [message for message in records if not is_shadow(message)]


def is_shadow(message: Message) -> bool:
    """A rollout's shadow prediction (made beside the answering version, never returned)."""
    headers = message.headers()  # a consumed message's headers are a list of (key, bytes), or None
    return isinstance(headers, list) and (ROLE_HEADER, SHADOW_ROLE) in headers


class Event(NamedTuple):
    """A decoded event with where it came from (a named tuple: built once per consumed message, so it
    must cost little — a frozen dataclass took three times as long)."""

    schema: str
    record: dict[str, Any]
    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int


COLUMNAR = frozenset({PREDICTION, FEATURES})  # the kinds :meth:`EventReader.poll_rows` gives as Rows
SourcePartition = tuple[str, int]
# A polled batch is decoded this many events at a time: per event, a slice of 20,000 took 1.3x as long as
# one of 2,000 (its fields no longer stay in the CPU's caches), and the Rows of slices join cheaply.
DECODE_SLICE = 2048
CONSUME_SLICE = 2048  # a batch bounded in bytes is consumed at most this many messages at a time
FIRST_SLICE = 8  # ... and this many while a reader knows nothing of their sizes


class SourceRows(NamedTuple):
    """A partition's Prediction or Features events of one poll, as columns, in offset order (the
    partition is its key in :class:`Polled`), and the bytes of those that were decoded alone, by their
    index among the events (a stage can pass such an event on as it came: see :mod:`streams.stages.forward`).
    ``end``: the offset after the poll's last event of the partition, when that one was left out (a repeat)."""

    offsets: np.ndarray
    rows: Rows
    originals: dict[int, bytes]
    end: int = -1

    @property
    def next_offset(self) -> int:
        return self.end if self.end >= 0 else int(self.offsets[-1]) + 1

    def without(self, events: Collection[int]) -> SourceRows:
        """These rows less the events at the indices ``events``."""
        keep = np.setdiff1d(np.arange(self.rows.events), np.fromiter(events, dtype=np.int64, count=len(events)))
        at = np.full(self.rows.events, -1)
        at[keep] = np.arange(keep.size)
        return SourceRows(self.offsets[keep], self.rows.take(keep),
                          {int(at[i]): raw for i, raw in self.originals.items() if at[i] >= 0}, self.next_offset)


class Polled(NamedTuple):
    """What :meth:`EventReader.poll_rows` read: Rows per source partition, and every other event."""

    rows: dict[SourcePartition, SourceRows]
    events: list[Event]


def _in_offset_order(parts: list[tuple[np.ndarray, Rows]], originals: dict[int, bytes]) -> SourceRows:
    """One partition's Rows in offset order; ``originals`` (by offset) re-keyed by event index."""
    offsets = np.concatenate([o for o, _ in parts]) if len(parts) > 1 else parts[0][0]
    rows = Rows.concat([r for _, r in parts])
    if offsets.size > 1 and bool((offsets[1:] < offsets[:-1]).any()):  # the plain and the others interleaved
        order = np.argsort(offsets, kind="stable")
        offsets, rows = offsets[order], rows.take(order)
    at = np.searchsorted(offsets, np.fromiter(originals, dtype=np.int64, count=len(originals)))
    return SourceRows(offsets, rows, dict(zip(at.tolist(), originals.values(), strict=True)))


def plain_rows(codec: EventCodec, wanted: Callable[[str, str], bool], messages: list[Message],
           parts: dict[SourcePartition, list[tuple[np.ndarray, Rows]]]) -> np.ndarray:
    """The plain one-row events of ``messages`` as (offsets, Rows) per source partition, added to
    ``parts``; which messages they were (the others are decoded alone, and ``decode`` says what is
    wrong with one of a kind its topic does not carry: ``wanted(topic, schema)`` is false)."""
    values = [m.value() or b"" for m in messages]
    count = len(messages)
    # Every message's position as arrays, read by the C accessors themselves (no Python call per message);
    # a source is its topic's index in ``names`` << 32 | its partition.
    topics = list(map(Message.topic, messages))
    names = [name for name in dict.fromkeys(topics) if name is not None]
    if len(names) < len(set(topics)):  # as position_of: a record without an error always has its position
        raise ValueError("a consumed record without a topic")
    code_of: dict[str | None, int] = {name: k for k, name in enumerate(names)}
    topic_codes = np.zeros(count, dtype=np.int64) if len(names) < 2 else \
        np.fromiter(map(code_of.__getitem__, topics), dtype=np.int64, count=count)
    partitions = np.fromiter(map(Message.partition, messages), dtype=np.int64, count=count)
    offsets = np.fromiter(map(Message.offset, messages), dtype=np.int64, count=count)
    sources = topic_codes << 32 | partitions
    taken = np.zeros(count, dtype=bool)
    for at in range(0, count, DECODE_SLICE):
        for schema, found, rows in codec.decode_rows(values[at:at + DECODE_SLICE]):
            index = at + np.asarray(found, dtype=np.int64)
            keep = np.array([wanted(name, schema) for name in names])[topic_codes[index]]
            if not keep.all():  # decode() names what is wrong with the others
                kept = np.flatnonzero(keep)
                index, rows = index[kept], rows.take(kept)
            if not index.size:
                continue
            taken[index] = True
            keys = sources[index]
            distinct = np.unique(keys).tolist()
            if len(distinct) == 1:
                parts.setdefault((names[distinct[0] >> 32], distinct[0] & 0xFFFFFFFF), []).append(
                    (offsets[index], rows))
                continue
            for key in distinct:
                mine = np.flatnonzero(keys == key)
                parts.setdefault((names[key >> 32], key & 0xFFFFFFFF), []).append(
                    (offsets[index[mine]], rows.take(mine)))
    return taken


class EventReader:
    """Consume driftline events from topics as one consumer-group member.

    Parameters
    ----------
    topics
        Full topic names to subscribe to.
    expect
        Schema name each topic must carry (``{topic: "driftline.Prediction"}``),
        or a tuple of the names it may carry; a message of another kind is
        dead-lettered.
    validate
        Called with each decoded record; raise a ContractError to refuse it.
    dead_letter_topics
        Topics whose bad events this reader dead-letters (default: all); bad
        events of the others are left to the stage that owns them and counted
        in ``skipped``.
    answered_only
        Skip prediction events a rollout's shadow made (header ``driftline.role:
        shadow``): they repeat requests another version answered, so windows and
        the label join would count those requests twice. Counted in ``shadows``.
    """

    def __init__(
        self,
        settings: Settings,
        group_id: str,
        topics: Sequence[str],
        *,
        expect: dict[str, str | tuple[str, ...]] | None = None,
        validate: Validator | None = None,
        stage: str = "consume",
        producer: Producer | None = None,
        codec: EventCodec | None = None,
        transactional_id: str | None = None,
        on_assign: Callable[[list[TopicPartition]], None] | None = None,
        dead_letter_topics: Sequence[str] | None = None,
        answered_only: bool = False,
        repeats: RecentEvents | None = None,
        **consumer_config: Any,
    ) -> None:
        self.settings = settings
        self.codec = codec or codec_for(settings)
        self.expect = expect or {}
        self.validate = validate
        self.stage = stage
        # Bad events of a topic are dead-lettered by exactly one stage; another stage reading the
        # same topic counts them in ``skipped`` instead of filing the same dead letter twice.
        self.dead_letter_topics = set(topics if dead_letter_topics is None else dead_letter_topics)
        self.skipped = 0
        self.answered_only = answered_only
        self.shadows = 0
        self.transactional = transactional_id is not None
        if self.transactional:
            consumer_config.setdefault("isolation.level", "read_committed")
        self.consumer: Consumer = make_consumer(settings, group_id, **consumer_config)
        if self.transactional:
            producer = make_producer(settings, **{"transactional.id": transactional_id,
                                                  "transaction.timeout.ms": int(TRANSACTION_TIMEOUT_S * 1000),
                                                  "delivery.timeout.ms": int(TRANSACTION_TIMEOUT_S * 1000)})
            within(30, lambda: producer.init_transactions(30), "init_transactions")
        self.producer = producer or make_producer(settings)
        self._in_transaction = False
        self._pending: Pending[None] | None = None
        self._owes_begin = False  # a batch polled with defer_begin whose transaction is not open yet
        # poll_rows leaves out (and dead-letters) an event a producer sent twice (:mod:`driftline.repeats`)
        self.repeats = repeats

        def assigned(_: Consumer, partitions: list[TopicPartition]) -> None:
            if self.repeats is not None:
                self.repeats.forget((tp.topic, tp.partition) for tp in partitions)
            if on_assign is not None:
                on_assign(partitions)

        def revoked(_: Consumer, partitions: list[TopicPartition]) -> None:
            self.settle()  # a commit under way covers these partitions: done before another member reads them

        self.consumer.subscribe(list(topics), on_assign=assigned, on_revoke=revoked, on_lost=revoked)

        # a dead letter goes in the batch's transaction, which a deferred begin may not have opened yet
        self.deadletters = DeadLetterQueue.for_producer(settings, self.producer, before_send=self.begin)
        self.consumed = 0
        self._message_bytes = 0.0  # the mean size of the latest bounded slice's messages (0: none yet)

    @property
    def in_transaction(self) -> bool:
        """True between a batch's first output and its commit (transactional mode)."""
        return self._in_transaction

    @property
    def holds_batch(self) -> bool:
        """True between a batch's poll and its commit: its transaction is open, or due (``defer_begin``)."""
        return self._in_transaction or self._owes_begin

    def begin(self) -> None:
        """Open the transaction the next batch's outputs go into (transactional mode only), once the
        previous batch's commit is done."""
        self.settle()
        self._owes_begin = False
        if self.transactional and not self._in_transaction:
            self.producer.begin_transaction()
            self._in_transaction = True

    def decode(self, message: Message, decoded: tuple[str, dict[str, Any]] | None = None) -> Event | None:
        """The message as an Event, or None once it is dead-lettered (or skipped: another stage owns it).

        ``decoded``: the (schema, record) the codec's batch decode already made of it, if any.
        """
        topic, partition, offset = position_of(message)
        try:
            if self.expect and topic not in self.expect:
                raise ContractError(f"topic {topic} is not one this stage reads")
            wanted = self.expect.get(topic)
            if isinstance(wanted, tuple):
                schema, record = decoded or self.codec.decode_named(message.value() or b"")
                if schema not in wanted:
                    raise DecodeError(f"expected one of {', '.join(wanted)}, got {schema}")
            elif decoded is not None and wanted is not None and decoded[0] != wanted:
                raise DecodeError(f"expected a {wanted} event, got {decoded[0]}")
            else:
                schema, record = decoded or self.codec.decode_named(message.value() or b"", wanted)
            if self.validate is not None:
                self.validate(record)
        except ContractError as exc:
            if message.topic() not in self.dead_letter_topics:
                self.skipped += 1
                return None
            self.deadletters.send_message(message, exc, self.stage)
            log.warning("dead-lettered %s[%d]@%d: %s", message.topic(), message.partition(),
                        message.offset(), exc)
            return None
        return Event(schema, record, topic, partition, offset, message.key(), message.timestamp()[1])

    def poll(self, max_messages: int = 500, timeout: float = 1.0) -> list[Event]:
        """Decoded events of the next batch (bad ones already dead-lettered).

        The plain one-row events of the batch are decoded together
        (:meth:`~schemas.codec.Codec.decode_batch`), the others one by one.
        """
        messages = self.poll_messages(max_messages, timeout)
        decoded = self.codec.decode_batch([m.value() or b"" for m in messages]) if len(messages) > 1 \
            else [None] * len(messages)
        events: list[Event] = []
        plain = self.validate is None
        for message, known in zip(messages, decoded, strict=True):
            if known is not None and plain:  # the common event: decoded, of the kind its topic carries
                topic, partition, offset = position_of(message)
                if self._wanted(topic, known[0]):
                    events.append(Event(known[0], known[1], topic, partition, offset, message.key(),
                                        message.timestamp()[1]))
                    continue
            event = self.decode(message, known)
            if event is not None:
                events.append(event)
        return events

    def _wanted(self, topic: str, schema: str) -> bool:
        """Whether ``topic`` carries events of ``schema`` for this reader (else :meth:`decode` says why not)."""
        wanted = self.expect.get(topic) if self.expect else schema
        return schema == wanted or (isinstance(wanted, tuple) and schema in wanted)

    def poll_rows(self, max_messages: int = 5000, timeout: float = 1.0, max_bytes: int | None = None, *,
                  defer_begin: bool = False) -> Polled:
        """The next batch with its Prediction and Features events as columns, per source partition.

        The plain one-row events are decoded together straight into
        :class:`~schemas.rows.Rows` (:meth:`~schemas.codec.Codec.decode_rows`);
        any other event is decoded alone, and those of the two kinds join
        their partition's Rows. An event the Rows cannot hold (arrays that
        disagree with its request ids) is dead-lettered with the reason,
        like an undecodable one: a stage that summarised it would fail on
        every restart. Only for a reader without ``validate``. ``defer_begin``:
        see :meth:`poll_messages`.
        """
        if self.validate is not None:
            raise ValueError("poll_rows reads without a per-record validator; use poll")
        messages = self.poll_messages(max_messages, timeout, max_bytes, defer_begin=defer_begin)
        parts: dict[SourcePartition, list[tuple[np.ndarray, Rows]]] = {}
        taken = plain_rows(self.codec, self._wanted, messages, parts)
        events: list[Event] = []
        alone: dict[SourcePartition, list[tuple[Message, Event]]] = {}
        for i in np.flatnonzero(~taken).tolist():
            event = self.decode(messages[i])
            if event is None:
                continue
            if event.schema in COLUMNAR:
                alone.setdefault((event.topic, event.partition), []).append((messages[i], event))
            else:
                events.append(event)
        originals: dict[SourcePartition, dict[int, bytes]] = {}
        for source, decoded in alone.items():
            built = self._rows_of(decoded)
            if built is not None:
                offsets, rows, originals[source] = built
                parts.setdefault(source, []).append((offsets, rows))
        by_source = {source: _in_offset_order(found, originals.get(source, {})) for source, found in parts.items()}
        if self.repeats is not None:
            by_source = self._without_repeats(by_source, messages)
        return Polled(by_source, events)

    def _without_repeats(self, polled: dict[SourcePartition, SourceRows], messages: list[Message]
                         ) -> dict[SourcePartition, SourceRows]:
        """The polled rows less the events that repeat an earlier event of their partition, dead-lettered
        with the offset of the one they repeat; a partition not seen since its assignment is read back
        first (:mod:`driftline.repeats`)."""
        assert self.repeats is not None
        out = {}
        at: dict[tuple[str, int, int], Message] = {}  # the batch's records by position, once a repeat needs them
        for source, found in polled.items():
            if not self.repeats.knows(source):
                self._read_back(source, int(found.offsets[0]))
            repeated = self.repeats.repeats(source, identities(found.rows, found.offsets), found.offsets)
            if repeated:
                at = at or {position_of(m): m for m in messages if m.error() is None}
                for i, earlier in repeated.items():
                    offset = int(found.offsets[i])
                    self.deadletters.send_message(at[(source[0], source[1], offset)], RepeatedEvent(
                        f"a repeat of the event at offset {earlier} (the same model, version, first request id "
                        "and time): a producer sent it twice, and its rows are counted once"), self.stage)
                    log.warning("dead-lettered %s[%d]@%d: a repeat of offset %d", source[0], source[1], offset,
                                earlier)
                found = found.without(repeated)
            out[source] = found
        return out

    def _read_back(self, source: SourcePartition, position: int) -> None:
        """Remember the events just before ``position`` of a partition newly assigned: a producer's repeat
        may follow its original across the offset another worker (or this one, before a crash) committed."""
        assert self.repeats is not None
        self.repeats.start(source)
        size = max(self._message_bytes, 1.0)
        start = max(0, position - min(self.repeats.keep, int(LOOKBACK_BYTES / size)))
        if start >= position:
            return  # nothing before it (a partition read from its start)
        # its own consumer, from the earliest record kept if retention took the start: a watermark query on
        # this stage's consumer waited behind its fetches (0.4 s a partition, at every start)
        try:
            for batch in read_ranges(self.settings, [OffsetRange(source[0], source[1], start, position)],
                                     from_earliest=True):
                self._remember(source, batch)
        except ConfigError as exc:  # the cluster did not answer: a worker starts again once it does
            raise BrokerError(f"reading back {source[0]}[{source[1]}] before offset {position}: {exc}") from exc

    def _remember(self, source: SourcePartition, batch: list[Message]) -> None:
        """The identities of events read back (a rollout's shadows and what is no event left out)."""
        assert self.repeats is not None
        records, offsets = [], []
        messages = answered_records(batch) if self.answered_only else batch
        # the plain one-row events decoded together (as a poll decodes them), the others alone
        together = self.codec.decode_batch([m.value() or b"" for m in messages])
        for message, known in zip(messages, together, strict=True):
            try:
                record = known[1] if known is not None else self.codec.decode(message.value() or b"")
            except ContractError:
                continue  # not an event (it was dead-lettered when read): nothing to repeat
            if "request_ids" in record and "model" in record and "event_time" in record:
                records.append(record)
                offsets.append(position_of(message)[2])
        self.repeats.repeats(source, record_keys(records, offsets), np.asarray(offsets, dtype=np.int64))

    def _rows_of(self, decoded: list[tuple[Message, Event]]) -> tuple[np.ndarray, Rows, dict[int, bytes]] | None:
        """One partition's events decoded alone as (offsets, Rows, their bytes by offset); the inconsistent
        ones dead-lettered."""
        schema = decoded[0][1].schema
        try:
            rows = Rows.from_records(schema, [e.record for _, e in decoded])
        except DecodeError:  # find which, and keep the rest
            kept = []
            for message, event in decoded:
                reason = inconsistency(schema, event.record)
                if reason is None:
                    kept.append((message, event))
                    continue
                self.deadletters.send_message(message, DecodeError(reason), self.stage)
                log.warning("dead-lettered %s[%d]@%d: %s", event.topic, event.partition, event.offset, reason)
            if not kept:
                return None
            decoded = kept
            rows = Rows.from_records(schema, [e.record for _, e in decoded])
        offsets = np.fromiter((e.offset for _, e in decoded), dtype=np.int64, count=len(decoded))
        return offsets, rows, {e.offset: m.value() or b"" for m, e in decoded}

    def poll_messages(self, max_messages: int = 500, timeout: float = 1.0,
                      max_bytes: int | None = None, *, defer_begin: bool = False) -> list[Message]:
        """The next batch undecoded, for stages that need less than a whole event (see :meth:`decode`).

        ``max_bytes`` bounds the batch's bytes too (read in slices of up to
        ``CONSUME_SLICE`` messages until it is passed, each slice no larger
        than the latest slice's mean message size says fits): a batch of
        100-row events then holds about as many rows as one of one-row
        events, not a hundred times more.

        The batch's transaction opens here, once the previous batch's
        commit (``commit(wait=False)``) is done; with ``defer_begin`` it
        opens at the caller's :meth:`begin` (or a dead letter, or
        :meth:`commit`), so a stage can decode and compute the batch while
        the broker still answers that commit: stage 1 waited 7-23 % of its
        time for it on 100-row events. A rebalance in this poll settles that
        commit first either way (the revoke callback).
        """
        if not defer_begin:
            self.settle()
        if max_bytes is None:
            messages = self.consumer.consume(max_messages, timeout)
        else:
            messages, size = [], 0
            while len(messages) < max_messages and size < max_bytes:
                wanted = min(CONSUME_SLICE, max_messages - len(messages))
                # no slice far past the bound (2,048 events of 100 rows were 37 MB): as many as the latest
                # slice's mean size says fit, and few while nothing is known
                wanted = min(wanted, max(1, int((max_bytes - size) / self._message_bytes) + 1)
                             if self._message_bytes else FIRST_SLICE)
                got = self.consumer.consume(wanted, 0.0 if messages else timeout)
                messages += got
                got_bytes = sum(map(len, filter(None, map(Message.value, got))))
                size += got_bytes
                if got:
                    self._message_bytes = max(1.0, got_bytes / len(got))
                if len(got) < wanted:  # nothing more waiting
                    break
        if messages and defer_begin:
            self._owes_begin = True
        elif messages:
            self.begin()
        records = records_of(messages)
        if self.answered_only:
            answered = answered_records(records)
            self.shadows += len(records) - len(answered)
            records = answered
        self.consumed += len(records)
        return records

    def commit(self, timeout: float = 30.0, offsets: list[TopicPartition] | None = None, *,
               wait: bool = True) -> None:
        """Make dead letters and produced results durable, then commit the consumed offsets.

        In transactional mode the outputs and the offsets commit atomically:
        a crash at any point leaves either both or neither. ``wait=False``
        returns once the commit is under way (the offsets are taken now):
        the broker's round trips for it (~12 ms each on a busy machine, a
        quarter of a whole worker's time when it waited for its three
        stages' in turn) then overlap the worker's other stages. Anything
        this reader does next with Kafka (:meth:`begin`, a poll, :meth:`close`)
        first waits for that commit and raises what it raised.

        ``timeout`` is each call's (the two transactional calls, or the
        flush): long enough to ride out a broker's failover (its session
        timeout, then a new coordinator loading its state) without
        restarting the worker.
        """
        if self._owes_begin:  # a batch with no outputs: its offsets still commit in a transaction
            self.begin()
        self.settle()
        if self.transactional:
            if not self._in_transaction:
                return
            if offsets is None:
                offsets = self.consumer.position(self.consumer.assignment())
            positions = [tp for tp in offsets if tp.offset >= 0]
            group = self.consumer.consumer_group_metadata() if positions else None
            self._in_transaction = False
            self._pending = Pending(2 * timeout, lambda: self._commit_transaction(positions, group, timeout),
                                    "send_offsets_to_transaction/commit_transaction")
            if wait:
                self.settle()
            return
        remaining = self.producer.flush(timeout)
        if remaining:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"{remaining} records unflushed"))
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                raise

    def _commit_transaction(self, positions: list[TopicPartition], group: Any, timeout: float) -> None:
        """The open transaction's offsets, then its commit (in a :class:`~driftline.deadline.Pending`: the
        first is the call librdkafka#5456 can leave waiting forever)."""
        if positions:
            self.producer.send_offsets_to_transaction(positions, group, timeout)
        self.producer.commit_transaction(timeout)

    def settle(self) -> None:
        """Wait for a commit started with ``wait=False``; raise what it raised (then the transaction's outputs
        and offsets are not committed, and the caller restarts from what was)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            try:
                self.settle()
            except KafkaException as exc:
                # Nothing of that transaction is committed: the coordinator aborts it (past the transaction
                # timeout), or the next incarnation's init_transactions does. Aborting it here could only
                # wait on whatever failed the commit.
                log.warning("the last commit did not complete: %s", exc)
                return
            if self._in_transaction:
                within(30, lambda: self.producer.abort_transaction(30), "abort_transaction")
            else:
                self.producer.flush(30)
        finally:
            self.consumer.close()

    def __enter__(self) -> EventReader:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
