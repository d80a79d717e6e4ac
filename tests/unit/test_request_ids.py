"""Request ids from a counter: unique, as long as uuid4's hex, and not repeated across a fork."""

from __future__ import annotations

import os

from driftline.producer import RequestIds


def test_request_ids_are_unique_and_a_forked_child_does_not_repeat_its_parents() -> None:
    ids = RequestIds()
    mine = [ids() for _ in range(1000)]
    assert len(set(mine)) == 1000 and all(len(i) == 32 for i in mine)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child writes its first id and leaves at once
        os.write(write, ids().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    assert child not in mine and child[:20] != mine[0][:20]


def test_the_fork_hook_does_not_keep_producers_ids_alive() -> None:
    import gc
    import weakref

    gone = weakref.ref(RequestIds())
    gc.collect()
    assert gone() is None
