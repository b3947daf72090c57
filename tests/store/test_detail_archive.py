"""A DuckDB store keeps each scored day's metric and component detail as a Parquet file beside
it, listed in the store's transaction: readers see exactly the committed days, a failed or
killed run leaves no file that counts, and the store and its folder move together."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
import typing as t
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import accounthealth as ah
from accounthealth.errors import ProjectError
from accounthealth.store import scores as history
from accounthealth.store.archive import ORPHAN_AGE_SECONDS

from builders import TRAJECTORY_START, trajectory_project

DAYS = [TRAJECTORY_START + dt.timedelta(days=i) for i in range(4)]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = trajectory_project(tmp_path / "p", {"A": [3, 4, 5, 6], "B": [8, 7, 6, 5]})
    with ah.open(path) as p:
        p.ingest()
    return path


def files_on_disk(folder: Path) -> set[str]:
    root = folder / "accounthealth.details"
    return {path.relative_to(root).as_posix() for path in root.rglob("*.parquet")}


def listed(p: ah.Project) -> set[str]:
    return {file for (file,) in p.store.sql("SELECT file FROM detail_files")}


def metric_rows(p: ah.Project) -> dict[tuple[str, dt.date, str], float]:
    rows = p.store.sql("SELECT account_id, as_of, metric, value FROM metric_values")
    return {(a, d, m): v for a, d, m, v in rows}


def test_each_day_is_one_file_under_its_version_and_date(folder: Path) -> None:
    with ah.open(folder) as p:
        p.score(start=DAYS[0], end=DAYS[2])
        version = p.model.version
        files = listed(p)
        values = metric_rows(p)
    assert files == files_on_disk(folder)
    assert sorted(f.rsplit("/", 1)[0] for f in files) == [
        f"model_version={version}/as_of={day}" for day in DAYS[:3]
    ]
    # The files hold the detail the scores were computed from: A's daily quantity.
    assert values[("A", DAYS[1], "use_today")] == 4.0
    assert values[("B", DAYS[2], "use_today")] == 6.0
    for file in files:
        assert pq.read_metadata(folder / "accounthealth.details" / file).num_rows == 2


def test_a_day_that_fails_to_write_leaves_no_file_and_its_old_detail_listed(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ah.open(folder) as p:
        p.score(start=DAYS[0], end=DAYS[1])
        before = (listed(p), metric_rows(p))
    # The second day fails after its detail file was written, as its scores are.
    real = history._scores_table
    calls = []

    def fails_second(*args: t.Any) -> t.Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("writing scores failed")
        return real(*args)

    monkeypatch.setattr(history, "_scores_table", fails_second)
    with ah.open(folder) as p, pytest.raises(RuntimeError, match="writing scores failed"):
        p.score(start=DAYS[0], end=DAYS[1])
    monkeypatch.undo()
    with ah.open(folder) as p:
        after = (listed(p), metric_rows(p))
    # The first day was rescored (a new file, the old one deleted); the second kept its own,
    # and the file written for it is gone.
    assert after[1] == before[1]
    assert len(after[0]) == 2 and len(after[0] & before[0]) == 1
    assert files_on_disk(folder) == after[0]


def test_rescoring_replaces_detail_kept_in_the_table_before_the_archive(folder: Path) -> None:
    with ah.open(folder) as p:
        p.score(DAYS[0])
        version = p.model.version
        # Rows as a store upgraded from before the archive holds them: in the table.
        for model_version in (version, "older"):
            p.store.sql(
                "INSERT INTO score_details_stored (account_id, as_of, model_version, "
                "segment_model) VALUES ('A', ?, ?, 'default')",
                [DAYS[1], model_version],
            )
        p.score(DAYS[1])
        rows = p.store.sql(
            "SELECT model_version, count(*) FROM score_details WHERE as_of = ? GROUP BY 1",
            [DAYS[1]],
        )
        in_table = p.store.sql("SELECT model_version FROM score_details_stored")
    # This version's day now comes from its file (both accounts); the other version's row stays.
    assert dict(rows) == {version: 2, "older": 1}
    assert in_table == [("older",)]


def test_files_no_run_listed_are_deleted_once_an_hour_old(folder: Path) -> None:
    with ah.open(folder) as p:
        p.score(DAYS[0])
    root = folder / "accounthealth.details"
    old, young = root / "x" / "killed-run.parquet", root / "x" / "writing-now.parquet"
    for path in (old, young):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(next(root.rglob("as_of=*/*.parquet")), path)
    an_hour_ago = time.time() - ORPHAN_AGE_SECONDS - 60
    os.utime(old, (an_hour_ago, an_hour_ago))
    with ah.open(folder) as p:
        p.store  # noqa: B018 - opening the store sweeps
        assert p.store.sql("SELECT count(*) FROM score_details") == [(2,)]
    assert not old.exists() and young.exists()


def test_the_store_and_its_folder_move_together(folder: Path, tmp_path: Path) -> None:
    with ah.open(folder) as p:
        p.score(DAYS[0])
        before = metric_rows(p)
    moved = tmp_path / "moved"
    shutil.move(folder, moved)
    with ah.open(moved) as p:
        assert metric_rows(p) == before
        p.score(DAYS[1])
        assert len(listed(p)) == 2


def test_a_store_missing_its_listed_files_says_how_to_restore_them(folder: Path) -> None:
    with ah.open(folder) as p:
        p.score(DAYS[0])
    shutil.rmtree(folder / "accounthealth.details")
    with ah.open(folder) as p, pytest.raises(ProjectError) as raised:
        p.store  # noqa: B018
    message = str(raised.value)
    assert "1 of the 1 history detail files" in message
    assert "restore the folder from the same backup" in message
