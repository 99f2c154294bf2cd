"""carma.allocator: a large block freed goes back to the system, however large the blocks
freed before it (glibc's own threshold would rise past them)."""

import os
import platform
import subprocess
import sys

import pytest

from carma import allocator

# A child process each, since the setting is the process's: blocks of 8 MiB mapped and freed
# (which raises glibc's own threshold to 8 MiB), then 40 blocks of 2 MiB, every other one
# freed so that the holes cannot merge and go back at the heap's top. It prints whether the
# threshold was set, and the C heap's free bytes (mallinfo2).
CHILD = """
import sys
import numpy as np
from carma import allocator
was_set = allocator.give_back_large_blocks() if sys.argv[1] == "fixed" else False
for _ in range(3):
    big = np.ones(8 << 20, dtype=np.uint8)
    del big
blocks = [np.ones(2 << 20, dtype=np.uint8) for _ in range(40)]
del blocks[::2]
print(was_set, allocator.heap_free_mib())
"""

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")


def _child(mode: str, **env: str) -> tuple[bool, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    was_set, free = done.stdout.split()
    return was_set == "True", float(free)


def test_a_large_block_freed_is_not_kept_in_the_heap():
    assert _child("default") == (False, pytest.approx(40, abs=10))  # twenty 2 MiB holes kept
    was_set, free = _child("fixed")
    assert was_set and free < 5


def test_a_threshold_the_environment_chose_stands(monkeypatch):
    was_set, free = _child("fixed", MALLOC_MMAP_THRESHOLD_=str(64 << 20))
    assert not was_set and free > 30  # glibc keeps what the environment asked for
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1048576")
    assert allocator.threshold_chosen_by_environment()
