"""The long-running processes' heap settings: start-up objects frozen, a young generation sized for a sync,
glibc's malloc arenas capped."""

from __future__ import annotations

import gc
import inspect
import subprocess
import sys

import pytest

from connector.agent import main as agent_main
from connector.heap import MALLOC_ARENAS, YOUNG_THRESHOLD, freeze_startup_heap


def test_start_up_heap_is_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD > 700
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


# 16 threads that each allocate (blocks above pymalloc's 512 bytes go to glibc's malloc) while the others hold
# theirs, in a fresh interpreter; then the arenas glibc made, counted in malloc_info's report. Without the cap
# each thread gets its own (up to 8 per core); the RSS this saves is measured by `connector bench` (a full
# sync's peak 150-155 MB -> 141-143 MB, docs/performance.md), not here: it moves with scheduling.
_COUNT_ARENAS = """
import ctypes, sys, tempfile, threading
from connector.heap import MALLOC_ARENAS, limit_malloc_arenas
if sys.argv[1] == "cap":
    assert limit_malloc_arenas()
barrier = threading.Barrier(16)
def work():
    barrier.wait()
    kept = [bytearray(4000) for _ in range(100)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
libc.fclose.argtypes = (ctypes.c_void_p,)
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    out = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, out)
    libc.fclose(out)
    print(open(report.name).read().count("<heap nr="))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and malloc_info")
def test_threads_share_the_capped_malloc_arenas() -> None:
    def arenas(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _COUNT_ARENAS, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    assert arenas("cap") <= MALLOC_ARENAS
    assert arenas("default") > MALLOC_ARENAS * 2  # 16 here: one per thread, under glibc's 8 per core


def test_the_agent_caps_its_arenas_before_its_threads_start() -> None:
    source = inspect.getsource(agent_main.main)
    assert source.index("limit_malloc_arenas()") < source.index("asyncio.run(")
