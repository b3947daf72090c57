"""Spark's writes are staged in a transaction and moved into place only when it succeeds
(engine/spark.py): a failed ingest leaves every table as the last good one left it."""

from __future__ import annotations

import os
import signal
import time
import typing as t
from pathlib import Path

import pyarrow as pa
import pytest

from accounthealth.engine import spark as spark_module
from accounthealth.engine.spark import REPLACED, STAGING_PREFIX, SparkEngine
from accounthealth.errors import ProjectError


def ids(rows: list[str]) -> pa.Table:
    return pa.table({"account_id": pa.array(rows, pa.string())})


def held(engine: SparkEngine, name: str) -> list[str]:
    return sorted(engine.execute(engine.table(name))["account_id"])


def replace_both(engine: SparkEngine) -> None:
    """Inside a transaction: stage new accounts (A2) and tickets (T2) replacing the old."""
    engine.write_arrow("accounts", ids(["A2"]), replace=True)
    engine.write_arrow("tickets", ids(["T2"]), replace=True)


def lose_staged(tables: Path, name: str) -> None:
    """The staged table ``name`` lost before it is moved (a disk's trouble, a cleaner's)."""
    staged = next(tables.glob(f"{STAGING_PREFIX}*/{name}"))
    for file in staged.iterdir():
        file.unlink()
    staged.rmdir()


def staging_folders(tables: Path) -> list[str]:
    return sorted(p.name for p in tables.iterdir() if p.name.startswith(STAGING_PREFIX))


@pytest.fixture
def engine(spark: t.Any, tmp_path: Path) -> t.Iterator[SparkEngine]:
    engine = SparkEngine("local[2]", {}, str(tmp_path / "tables"))
    engine.write_arrow("accounts", ids(["A1"]), replace=True)
    engine.write_arrow("tickets", ids(["T1"]), replace=True)
    yield engine
    engine.close()


def test_a_failed_transaction_leaves_the_tables_as_they_were(
    engine: SparkEngine, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError), engine.transaction():
        engine.write_arrow("accounts", ids(["A2", "A3"]), replace=True)
        engine.write_arrow("tickets", ids(["T2"]))
        engine.write_arrow("events", ids(["E1"]), replace=True)
        # Reads inside the transaction see what it wrote.
        assert held(engine, "accounts") == ["A2", "A3"]
        assert held(engine, "tickets") == ["T1", "T2"]
        assert engine.has_table("events")
        raise RuntimeError("a later table failed")
    assert held(engine, "accounts") == ["A1"]
    assert held(engine, "tickets") == ["T1"]
    assert not engine.has_table("events")
    assert staging_folders(tmp_path / "tables") == []


def test_a_transaction_that_succeeds_moves_its_tables_into_place(
    engine: SparkEngine, tmp_path: Path
) -> None:
    with engine.transaction():
        engine.write_arrow("accounts", ids(["A2"]), replace=True)
        engine.write_arrow("accounts", ids(["A3"]))
        engine.write_arrow("tickets", ids(["T2"]))
        engine.write_arrow("events", ids(["E1"]), replace=True)
        with engine.transaction():  # nested: the outer one moves them
            engine.write_arrow("events", ids(["E2"]))
        assert held(engine, "accounts") == ["A2", "A3"]
    assert held(engine, "accounts") == ["A2", "A3"]
    assert held(engine, "tickets") == ["T1", "T2"]
    assert held(engine, "events") == ["E1", "E2"]
    assert staging_folders(tmp_path / "tables") == []
    # A new session reads the tables by path, as the next run will.
    again = SparkEngine("local[2]", {}, str(tmp_path / "tables"))
    assert held(again, "tickets") == ["T1", "T2"]


def test_a_table_that_cannot_be_moved_into_place_undoes_the_ones_moved(
    engine: SparkEngine, tmp_path: Path
) -> None:
    with pytest.raises(ProjectError) as info, engine.transaction():
        replace_both(engine)
        lose_staged(tmp_path / "tables", "tickets")
    assert "cannot move the tables written into place" in info.value.what
    assert info.value.where.endswith("tables/tickets")
    assert held(engine, "accounts") == ["A1"]
    assert held(engine, "tickets") == ["T1"]
    assert staging_folders(tmp_path / "tables") == []


def test_a_killed_runs_staging_folder_is_deleted_once_an_hour_old_unless_it_keeps_a_table(
    engine: SparkEngine, tmp_path: Path
) -> None:
    tables = tmp_path / "tables"
    old, recent = tables / f"{STAGING_PREFIX}old", tables / f"{STAGING_PREFIX}recent"
    # Killed between setting a table aside and moving the new one in: its last good files.
    killed = tables / f"{STAGING_PREFIX}killed"
    for folder in (old, recent, killed / REPLACED):
        (folder / "accounts").mkdir(parents=True)
    hours_ago = time.time() - 2 * 3600
    for folder in (old, killed):
        os.utime(folder, (hours_ago, hours_ago))
    with engine.transaction():
        pass
    # The recent one may be another process's transaction, still at work.
    assert staging_folders(tables) == [killed.name, recent.name]


def test_tables_a_failed_move_cannot_put_back_are_kept_and_said(
    engine: SparkEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should undoing a move fail too (the file system failing twice), the last good files
    stay in the staging folder, which no later run sweeps, and the error says what to move
    back where."""
    real = spark_module._rename

    def failing_to_put_accounts_back(fs: t.Any, source: t.Any, target: t.Any) -> None:
        # Only the rename that brings the replaced accounts back fails: every other runs.
        if source.getParent().getName() == REPLACED:
            raise OSError("the disk is gone")
        real(fs, source, target)

    monkeypatch.setattr(spark_module, "_rename", failing_to_put_accounts_back)
    with pytest.raises(ProjectError) as info, engine.transaction():
        replace_both(engine)
        lose_staged(tmp_path / "tables", "tickets")
    [kept] = staging_folders(tmp_path / "tables")
    assert "nor undo every move done" in info.value.what
    assert f"{kept}/{REPLACED}/accounts back to {tmp_path}/tables/accounts" in info.value.fix
    monkeypatch.undo()
    last_good = SparkEngine("local[2]", {}, str(tmp_path / "tables" / kept / REPLACED))
    assert held(last_good, "accounts") == ["A1"]
    hours_ago = time.time() - 2 * 3600
    os.utime(tmp_path / "tables" / kept, (hours_ago, hours_ago))
    with engine.transaction():
        pass
    assert staging_folders(tmp_path / "tables") == [kept]


def test_ctrl_c_while_the_tables_are_moved_waits_until_they_are_in_place(
    engine: SparkEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SIGINT during the first rename: the moves go on to the end, then the interrupt
    is raised (a move done but not known to be could not be undone)."""
    real = spark_module._rename

    def ctrl_c_during_the_first(fs: t.Any, source: t.Any, target: t.Any) -> None:
        real(fs, source, target)
        if target.getParent().getName() == REPLACED and target.getName() == "accounts":
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(spark_module, "_rename", ctrl_c_during_the_first)
    with pytest.raises(KeyboardInterrupt), engine.transaction():
        replace_both(engine)
    monkeypatch.undo()
    assert held(engine, "accounts") == ["A2"]
    assert held(engine, "tickets") == ["T2"]
    assert staging_folders(tmp_path / "tables") == []
    assert signal.getsignal(signal.SIGINT) is not None  # the handler before is back


def test_an_interrupt_raised_in_a_move_puts_the_tables_back(
    engine: SparkEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupt raised by a move itself (as outside the main thread, where signals are
    not held back): the moves done are undone before it goes on, and nothing of the last
    good tables is deleted."""
    real = spark_module._rename
    renames = []

    def interrupted_at_the_third(fs: t.Any, source: t.Any, target: t.Any) -> None:
        renames.append(f"{target.getParent().getName()}/{target.getName()}")
        if len(renames) == 3:
            raise KeyboardInterrupt
        real(fs, source, target)

    monkeypatch.setattr(spark_module, "_rename", interrupted_at_the_third)
    with pytest.raises(KeyboardInterrupt), engine.transaction():
        replace_both(engine)
    monkeypatch.undo()
    # Accounts set aside and the staged ones moved in; then tickets set aside, interrupted.
    assert renames[:3] == [f"{REPLACED}/accounts", "tables/accounts", f"{REPLACED}/tickets"]
    assert held(engine, "accounts") == ["A1"]
    assert held(engine, "tickets") == ["T1"]
    assert staging_folders(tmp_path / "tables") == []


def test_a_table_replaced_after_rows_were_added_holds_only_the_new_rows(
    engine: SparkEngine,
) -> None:
    with engine.transaction():
        engine.write_arrow("tickets", ids(["T2"]))
        engine.write_arrow("tickets", ids(["T3"]), replace=True)
        assert held(engine, "tickets") == ["T3"]
    assert held(engine, "tickets") == ["T3"]
