"""Child processes that never outlive their owner: process groups, parent-death signals, one stop path.

Every service the demo, ``bench/loop.py`` or a test fixture starts runs in its
own process group (its own session), so one signal reaches the service and
whatever it started (``serve --workers N`` forks uvicorn workers). Three
layers make sure nothing is orphaned:

* the owner stops each group on every exit path it controls (normal end,
  exception, Ctrl-C, SIGTERM, a pytest timeout): :func:`stop_group`;
* an ``atexit`` hook stops any group still registered when the owner exits;
* on Linux each child asks the kernel for SIGKILL when its parent dies
  (``PR_SET_PDEATHSIG``), which covers the one path no Python code runs on:
  the owner itself SIGKILLed. A Python child does it at start-up when
  :data:`PARENT_ENV` names its parent; any other program (the JVM) is started
  through :func:`exec_with_parent_death` (``python -m driftline.processes``),
  which sets the flag and ``exec``\\ s it (the flag survives ``exec``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

PARENT_ENV = "DRIFTLINE_PARENT_PID"
_PR_SET_PDEATHSIG = 1

_live: dict[int, subprocess.Popen[bytes]] = {}
_lock = threading.Lock()


def die_with_parent(parent: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent exits (Linux; a no-op elsewhere).

    ``parent`` is the pid the caller expects as its parent: when the parent
    died before the flag was set, the process exits at once instead of
    living on as an orphan.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def die_with_parent_from_env() -> None:
    """Honour :data:`PARENT_ENV` when this process was started by :func:`spawn`.

    The variable is removed, so a program this process starts in turn is not
    mistaken for a child of the original owner.
    """
    value = os.environ.pop(PARENT_ENV, None)
    if value and value.isdigit():
        die_with_parent(int(value))


def exec_with_parent_death(argv: Sequence[str]) -> list[str]:
    """The command line that runs ``argv`` with the parent-death signal set (for non-Python programs)."""
    return [sys.executable, "-m", "driftline.processes", str(os.getpid()), *argv]


def spawn(argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdout: IO[bytes] | int | None = None,
          tied: bool = True, python_child: bool = True) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new process group; ``tied`` children die with this process.

    ``python_child`` says the child is a driftline Python entry point that
    reads :data:`PARENT_ENV` itself; otherwise a tied child is wrapped with
    :func:`exec_with_parent_death`.
    """
    child_env = dict(os.environ if env is None else env)
    command = list(argv)
    if tied:
        child_env[PARENT_ENV] = str(os.getpid())
        if not python_child:
            command = exec_with_parent_death(command)
    else:
        child_env.pop(PARENT_ENV, None)
    process = subprocess.Popen(command, env=child_env, stdout=stdout, stderr=subprocess.STDOUT if stdout else None,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    if tied:
        with _lock:
            _live[process.pid] = process
    return process


def _signal_group(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_processes() -> Iterator[tuple[Path, int, int]]:
    """Every live (non-zombie) process as (its /proc folder, process group, session) (Linux)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            yield entry, int(fields[2]), int(fields[3])


def group_members(pgids: Iterable[int]) -> list[int]:
    """Pids of live processes whose process group or session is one of ``pgids``."""
    wanted = set(pgids)
    return [int(entry.name) for entry, pgrp, session in live_processes() if pgrp in wanted or session in wanted]


def stop_group(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int | None:
    """SIGTERM the child's whole group, wait up to ``timeout`` s, then SIGKILL what is left; return its code."""
    pgid = process.pid
    if process.poll() is None:
        _signal_group(pgid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            process.wait()
    # The leader is gone; anything else it started in its group goes too.
    deadline = time.monotonic() + 5
    while group_members([pgid]) and time.monotonic() < deadline:
        _signal_group(pgid, signal.SIGKILL)
        time.sleep(0.05)
    with _lock:
        _live.pop(pgid, None)
    return process.returncode


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's whole group at once (a crash, or a second Ctrl-C)."""
    _signal_group(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)
    with _lock:
        _live.pop(process.pid, None)


def kill_all() -> None:
    """SIGKILL every tied group still registered (the last resort on the way out)."""
    with _lock:
        processes = list(_live.values())
        _live.clear()
    for process in processes:
        kill_group(process)


atexit.register(kill_all)


def _main(argv: list[str]) -> None:
    """``python -m driftline.processes PARENT_PID PROGRAM ARGS...``: exec PROGRAM tied to PARENT_PID."""
    die_with_parent(int(argv[0]))
    os.execvp(argv[1], argv[1:])


if __name__ == "__main__":
    _main(sys.argv[1:])
