"""History is written in a second thread while the next day is scored, yet a scoring run keeps
its promise: every batch is one transaction, a failure leaves the days before it written and
its own day as it was (scores and metric detail alike), and the error that stopped the run is
the one raised."""

from __future__ import annotations

import datetime as dt
import os
import sys
import threading
import typing as t
from pathlib import Path

import duckdb
import pytest

import accounthealth as ah
import accounthealth.project as project_module
from accounthealth.store import scores as history
from accounthealth.store.archive import ORPHAN_AGE_SECONDS, HistoryArchive

from builders import TRAJECTORY_START, day_files, trajectory_project

DAYS = [TRAJECTORY_START + dt.timedelta(days=i) for i in range(6)]


class Boom(Exception):
    """The failure the tests provoke."""


def fail_on_call(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, call: int) -> None:
    """Make ``owner.name`` raise Boom on its ``call``-th call (counting from 1)."""
    real = getattr(owner, name)
    calls = []

    def failing(*args: t.Any, **kwargs: t.Any) -> t.Any:
        calls.append(1)
        if len(calls) == call:
            raise Boom(f"{name} failed on call {call}")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)


def stored(p: ah.Project) -> dict[str, dict[dt.date, tuple]]:
    """Per table, each stored date's row count and latest computing time."""
    out = {}
    for table in ("scores", "metric_values"):
        rows = p.store.sql(f"SELECT as_of, count(*) FROM {table} GROUP BY as_of")
        out[table] = {day: n for day, n in rows}
    out["computed_at"] = dict(p.store.sql("SELECT as_of, max(computed_at) FROM scores GROUP BY 1"))
    return out


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = trajectory_project(tmp_path / "p", {"A": [3, 4, 5, 6, 7, 8], "B": [8, 7, 6, 5, 4, 3]})
    with ah.open(path) as p:
        p.ingest()
    return path


def test_a_day_that_fails_to_score_stops_the_run_after_the_days_before(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_on_call(monkeypatch, project_module, "score_table", 3)
    with ah.open(folder) as p, pytest.raises(Boom):
        p.score(start=DAYS[0], end=DAYS[-1])
    with ah.open(folder) as p:
        written = stored(p)
    # The two days before are committed, though the second was being written when the third
    # failed; nothing after.
    assert set(written["scores"]) == set(DAYS[:2])
    assert set(written["metric_values"]) == set(DAYS[:2])


def test_a_day_that_fails_after_its_detail_was_handed_over_leaves_that_day_as_it_was(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ah.open(folder) as p:
        p.score(start=DAYS[0], end=DAYS[-1])
        before = stored(p)
    # The third day fails once its metric detail is being written, while its final scores
    # are computed: its transaction is rolled back, so its earlier rows stay, detail included.
    fail_on_call(monkeypatch, project_module, "final_scores", 3)
    with ah.open(folder) as p, pytest.raises(Boom):
        p.score(start=DAYS[0], end=DAYS[-1])
    with ah.open(folder) as p:
        after = stored(p)
    assert after["scores"] == before["scores"]
    assert after["metric_values"] == before["metric_values"]
    rescored = {d for d in DAYS if after["computed_at"][d] != before["computed_at"][d]}
    assert rescored == set(DAYS[:2])


def test_a_failed_write_is_the_error_raised_and_nothing_after_it_is_written(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_on_call(monkeypatch, history, "_scores_table", 2)
    with ah.open(folder) as p, pytest.raises(Boom, match="_scores_table failed"):
        p.score(start=DAYS[0], end=DAYS[-1])
    with ah.open(folder) as p:
        written = stored(p)
    assert set(written["scores"]) == {DAYS[0]}
    assert set(written["metric_values"]) == {DAYS[0]}


def test_scoring_days_again_drops_the_rows_they_replaced(folder: Path) -> None:
    with ah.open(folder) as p:
        p.score(start=DAYS[0], end=DAYS[2])
    for _ in range(2):
        with ah.open(folder) as p:
            p.score(DAYS[2])
        with ah.open(folder) as p:
            p.score(start=DAYS[0], end=DAYS[1])
    # The archive lists one scores file and one detail file per day, six rows each kind
    # (two accounts, three days); the store's own tables hold none. The replaced files wait
    # for an opening an hour later (a reader may still be reading them), which deletes them.
    with ah.open(folder) as p:
        listed = dict(p.store.sql("SELECT file, row_count FROM detail_files"))
        assert p.store.sql("SELECT count(*) FROM scores") == [(6,)]
        assert p.store.sql("SELECT count(*) FROM score_details") == [(6,)]
        assert p.store.sql("SELECT count(*) FROM scores_stored") == [(0,)]
    assert len(listed) == 6 and sorted(listed.values()) == [2] * 6
    assert sum(file.startswith("scores/") for file in listed) == 3
    assert set(listed) < set(day_files(folder, age=ORPHAN_AGE_SECONDS + 60))
    with ah.open(folder) as p:
        p.store  # noqa: B018 - opening the store deletes the files no longer listed
    assert set(day_files(folder)) == set(listed)


def test_a_write_open_elsewhere_in_the_process_does_not_fail_the_run(folder: Path) -> None:
    # Another connection to the store (an override being added, say) with a write open: the
    # batch's transaction touches other tables, so the run commits its day all the same.
    with ah.open(folder) as p:
        p.store  # noqa: B018 - the store's database is open in this process
        other = duckdb.connect(str(folder / "accounthealth.duckdb"))
        other.execute("BEGIN")
        other.execute("CREATE TABLE side_note (a INTEGER)")
        try:
            assert p.score(DAYS[1]).rows == 2
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert p.store.sql("SELECT count(*) FROM scores WHERE as_of = ?", [DAYS[1]]) == [(2,)]


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="only Linux gives a thread a priority of its own"
)
def test_history_is_written_at_a_lower_priority_than_scoring(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def priority() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    seen = []
    real = HistoryArchive.write_detail

    def writing(*args: t.Any, **kwargs: t.Any) -> t.Any:
        seen.append(priority())
        return real(*args, **kwargs)

    monkeypatch.setattr(HistoryArchive, "write_detail", writing)
    scoring = priority()
    with ah.open(folder) as p:
        p.score(start=DAYS[0], end=DAYS[-1])
    # Each day's history was written by threads that give way to the next day's scoring,
    # which kept its own priority.
    assert seen == [min(scoring + history.WRITER_NICENESS, 19)] * len(DAYS)
    assert priority() == scoring
