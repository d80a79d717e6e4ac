"""Process settings for long-running services: the garbage collector tuned for streams of small objects,
BLAS kept to one thread where its calls are small, and glibc's malloc arenas capped where threads come
and go (and their free pages handed back after a large piece of work).

Every request or event allocates a few hundred short-lived containers (decoded
records, tensors, rows). With CPython's default thresholds a young-generation
collection runs every 700 allocations, and objects alive at that moment (a
batch in flight) are promoted and rescanned: measured on a serving node, a
third of each request's CPU time (100 µs → 70 µs per single-row inference).
So, once a service has started:

* ``gc.freeze()`` moves everything alive (modules, the loaded model, clients)
  out of the collector's sight: those objects are never garbage, and scanning
  them on every full collection is pure cost;
* the young generation grows to ``young`` objects before it is collected, so
  collections run about 70 times less often and see mostly dead objects.

Reference cycles are still collected; the cost is a little more transient
memory (tens of thousands of small objects). Instagram and many Python web
services run with the same two settings.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from typing import Any

from threadpoolctl import threadpool_limits

YOUNG_THRESHOLD = 50_000
M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def tune_gc(young: int = YOUNG_THRESHOLD) -> None:
    """Call once start-up is done (models loaded, clients connected)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young, max(older, 20), max(oldest, 20))


def single_threaded_blas() -> None:
    """BLAS (OpenBLAS under numpy) on one thread, for the rest of the process.

    The monitor's matrix products are small (a window's PCA projection, a
    block of 4,096 rows by twenty features at a time): a pool of BLAS
    threads cannot speed them up, and after each call its threads spin
    waiting for more work, on the cores librdkafka's threads and, on a
    small machine, the broker need. Measured offline on a stage 1 summary of
    single-row events: 0.88-1.84 CPU us per event with the default pool, 0.64-0.69 with one thread.
    """
    threadpool_limits(limits=1, user_api="blas")


def cap_malloc_arenas(arenas: int = 2) -> bool:
    """At most ``arenas`` glibc malloc arenas from now on; whether the C library took the setting.

    glibc gives a thread that meets a locked arena an arena of its own (up
    to eight per core), and an arena keeps what was freed in it for its
    next allocations. The trainer reads the topics with a new librdkafka
    client, and new threads, for each piece of a run (offset ranges, the
    control topics), so its resident memory crept with each run although
    Python held nothing more: ten retrains of the same 10,000 rows went
    156 → 165 MB, 184 → 203 MB over fourteen, while ``tracemalloc`` saw
    0.1 MB kept. With two arenas: 151.9, 152.0, ... 152.6 MB over twelve.
    Not glibc (macOS, musl): nothing to do, False.
    """
    mallopt = _glibc("mallopt")
    return mallopt is not None and bool(mallopt(M_ARENA_MAX, arenas))


def release_free_memory() -> bool:
    """Hand the pages malloc holds free back to the system (glibc's ``malloc_trim``); whether any were.

    After a training run the trainer waits, often for hours, and glibc keeps
    what the run freed inside its arenas for the next allocations: its
    resident memory stayed at the run's working set. Trimmed after each run
    (six operator retrains of 10,000 rows, in one process): 149.0-153.6 MB
    after each, against 156.6-163.4 untrimmed. Not glibc: nothing to do, False.
    """
    trim = _glibc("malloc_trim")
    return trim is not None and bool(trim(0))


def _glibc(name: str) -> Any:
    """A function of the C library this process runs on, or None where it has none by that name."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
