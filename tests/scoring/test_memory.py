"""How a scoring run treats memory (accounthealth.memory): it gives the large buffers it frees
back to the system between days (without it, glibc keeps them from one day of a backfill to
the next), while Arrow allocates from a pool that keeps freed memory for reuse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from accounthealth.memory import ARROW_POOL_VARIABLE, HUGE_PAGES_VARIABLE

from builders import CHURN_MODEL, account, make_project

# Frees one 8 MB block (glibc then raises its mmap threshold to 8 MB), allocates 200 MB in
# 4 MB blocks, each followed by a small one that stays (so that the blocks come from the heap
# and freeing them leaves holes in it, not free space at its top that glibc trims by itself),
# frees the 200 MB, gives it back if told to, and prints how much of it the process still
# holds.
SCRIPT = """
import sys
from pathlib import Path
from accounthealth.memory import return_freed_memory

def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

first = bytearray(8 << 20)
del first
before = rss_mb()
blocks, pins = [], []
for _ in range(int(sys.argv[2])):
    blocks.append(bytearray(4 << 20))
    pins.append(bytearray(64 << 10))
del blocks
if sys.argv[1] == "returned":
    assert return_freed_memory()
elif sys.argv[1] == "too little":
    assert not return_freed_memory()
print(rss_mb() - before)
"""


def held_after_free(mode: str, seed: int, blocks: int = 50) -> float:
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}  # what the heap holds before varies
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, str(blocks)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return float(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_freed_blocks_go_back_to_the_system() -> None:
    # Left to itself glibc keeps the freed 200 MB: the case the module is for.
    for seed in (0, 1, 2):
        assert held_after_free("kept", seed) > 150
        assert held_after_free("returned", seed) < 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_too_little_freed_is_not_handed_back() -> None:
    # 20 MB freed: handing it back would cost more than it saves (memory.TRIM_FROM_BYTES);
    # the script fails if it is handed back.
    held_after_free("too little", 0, blocks=5)


# Imports accounthealth and pyarrow in the order given and prints the name of Arrow's memory
# pool, then again once the project given is open.
POOL_SCRIPT = """
import sys

first, project = sys.argv[1:]
if first == "pyarrow":
    import pyarrow
import accounthealth as ah
import pyarrow as pa

print(pa.default_memory_pool().backend_name)
with ah.open(project):
    print(pa.default_memory_pool().backend_name)
"""


def arrow_pool(project: Path, first: str, chosen: str | None) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k != ARROW_POOL_VARIABLE}
    if chosen:
        env[ARROW_POOL_VARIABLE] = chosen
    out = subprocess.run(
        [sys.executable, "-c", POOL_SCRIPT, first, str(project)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    loaded, opened = out.stdout.split()
    return loaded, opened


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pyarrow's jemalloc pool")
def test_arrow_allocates_from_a_pool_that_keeps_freed_memory(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", CHURN_MODEL, {"accounts": [account("A1")]})
    # Imported first, accounthealth chooses jemalloc for Arrow's C++ code as pyarrow loads, not
    # pyarrow's default mimalloc, which gives freed memory back at once (accounthealth.memory).
    assert arrow_pool(project, "accounthealth", None) == ("jemalloc", "jemalloc")
    # After pyarrow, too late for that: opening a project makes it pyarrow's default.
    assert arrow_pool(project, "pyarrow", None) == ("mimalloc", "jemalloc")
    # A pool the user chose is left alone.
    assert arrow_pool(project, "accounthealth", "mimalloc") == ("mimalloc", "mimalloc")
    assert arrow_pool(project, "pyarrow", "mimalloc") == ("mimalloc", "mimalloc")


def numpy_asks_for_huge_pages(chosen: str | None) -> bool:
    env = {k: v for k, v in os.environ.items() if k != HUGE_PAGES_VARIABLE}
    if chosen is not None:
        env[HUGE_PAGES_VARIABLE] = chosen
    script = "import accounthealth, numpy\nprint(numpy._core.multiarray._get_madvise_hugepage())"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    )
    return out.stdout.strip() == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="NumPy asks only on Linux")
def test_numpy_does_not_ask_for_huge_pages_unless_the_user_says_so() -> None:
    # Imported first, accounthealth turns NumPy's requests off (accounthealth.memory): on a
    # kernel that compacts memory for them, each new large array stalled.
    assert not numpy_asks_for_huge_pages(None)
    # The user's own setting is left alone.
    assert numpy_asks_for_huge_pages("1")
    assert not numpy_asks_for_huge_pages("0")
