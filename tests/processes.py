"""Process checks for tests: a CPU hog, and finding every process a test started (no orphans)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator

from driftline.processes import live_processes, spawn, stop_group

MARK_ENV = "DRIFTLINE_TEST_MARK"

BURN = "import time\nwhile True:\n    pass\n"


@contextlib.contextmanager
def cpu_hog(cores: int = 1) -> Iterator[None]:
    """A third party burning ``cores`` whole cores for the duration (stopped on every exit path)."""
    hogs = [spawn([sys.executable, "-c", BURN], tied=True, python_child=False) for _ in range(cores)]
    try:
        yield
    finally:
        for hog in hogs:
            stop_group(hog, timeout=5)


def new_mark() -> tuple[str, dict[str, str]]:
    """A unique marker and an environment carrying it: every descendant inherits it."""
    mark = uuid.uuid4().hex
    return mark, {**os.environ, MARK_ENV: mark}


def marked_processes(mark: str) -> list[str]:
    """Live processes whose environment carries ``mark`` (their pid and command line)."""
    needle = f"{MARK_ENV}={mark}".encode()
    found = []
    for entry, _, _ in live_processes():
        if int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {command[:200]}")
        except OSError:
            continue
    return found


def wait_until_gone(mark: str, timeout: float = 10.0) -> list[str]:
    """Marked processes still alive after ``timeout`` s (the kernel needs a moment to deliver death signals)."""
    deadline = time.monotonic() + timeout
    while (left := marked_processes(mark)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left
