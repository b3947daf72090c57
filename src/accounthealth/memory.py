"""Give freed memory back to the system during long runs.

A scoring run allocates and frees large buffers every day it scores (Arrow results, pandas
frames, the day's detail). glibc serves an allocation above its mmap threshold with a mapping
of its own, unmapped when freed, but it raises that threshold to the size of each such block
freed (up to 32 MB): after the first day, a day's buffers come from the heap, and memory freed
there mostly stays with the process. On the benchmark book a 20-day backfill peaked at 1.87 GB
of resident memory with the threshold moving and at 1.60 GB with it fixed at glibc's default of
128 KiB (as MALLOC_MMAP_THRESHOLD_=131072 would), in the same time (26.1-26.7 s both ways).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

# mallopt's parameter number for the mmap threshold (malloc.h), and glibc's default value.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024


@functools.cache
def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold at its default for this process, so that large blocks go
    back to the system when freed; once per process. False where the C library is not glibc
    (macOS, Windows, musl), which keeps its own policy."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it; musl's mallopt does nothing
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
