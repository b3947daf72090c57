"""Arrow's memory pool, giving freed memory back to the system during long runs, and keeping
the garbage collector off objects that outlive them.

pyarrow allocates from mimalloc by default, which hands freed memory back to the system
within milliseconds; the next buffer then takes fresh pages, which the kernel must zero. A
scoring pass builds and drops Arrow buffers of hundreds of megabytes (the metric query's
result, the scored rows, the day's history files), and on the benchmark book's 2-core machine
a quarter of its CPU time went to zeroing pages (perf: clear_page_erms under mimalloc's
page_free_list_extend). With jemalloc as Arrow's pool a pass took 3.3-3.5 s instead of
4.8-6.1 s (system time 0.9 s instead of 2.5-3.5 s), and a 20-day backfill 24-25 s instead of
29-32 s with a lower peak (1.18-1.20 GB instead of 1.25-1.27 GB); the C library's allocator
did about as well as jemalloc. So accounthealth makes jemalloc Arrow's pool, unless
ARROW_DEFAULT_MEMORY_POOL chooses one: on Linux by setting that variable when it is imported,
which Arrow's C++ code reads once when pyarrow loads (its Parquet writer allocates from the
pool chosen then), and where pyarrow loaded first or has no jemalloc, by making jemalloc, else
the C library's allocator, pyarrow's own default when a project opens.

A scoring run allocates and frees large buffers every day it scores (Arrow results, NumPy
arrays, the day's detail). glibc raises its mmap threshold to the size of each large block
freed (up to 32 MB), so after the first few allocations a day's buffers come from the heap,
and memory freed there mostly stays with the process. A scoring run therefore hands what was
freed back to the system (malloc_trim) before its first batch and between its batches, where
it is 64 MB or more (``TRIM_FROM_BYTES``), while within a batch freed blocks are reused. On
the benchmark book, against fixing the threshold at 128 KiB so that every large block is
mapped and unmapped (which this module did before, and measured when it trimmed between a
backfill's days too): a scoring pass took 5.1-5.4 s
instead of 5.5-5.8 s (three runs each, alternating; 60,000 fewer page faults in the scores
alone), a 20-day backfill 30.4-32.7 s instead of 33.9-34.0 s, and peaked at 1.24 GB resident
instead of 1.21 GB. Between the one-day batches of a run keeping running values (a backfill
on DuckDB) it trims no more: each day allocates what the day before freed, and trimming made
the kernel map and zero those pages again each day. 30-day backfills of the benchmark book,
three in turns with trimming every day: 0.67-0.70 million page faults instead of 1.52-1.57
million, 3.9-4.5 s of system time instead of 6.4-6.5 s, 20.4-21.5 s instead of 20.8-22.9 s,
with peaks of 1,368-1,424 MB against 1,403-1,410 MB.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import sys
import typing as t
from contextlib import contextmanager

# NumPy's switch for asking the kernel for huge pages for its large arrays (read once, when
# NumPy loads): accounthealth turns it off unless the user set it (``leave_huge_pages_early``).
HUGE_PAGES_VARIABLE = "NUMPY_MADVISE_HUGEPAGE"
# From how much memory freed in glibc's heaps a scoring run hands it back. A daily run of the
# benchmark's book had freed 18.5 MB when it began scoring, and handing it back took its main
# thread 10 ms (the reading threads' page faults contending), after which scoring took those
# pages again; one-day runs in turns had medians of 0.566 s without it against 0.583 s (14
# each). A backfill's first batch follows reads of all history, which free hundreds of MB.
TRIM_FROM_BYTES = 64 << 20
# The environment variable with which a user picks Arrow's pool themselves.
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"
# Whether they did, before accounthealth was imported (this module is its first).
_POOL_CHOSEN = ARROW_POOL_VARIABLE in os.environ


def choose_arrow_pool_early() -> None:
    """Unless the user chose Arrow's pool, choose jemalloc for Arrow's C++ code, which reads
    it once when pyarrow loads (on Linux, where pyarrow's wheels have jemalloc)."""
    if not _POOL_CHOSEN and sys.platform.startswith("linux"):
        os.environ[ARROW_POOL_VARIABLE] = "jemalloc"


def leave_huge_pages_early() -> None:
    """Unless the user set NumPy's switch, have NumPy not ask for huge pages (it reads the
    switch once, when it loads). Where the kernel makes such a request compact memory as it
    faults (transparent huge pages on ``madvise`` with defrag ``madvise``, as on the benchmark's
    machine), each new large array stalls on it: 58 MB of new NumPy memory took 0.09-0.14 s
    asking, 0.02-0.03 s not (5 arrays each), and 90-day backfills of the benchmark's book
    26.5-29.6 s against 28.2-31.1 s (three each, in turns; each pair faster not asking)."""
    if sys.platform.startswith("linux"):
        os.environ.setdefault(HUGE_PAGES_VARIABLE, "0")


def use_lasting_arrow_pool() -> str:
    """Make pyarrow allocate from a pool that keeps freed memory for reuse (jemalloc, else the
    C library's allocator) if it still has mimalloc and the user did not choose it; returns
    the pool's name."""
    import pyarrow as pa  # not at import: choose_arrow_pool_early runs before pyarrow loads

    if not _POOL_CHOSEN and pa.default_memory_pool().backend_name == "mimalloc":
        backends = pa.supported_memory_backends()
        for name in ("jemalloc", "system"):
            if name in backends:
                pa.set_memory_pool(getattr(pa, f"{name}_memory_pool")())
                break
    return pa.default_memory_pool().backend_name


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library, where it is glibc; None elsewhere (macOS, Windows, musl), where it
    keeps its own policy."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        # The C library this process runs on, by its own symbols: ctypes.util.find_library
        # runs ldconfig in a child process (7 ms of a daily run).
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
    except (OSError, AttributeError):
        return None
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


class _HeapInfo(ctypes.Structure):
    """glibc's ``struct mallinfo2``."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@functools.cache
def _heap_free() -> t.Callable[[], int] | None:
    """How many bytes glibc's heaps hold free (mallinfo2, glibc 2.33 on); None where it
    cannot say."""
    libc = _glibc()
    info = getattr(libc, "mallinfo2", None)
    if info is None:
        return None
    info.restype = _HeapInfo
    return lambda: int(info().fordblks)


def return_freed_memory() -> bool:
    """Hand the memory this process has freed back to the system, where it is
    ``TRIM_FROM_BYTES`` or more (where the C library cannot say, whatever it is); False where
    nothing was handed back, or that is the C library's own business (not glibc)."""
    libc = _glibc()
    if libc is None:
        return False
    free = _heap_free()
    if free is not None and free() < TRIM_FROM_BYTES:
        return False
    libc.malloc_trim(0)
    return True


@contextmanager
def older_objects_left_alone() -> t.Iterator[None]:
    """Meanwhile, Python's garbage collector leaves alone the objects that existed before
    (modules, Ibis and pandas internals, the project's configuration); they are its again
    after. Its full collections scan every object: one took 0.14 s of a scoring pass of the
    benchmark book, over objects none of which the pass could free."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
