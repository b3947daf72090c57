"""Ingest reads only the Parquet files added since the last ingest, and ends with the tables
and rejected rows an ingest of every file would give."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import accounthealth as ah

from builders import account, make_project, write_csv

MODEL = "components:\n  c:\n    weight: 1\n    metrics:\n      m: {count: events, score: boolean}\n"
DAY_1 = [("e1", "A1"), ("e2", "A9"), ("e3", "A2")]
# A new key, one loaded on day 1, one rejected on day 1, one twice, an unknown account.
DAY_2 = [("e4", "A1"), ("e1", "A2"), ("e2", "A1"), ("e5", "A2"), ("e5", "A1"), ("e6", "A7")]


def book(folder: Path, *days: list[tuple[str, str]]) -> Path:
    make_project(folder, MODEL, {"accounts": [account("A1"), account("A2")]})
    (folder / "data" / "events").mkdir()
    for n, rows in enumerate(days, start=1):
        add_day(folder, n, rows)
    (folder / "accounthealth.yaml").write_text(
        "model: model.yaml\nsources:\n  accounts: {file: data/accounts.csv}\n"
        "  events: {file: 'data/events/*.parquet'}\n"
    )
    return folder


def add_day(folder: Path, n: int, rows: list[tuple[str, str]]) -> None:
    ids, accounts = zip(*rows, strict=True)
    times = pa.array([1_767_261_600_000_000 + n * 86_400_000_000] * len(rows), pa.timestamp("us"))
    data = pa.table({"event_id": ids, "account_id": accounts, "event_time": times})
    pq.write_table(data, folder / "data" / "events" / f"day{n}.parquet")


def ingested(folder: Path) -> tuple[dict[str, str], pd.DataFrame, pd.DataFrame]:
    with ah.open(folder) as p:
        report = p.ingest()
        events = p.compute.execute(p.compute.table("events"))
        rejects = p.rejects("events").drop(columns=["source_file"])
    return {r.table: r.how for r in report.tables}, events, rejects


def test_new_files_are_appended_as_a_whole_ingest_would_load_them(tmp_path: Path) -> None:
    daily = book(tmp_path / "daily", DAY_1)
    assert ingested(daily)[0]["events"] == "replaced"
    add_day(daily, 2, DAY_2)
    how, events, rejects = ingested(daily)
    _, all_events, all_rejects = ingested(book(tmp_path / "whole", DAY_1, DAY_2))
    assert how == {"accounts": "replaced", "events": "appended"}
    pd.testing.assert_frame_equal(events, all_events)
    pd.testing.assert_frame_equal(rejects, all_rejects)
    assert events["event_id"].tolist() == ["e1", "e3", "e4", "e5"]
    assert sorted(zip(rejects["row_number"], rejects["reason"], strict=True)) == [
        (2, "duplicate key (an earlier row has it)"),  # e1, loaded on day 1
        (2, "unknown account_id (not in accounts)"),  # day 1's e2
        (3, "duplicate key (an earlier row has it)"),  # e2, rejected on day 1
        (5, "duplicate key (an earlier row has it)"),  # e5, twice on day 2
        (6, "unknown account_id (not in accounts)"),
    ]
    how, again, _ = ingested(daily)
    assert how["events"] == "unchanged"
    pd.testing.assert_frame_equal(again, all_events)


def test_a_changed_file_or_new_account_reads_every_file_again(tmp_path: Path) -> None:
    folder = book(tmp_path / "co", DAY_1, DAY_2)
    ingested(folder)
    # Day 1 rewritten (e2 now has a known account): no longer what was read.
    add_day(folder, 1, [("e1", "A1"), ("e2", "A2"), ("e3", "A2")])
    add_day(folder, 3, [("e7", "A1")])
    how, events, _ = ingested(folder)
    assert how["events"] == "replaced"
    assert events["event_id"].tolist() == ["e1", "e2", "e3", "e4", "e5", "e7"]
    # A7 becomes an account: its event, rejected so far, loads.
    write_csv(folder / "data" / "accounts.csv", [account("A1"), account("A2"), account("A7")])
    how, events, _ = ingested(folder)
    assert how["events"] == "replaced"
    assert "e6" in events["event_id"].tolist()
    # The table changed behind accounthealth's back: read whole again, not appended to.
    with ah.open(folder) as p:
        p.compute.sql("DELETE FROM events WHERE event_id = 'e7'")
    add_day(folder, 4, [("e8", "A2")])
    how, events, _ = ingested(folder)
    assert how["events"] == "replaced"
    assert events["event_id"].tolist()[-2:] == ["e7", "e8"]
    # A file touched but not changed counts as changed: its time is all there is to go by.
    os.utime(folder / "data" / "events" / "day4.parquet")
    assert ingested(folder)[0]["events"] == "replaced"


def test_the_command_says_how_each_table_was_ingested(tmp_path: Path) -> None:
    folder = book(tmp_path / "co", DAY_1)
    ingested(folder)
    add_day(folder, 2, DAY_2)
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    command = [sys.executable, "-c", "from accounthealth.cli.app import main; main()", "ingest"]
    out = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env, check=True)
    lines = {line.split()[1]: line for line in out.stdout.splitlines() if line.startswith("│")}
    assert "appended (1 new file)" in lines["events"]
    assert "replaced" in lines["accounts"]
