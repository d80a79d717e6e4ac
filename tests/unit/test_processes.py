"""Children never outlive their owner: process groups and the parent-death signal (Linux)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from driftline.processes import group_members, spawn, stop_group
from tests.processes import new_mark, wait_until_gone

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups via /proc")

SLEEPER = "import time\ntime.sleep(120)\n"
PARENT_OF_TWO = ("import subprocess, sys, time\n"
                 f"subprocess.Popen([sys.executable, '-c', {SLEEPER!r}])\n"
                 "time.sleep(120)\n")


def test_stop_group_stops_the_child_and_what_the_child_started():
    child = spawn([sys.executable, "-c", PARENT_OF_TWO], python_child=False)
    try:
        assert wait_for_members(child.pid, 2)
        code = stop_group(child, timeout=5)
    finally:
        child.kill()
    assert code is not None
    assert group_members([child.pid]) == []


def test_a_tied_child_dies_when_its_owner_is_sigkilled():
    mark, env = new_mark()
    owner_code = textwrap.dedent(f"""
        import sys, time
        from driftline.processes import spawn
        spawn([sys.executable, '-c', {SLEEPER!r}], python_child=False)
        spawn([sys.executable, '-m', 'driftline.cli.main', '--help'])
        print('started', flush=True)
        time.sleep(120)
    """)
    owner = subprocess.Popen([sys.executable, "-c", owner_code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "started"
        owner.kill()  # SIGKILL: no Python code of the owner runs again
        owner.wait()
        left = wait_until_gone(mark)
    finally:
        owner.kill()
    assert left == []


def test_an_untied_child_outlives_its_owner():
    """`driftline broker up` leaves the broker running: untied children are not killed with their owner."""
    mark, env = new_mark()
    owner_code = ("import subprocess, sys\nfrom driftline.processes import spawn\n"
                  f"p = spawn([sys.executable, '-c', {SLEEPER!r}], tied=False, python_child=False,"
                  " stdout=subprocess.DEVNULL)\nprint(p.pid)\n")
    out = subprocess.run([sys.executable, "-c", owner_code], env=env, capture_output=True, text=True, check=True)
    pid = int(out.stdout)
    try:
        assert group_members([pid]) == [pid]
    finally:
        subprocess.run(["kill", "-9", str(pid)], check=False)
    assert wait_until_gone(mark) == []


def wait_for_members(pgid: int, count: int, timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(group_members([pgid])) >= count:
            return True
        time.sleep(0.05)
    return False
