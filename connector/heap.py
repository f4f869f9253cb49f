"""Process heap tuning shared by the long-running processes (the agent and the control plane)."""

from __future__ import annotations

import ctypes
import gc

YOUNG_THRESHOLD = 10_000
# glibc's malloc gives threads that allocate at the same time arenas of their own, up to 8 per core, and keeps
# what each arena frees for its thread's reuse. A sync's 64 worker threads then hold tens of MB that no thread
# needs any more. Two arenas (one more than the GIL lets run Python at a time) keep that down.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's <malloc.h>


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for the threads this process starts from now on. False where there is no
    glibc mallopt (musl, macOS): nothing changes there."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))


def freeze_startup_heap() -> None:
    """Move everything alive after start-up (modules, parsed models, config) out of the cyclic garbage
    collector's reach. A full collection otherwise walks all of it again and again (~17 ms on the 2-core
    bench machine just after import, more once models are loaded): a pause every such collection adds to
    whichever job or poll is in flight. Only objects that live for the whole process are frozen."""
    gc.collect()
    gc.freeze()
    # A sync allocates in bursts (botocore builds dicts, headers and parsed shapes per call): at the default
    # 700 allocations a young collection ran ~25 times a second and the collector took 3.4 % of the agent's
    # CPU in a 150-account sync; at 10,000, 2.0 % with the same peak RSS (123.9 vs 125.6 MB). Almost every
    # object here dies by reference count, so a larger young generation holds little extra memory.
    gc.set_threshold(YOUNG_THRESHOLD, 20, 10)
