"""Process settings for services (driftline.runtime), each in a fresh interpreter: they are process-wide."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest


def run_python(code: str, **env: str) -> str:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          check=True, cwd=os.getcwd(), env={**os.environ, **env}, timeout=120).stdout


def test_single_threaded_blas_leaves_numpys_blas_one_thread():
    """numpy's BLAS starts with a pool of two here (set so, whatever the machine's cores), one after."""
    out = run_python("""
        import json
        import numpy as np
        from threadpoolctl import threadpool_info
        from driftline.runtime import single_threaded_blas
        blas = lambda: [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        before = blas()
        single_threaded_blas()
        np.ones((500, 20)) @ np.ones((20, 8))  # a product as the monitor makes, still correct
        print(json.dumps({"before": before, "after": blas()}))
    """, OPENBLAS_NUM_THREADS="2")
    threads = json.loads(out.strip().splitlines()[-1])
    assert threads["before"] and all(n == 2 for n in threads["before"])
    assert threads["after"] == [1] * len(threads["before"])


def test_tune_gc_raises_the_young_generations_threshold_and_freezes_what_is_alive():
    out = run_python("""
        import gc, json
        from driftline.runtime import YOUNG_THRESHOLD, tune_gc
        tune_gc()
        print(json.dumps({"young": gc.get_threshold()[0], "frozen": gc.get_freeze_count(), "want": YOUNG_THRESHOLD}))
    """)
    found = json.loads(out.strip().splitlines()[-1])
    assert found["young"] == found["want"] and found["frozen"] > 0


ARENAS_SCRIPT = """
import ctypes, sys, threading
from driftline.runtime import cap_malloc_arenas
if sys.argv[1] == "capped":
    assert cap_malloc_arenas(2)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
barrier = threading.Barrier(8)
def work():
    barrier.wait()  # all at once: contended arenas make glibc create new ones
    for _ in range(2000):
        blocks = [libc.malloc(4096) for _ in range(16)]
        for block in blocks:
            libc.free(block)
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc.malloc_stats()  # one "Arena N:" section per arena, on stderr
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_capped_malloc_arenas_hold_threads_to_two_arenas():
    """driftline.runtime.cap_malloc_arenas, by glibc's own count: eight threads allocating at once make
    their arenas uncapped, and share at most two capped."""
    def arenas(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", ARENAS_SCRIPT, mode], capture_output=True, text=True,
                              timeout=60, check=True)
        return sum(1 for line in done.stderr.splitlines() if line.startswith("Arena "))
    assert arenas("capped") <= 2 < arenas("free")


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_release_free_memory_hands_freed_heap_pages_back():
    """driftline.runtime.release_free_memory, by the process's own resident size: 80 MB of small blocks
    freed (one kept at the top, so the heap cannot simply shrink from its end) stay resident until trimmed."""
    out = run_python("""
        import ctypes, json
        from driftline.runtime import release_free_memory
        def rss():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        blocks = [libc.malloc(2000) for _ in range(40_000)]
        for block in blocks:
            ctypes.memset(block, 1, 2000)  # touched: resident
        for block in blocks[:-1]:
            libc.free(block)
        freed = rss()
        released = release_free_memory()
        print(json.dumps({"freed": freed, "after": rss(), "released": released}))
    """)
    trimmed = json.loads(out.strip().splitlines()[-1])
    assert trimmed["released"] and trimmed["freed"] - trimmed["after"] > 50, trimmed
