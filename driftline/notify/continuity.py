"""What the notifier's faust agent owes a look: per alerts partition, the next offset it has not handled.

faust drops records it has fetched but not handed to an agent when its flow
stops or it rewinds around a rebalance or table recovery, and relies on
committed offsets to fetch them again; around a restart that rewind did not
always happen here. Measured on this project's machine with a core busy: 2 to
3 notifier restarts in 10 after a SIGKILL lost alerts (all of those after the
restart, or a handful in the middle of the log) while the worker reported
ready, with faust's own offsets and with a patched rewind alike.

So the agent does not trust faust for completeness, only for delivery: it
records, per partition, the offset after the last alert it handled. An event
beyond that offset means records in between were skipped; a partition whose
committed end stays ahead of it while the agent is idle means records were
dropped after the last one seen. Either way the owed range is read directly
from Kafka (committed records only, transaction markers skipped) and handled
first. Handling is idempotent by alert id (the delivery table), so a record
that reaches the agent both ways is a skip, never a second delivery.

A partition is first owed from its low watermark, whatever faust committed:
a restart re-checks every retained alert against the delivery table (cheap:
alerts are few) rather than trusting a commit made by the code that drops.
"""

from __future__ import annotations

from confluent_kafka import IsolationLevel, Message, TopicPartition
from confluent_kafka.admin import OffsetSpec

from driftline.errors import ConfigError
from driftline.kafka_clients import make_admin
from driftline.offsets import OffsetRange, read_ranges
from driftline.settings import Settings


class Continuity:
    """Per partition of one topic, the next offset owed a look; blocking calls (run them in a thread)."""

    def __init__(self, settings: Settings, topic: str, timeout: float = 10.0) -> None:
        self.settings = settings
        self.topic = topic
        self.timeout = timeout
        self._next: dict[int, int] = {}
        self._admin = make_admin(settings)

    def owed(self, partition: int, upto: int) -> OffsetRange | None:
        """The range [next, upto) not handled yet (None when nothing is owed); a partition seen for the
        first time is owed from its low watermark."""
        if partition not in self._next:
            self._next[partition] = self._offsets([partition], OffsetSpec.earliest())[partition]
        start = self._next[partition]
        return OffsetRange(self.topic, partition, start, upto) if upto > start else None

    def stable_ends(self, partitions: list[int]) -> dict[int, int]:
        """Each partition's last stable offset: the end of its committed records (an open transaction's
        records are not owed until they commit)."""
        return self._offsets(partitions, OffsetSpec.latest())

    def read(self, owed: OffsetRange) -> tuple[list[Message], bool]:
        """The committed records of ``owed``, and whether the whole range was read (a timeout returns
        what arrived, and the rest stays owed)."""
        records: list[Message] = []
        try:
            for batch in read_ranges(self.settings, [owed], timeout=self.timeout):
                records.extend(batch)
        except ConfigError:
            return records, False
        return records, True

    def handled(self, partition: int, offset: int) -> None:
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def passed(self, owed: OffsetRange) -> None:
        """The whole of ``owed`` was read (its end may be a transaction marker, which no record reports)."""
        self._next[owed.partition] = max(self._next.get(owed.partition, 0), owed.end_offset)

    def keep_only(self, partitions: set[int]) -> None:
        """Forget partitions this notifier no longer owns (a new owner starts from the low watermark)."""
        for partition in set(self._next) - partitions:
            del self._next[partition]

    def _offsets(self, partitions: list[int], spec: OffsetSpec) -> dict[int, int]:
        request = {TopicPartition(self.topic, p): spec for p in partitions}
        futures = self._admin.list_offsets(request, isolation_level=IsolationLevel.READ_COMMITTED,
                                           request_timeout=self.timeout)
        return {tp.partition: future.result().offset for tp, future in futures.items()}
