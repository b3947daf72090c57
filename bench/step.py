"""One measured step of the benchmark, run in its own process so that its peak memory is its
own: `python -m bench.step STEP PROJECT [DATES...]` prints one JSON line."""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
import typing as t
from pathlib import Path

import accounthealth as ah
import accounthealth.project as project_module
from accounthealth.engine.duckdb import DuckDBEngine
from accounthealth.memory import use_lasting_arrow_pool
from accounthealth.store.archive import HistoryArchive


def _peak_mb() -> float:
    """This process's peak resident memory. Not getrusage's ru_maxrss: Linux carries it over
    from the parent through fork and exec, so a child of a large parent reports the parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class _Clock:
    """Seconds spent in ``owner.name`` while this process runs, by thread."""

    def __init__(self, owner: t.Any, name: str) -> None:
        self.by_thread: dict[int, float] = {}
        real = getattr(owner, name)

        def timed(*args: t.Any, **kwargs: t.Any) -> t.Any:
            started = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                thread = threading.get_ident()
                spent = time.perf_counter() - started
                self.by_thread[thread] = self.by_thread.get(thread, 0.0) + spent

        setattr(owner, name, timed)

    @property
    def seconds(self) -> float:
        return sum(self.by_thread.values())


def _busiest(clocks: list[_Clock]) -> float:
    """The most seconds one thread spent in any of ``clocks``."""
    threads: dict[int, float] = {}
    for clock in clocks:
        for thread, seconds in clock.by_thread.items():
            threads[thread] = threads.get(thread, 0.0) + seconds
    return max(threads.values(), default=0.0)


def run(step: str, project: Path, dates: list[dt.date]) -> dict:
    # Every step with the Arrow memory pool a project uses (accounthealth.memory), the
    # reference's too.
    use_lasting_arrow_pool()
    started = time.perf_counter()
    rows = 0
    carried_from = None
    # Scoring (the metric query and the scores from it), and history's writes in the history
    # writer's threads: inserts into the store, the detail files (each segment's as it is
    # scored, in two threads) and the scores files, at the same time.
    scoring = _Clock(project_module, "score_table")
    writing = [
        _Clock(DuckDBEngine, "write_arrow"),
        _Clock(HistoryArchive, "write_detail"),
        _Clock(HistoryArchive, "write_scores"),
    ]
    if step == "reference":
        import duckdb

        from bench.reference import reference_scores

        con = duckdb.connect(str(project / "accounthealth.duckdb"), read_only=True)
        started = time.perf_counter()
        rows = reference_scores(con, dates[0]).num_rows
    elif step == "event_bytes":
        import duckdb

        con = duckdb.connect(str(project / "accounthealth.duckdb"), read_only=True)
        rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
        # The events as one in-memory Arrow table: the 'size of the event data'.
        size = con.execute("SELECT * FROM events").to_arrow_table().nbytes
        return {"step": step, "rows": rows, "bytes": size}
    else:
        with ah.open(project) as p:
            p.compute  # noqa: B018 - open engines and sessions before the clock starts
            started = time.perf_counter()
            if step == "score":
                report = p.score(dates[0])
                rows, carried_from = report.rows, report.carried_from
            elif step == "backfill":
                rows = p.score(start=dates[0], end=dates[1]).rows
            elif step == "ingest":
                rows = sum(table.rows_loaded for table in p.ingest().tables)
            else:
                raise SystemExit(f"unknown step {step}")
    return {
        "step": step,
        "seconds": round(time.perf_counter() - started, 3),
        "rows": rows,
        "carried_from": carried_from and str(carried_from),
        "peak_mb": round(_peak_mb(), 1),
        "scoring_seconds": round(scoring.seconds, 3),
        # The busiest writer thread's: the least time the writes need, whatever the queries do.
        "write_seconds": round(_busiest(writing), 3),
    }


if __name__ == "__main__":
    name, folder, *days = sys.argv[1:]
    print(json.dumps(run(name, Path(folder), [dt.date.fromisoformat(d) for d in days])))
