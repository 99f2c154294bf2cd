"""The C heap's large blocks given back to the system when they are freed (glibc).

glibc serves a request of at least its mmap threshold with a mapping of its own, unmapped when
it is freed; smaller ones come from its heaps (one per thread that allocates, up to eight per
core), where a freed block is kept for that heap's next requests. The threshold starts at
128 KiB and, unless it was set, rises to the size of each mapped block freed (up to 32 MiB).
A store's large blocks are freed all the time: FAISS grows an index part's storage by copying
it into one twice the size, and each batch's vectors and the graph's chunks are arrays of
megabytes. Once the threshold has risen past them, they come from the heaps, and the holes
they leave stay in the process: at a million fragments, 330 MiB of its 2.2 GB were free heap
(`carma bench scale`: `after_phase.heap_free`), which its peak RSS counted. A fixed threshold
keeps them mapped, and so returned at once (at 100,000 fragments: 129 MiB of free heap after
an ingest against 9; the ingest's peak RSS 511 against 436 MiB, the rebuild's 636 against
508; docs/benchmarks.md, "The C heap's free memory").

It is a setting of the whole process, made once by the first `carma.open`; a threshold the
environment sets (`MALLOC_MMAP_THRESHOLD_`, or `glibc.malloc.mmap_threshold` in
`GLIBC_TUNABLES`) is left as it is. `heap_free_mib` reads what the heaps hold free, for the
benchmarks.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading

LARGE_BLOCK = 1 << 20  # bytes: a request this large or larger gets a mapping of its own
_M_MMAP_THRESHOLD = -3  # mallopt's parameter (malloc.h)
_lock = threading.Lock()
_done = False


def threshold_chosen_by_environment() -> bool:
    return "MALLOC_MMAP_THRESHOLD_" in os.environ or "glibc.malloc.mmap_threshold" in (
        os.environ.get("GLIBC_TUNABLES") or ""
    )


def give_back_large_blocks() -> bool:
    """Fix glibc's mmap threshold at LARGE_BLOCK, once per process; whether this call set it
    (False: set before, chosen by the environment, or not glibc)."""
    global _done
    with _lock:
        if _done:
            return False
        _done = True
        if platform.libc_ver()[0] != "glibc" or threshold_chosen_by_environment():
            return False
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        return mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK) == 1


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def heap_free_mib() -> float | None:
    """What the C heap holds free (glibc's mallinfo2: freed, not given back to the system),
    which the process's RSS counts; None where it cannot be told (not glibc, or one before
    2.33). What a benchmark reads to tell memory kept for reuse from memory in use."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):  # not glibc, or one before 2.33
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return round(info.fordblks / 2**20, 1)
