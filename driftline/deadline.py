"""A hard deadline on the librdkafka calls that do not always keep their own timeout.

``send_offsets_to_transaction(..., timeout)`` can wait forever when the group
coordinator dies mid-transaction: the coordinator request's timeout is never
checked (confluentinc/librdkafka#5456, fix not released in 2.16), and a
coordinator broker that left the cluster's metadata is never asked again even
after the cluster returns (#5511). A worker blocked there polls none of its
consumers and, being inside a C call, never runs its SIGTERM handler: it
neither recovers nor stops. Seen here in one clean CI run of the
whole-cluster outage test: the monitor sat silent for 5 minutes after the
cluster came back, its static consumers were fenced for not polling, and it
ignored SIGTERM.

:func:`within` runs such a call in a helper thread and gives up waiting at a
deadline with the same error a timed-out call raises (``_TIMED_OUT``), so the
caller's existing path for a failed transaction (a worker re-executes itself
from committed state) takes over. The abandoned thread is a daemon: it dies
with the process image, and nothing waits for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from confluent_kafka import KafkaError, KafkaException

T = TypeVar("T")
GRACE_S = 5.0  # beyond the call's own timeout: librdkafka's own timeouts run a little late (10.1 s for 10 s)


class Pending(Generic[T]):
    """A call running in a daemon helper thread, with a deadline fixed when it started.

    The worker commits a stage's transaction this way and gets on with the
    other stages while the broker answers (:meth:`EventReader.commit
    <driftline.consumer.EventReader.commit>` with ``wait=False``); the stage
    asks for the result before it touches Kafka again.
    """

    def __init__(self, timeout: float, call: Callable[[], T], what: str, grace: float = GRACE_S) -> None:
        self.what = what
        self.seconds = timeout + grace
        self._deadline = time.monotonic() + self.seconds
        self._outcome: list[tuple[bool, object]] = []
        self._helper = threading.Thread(target=self._run, args=(call,), name=f"kafka {what}", daemon=True)
        self._helper.start()

    def _run(self, call: Callable[[], T]) -> None:
        try:
            self._outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller's thread as is
            self._outcome.append((False, exc))

    def result(self) -> T:
        """``call()``'s result or exception, or a ``_TIMED_OUT`` KafkaException once the deadline passed."""
        self._helper.join(max(0.0, self._deadline - time.monotonic()))
        if not self._outcome:
            raise KafkaException(KafkaError(
                KafkaError._TIMED_OUT, f"{self.what} did not return within {self.seconds:g} s (a librdkafka call "
                "past its own timeout: the cluster or its group coordinator went away)"))
        returned, value = self._outcome[0]
        if not returned:
            raise value  # type: ignore[misc]  # the BaseException the call raised
        return value  # type: ignore[return-value]


def within(timeout: float, call: Callable[[], T], what: str, grace: float = GRACE_S) -> T:
    """``call()``'s result or exception, or a ``_TIMED_OUT`` KafkaException once the ``timeout`` the call
    was given and ``grace`` have passed."""
    return Pending(timeout, call, what, grace).result()
