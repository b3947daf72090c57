"""Ingest reads only the files added since the last ingest (Parquet, CSV or JSON lines), and
ends with the tables and rejected rows an ingest of every file would give."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import accounthealth as ah
from accounthealth.sources.incremental import Fingerprint, last_fingerprints

from builders import account, make_project, write_csv

MODEL = "components:\n  c:\n    weight: 1\n    metrics:\n      m: {count: events, score: boolean}\n"
DAY_1 = [("e1", "A1"), ("e2", "A9"), ("e3", "A2")]
# A new key, one loaded on day 1, one rejected on day 1, one twice, an unknown account.
DAY_2 = [("e4", "A1"), ("e1", "A2"), ("e2", "A1"), ("e5", "A2"), ("e5", "A1"), ("e6", "A7")]


FORMATS = ("parquet", "csv", "jsonl")


def book(
    folder: Path, *days: list[tuple[str, str]], fmt: str = "parquet", compute: str = ""
) -> Path:
    """A project whose events are one file a day; ``compute``: its compute setting (YAML),
    else the embedded DuckDB."""
    make_project(folder, MODEL, {"accounts": [account("A1"), account("A2")]})
    (folder / "data" / "events").mkdir()
    for n, rows in enumerate(days, start=1):
        add_day(folder, n, rows, fmt)
    (folder / "accounthealth.yaml").write_text(
        "model: model.yaml\nsources:\n  accounts: {file: data/accounts.csv}\n"
        f"  events: {{file: 'data/events/*.{fmt}'}}\n"
        + (f"compute: {compute}\n" if compute else "")
    )
    return folder


def add_day(
    folder: Path, n: int, rows: list[tuple[str, str]], fmt: str = "parquet", **extra: str
) -> None:
    """Day ``n``'s events (event id, account id) as one file, with ``extra`` columns."""
    ids, accounts = zip(*rows, strict=True)
    times = pa.array([1_767_261_600_000_000 + n * 86_400_000_000] * len(rows), pa.timestamp("us"))
    data = pa.table({"event_id": ids, "account_id": accounts, "event_time": times})
    for name, value in extra.items():
        data = data.append_column(name, pa.array([value] * len(rows)))
    path = folder / "data" / "events" / f"day{n}.{fmt}"
    if fmt == "parquet":
        pq.write_table(data, path)
    elif fmt == "csv":
        write_csv(path, data.to_pylist())
    else:
        path.write_text("".join(json.dumps(r, default=str) + "\n" for r in data.to_pylist()))


def ingested(folder: Path) -> tuple[dict[str, str], pd.DataFrame, pd.DataFrame]:
    with ah.open(folder) as p:
        report = p.ingest()
        events = p.compute.execute(p.compute.table("events"))
        rejects = p.rejects("events").drop(columns=["source_file"])
        if p.compute.kind == "spark":
            # A Spark table is a folder of files, read back in no set order.
            events = events.sort_values("event_id", ignore_index=True)
    return {r.table: r.how for r in report.tables}, events, rejects


@pytest.mark.parametrize(
    ("fmt", "engine"),
    [*((fmt, "duckdb") for fmt in FORMATS), ("csv", "postgres"), ("parquet", "spark")],
)
def test_new_files_are_appended_as_a_whole_ingest_would_load_them(
    tmp_path: Path, fmt: str, engine: str, request: pytest.FixtureRequest
) -> None:
    def compute() -> str:
        if engine == "postgres":
            url = request.getfixturevalue("postgres_server").new_database()
            return f"{{engine: postgres, url: '{url}'}}"
        if engine == "spark":
            request.getfixturevalue("spark")
            return "{engine: spark, master: 'local[2]'}"
        return ""

    daily = book(tmp_path / "daily", DAY_1, fmt=fmt, compute=compute())
    assert ingested(daily)[0]["events"] == "replaced"
    add_day(daily, 2, DAY_2, fmt)
    how, events, rejects = ingested(daily)
    whole = book(tmp_path / "whole", DAY_1, DAY_2, fmt=fmt, compute=compute())
    _, all_events, all_rejects = ingested(whole)
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


def test_rows_of_a_source_without_keys_are_appended_to_the_earlier_ones(tmp_path: Path) -> None:
    """Events need no event_id: with none, no row is a duplicate, and appending keeps every
    earlier row."""
    folder = book(tmp_path / "co", fmt="csv")
    for n, rows in enumerate([DAY_1, DAY_2], start=1):
        path = folder / "data" / "events" / f"day{n}.csv"
        write_csv(path, [{"account_id": a, "event_time": f"2026-01-0{n} 10:00"} for _, a in rows])
        how, events, rejects = ingested(folder)
    assert how["events"] == "appended"
    assert events["account_id"].tolist() == ["A1", "A2", "A1", "A2", "A1", "A2", "A1"]
    assert rejects["reason"].tolist() == ["unknown account_id (not in accounts)"] * 2


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_new_file_without_a_column_the_others_have_reads_every_file_again(
    tmp_path: Path, fmt: str
) -> None:
    folder = book(tmp_path / "co", fmt=fmt)
    add_day(folder, 1, DAY_1[:1], fmt, event="login", user_id="u1")
    ingested(folder)
    # A whole ingest reads only the columns every file has: no file has user_id now.
    add_day(folder, 2, DAY_2[:1], fmt, event="export")
    how, events, _ = ingested(folder)
    assert how["events"] == "replaced"
    assert events["user_id"].isna().all()
    assert events["event"].tolist() == ["login", "export"]
    # The next file has the columns the last ingest read (and one more): appended.
    add_day(folder, 3, [("e7", "A2")], fmt, event="login", user_id="u2")
    how, events, _ = ingested(folder)
    assert how["events"] == "appended"
    assert events["user_id"].isna().all()
    assert events["event"].tolist() == ["login", "export", "login"]


@pytest.mark.parametrize("day_type", [pa.date32(), pa.timestamp("us")])
def test_a_typed_key_of_an_earlier_rejected_row_is_a_duplicate_as_in_a_whole_ingest(
    tmp_path: Path, day_type: pa.DataType
) -> None:
    """A Parquet file's rejected row keeps its key as a typed value in its record: it still
    makes the same key in a later file a duplicate."""
    day = dt.date(2026, 1, 5)
    days = [
        [("A1", "seats", "5"), ("A2", "seats", "five")],  # A2's value is not a number
        [("A2", "seats", "6"), ("A1", "seats", "7"), ("A1", "logins", "9")],
    ]

    def project(folder: Path, n: int) -> Path:
        make_project(folder, MODEL, {"accounts": [account("A1"), account("A2")]})
        (folder / "data" / "metrics").mkdir(exist_ok=True)
        for i, rows in enumerate(days[:n], start=1):
            path = folder / "data" / "metrics" / f"day{i}.parquet"
            if path.exists():
                continue  # as it was: only the new day is a new file
            ids, names, values = zip(*rows, strict=True)
            dates = pa.array([day] * len(rows), pa.date32()).cast(day_type)
            data = pa.table({"account_id": ids, "metric": names, "date": dates, "value": values})
            pq.write_table(data, path)
        (folder / "accounthealth.yaml").write_text(
            "model: model.yaml\nsources:\n  accounts: {file: data/accounts.csv}\n"
            "  metrics: {file: 'data/metrics/*.parquet'}\n"
        )
        return folder

    def ingested(folder: Path) -> tuple[str, pd.DataFrame, pd.DataFrame]:
        with ah.open(folder) as p:
            how = {r.table: r.how for r in p.ingest().tables}["metrics"]
            rows = p.compute.execute(p.compute.table("metrics"))
            rejects = p.rejects("metrics").drop(columns=["source_file"])
        return how, rows, rejects

    daily = project(tmp_path / "daily", 1)
    ingested(daily)
    how, rows, rejects = ingested(project(daily, 2))
    _, all_rows, all_rejects = ingested(project(tmp_path / "whole", 2))
    assert how == "appended"
    pd.testing.assert_frame_equal(rows, all_rows)
    pd.testing.assert_frame_equal(rejects, all_rejects)
    assert rows["value"].tolist() == [5.0, 9.0]
    assert "duplicate key (an earlier row has it)" in rejects["reason"].tolist()


@pytest.mark.parametrize(
    "ids",
    [pa.array([b"e1", b"e2", b"e3"], pa.binary()), pa.array([0.1, 0.2, 0.3], pa.float32())],
    ids=["binary", "float32"],
)
def test_a_key_of_any_parquet_type_rejected_earlier_is_a_duplicate_later(
    tmp_path: Path, ids: pa.Array
) -> None:
    """The key of an earlier rejected row is typed again from the text its record keeps:
    DuckDB's text of the value (Python's of bytes or of a float32 is another)."""
    days = [(ids.take([0, 1]), ["A1", "A9"]), (ids.take([1, 2]), ["A1", "A2"])]

    def project(folder: Path, n: int) -> Path:
        if not folder.exists():
            book(folder)
        for i, (day_ids, accounts) in enumerate(days[:n], start=1):
            path = folder / "data" / "events" / f"day{i}.parquet"
            if path.exists():
                continue  # as it was: only the new day is a new file
            times = pa.array([dt.datetime(2026, 1, i)] * 2, pa.timestamp("us"))
            data = {"event_id": day_ids, "account_id": accounts, "event_time": times}
            pq.write_table(pa.table(data), path)
        return folder

    daily = project(tmp_path / "daily", 1)
    ingested(daily)
    how, events, rejects = ingested(project(daily, 2))
    _, all_events, all_rejects = ingested(project(tmp_path / "whole", 2))
    assert how["events"] == "appended"
    pd.testing.assert_frame_equal(events, all_events)
    pd.testing.assert_frame_equal(rejects, all_rejects)
    assert rejects["reason"].tolist()[-1] == "duplicate key (an earlier row has it)"


@pytest.mark.parametrize("column", ["event.id", "$id", 'ev"id', "it's", "a/b~c", "*"])
def test_an_earlier_rejected_key_counts_whatever_its_column_is_named(
    tmp_path: Path, column: str
) -> None:
    """The key is read back from the rejected row's record by its source column's name, which
    may hold what a JSON path reads as syntax."""
    days = [("e1", "not a time"), ("e1", "2026-01-02 10:00")]

    def project(folder: Path, n: int) -> Path:
        if not folder.exists():
            book(folder, fmt="csv")
            (folder / "accounthealth.yaml").write_text(
                "model: model.yaml\nsources:\n  accounts: {file: data/accounts.csv}\n"
                "  events: {file: 'data/events/*.csv', columns: {event_id: "
                f"{json.dumps(column)}}}}}\n"
            )
        for i, (key, when) in enumerate(days[:n], start=1):
            path = folder / "data" / "events" / f"day{i}.csv"
            if not path.exists():
                row = {column: key, "id": "other", "account_id": "A1", "event_time": when}
                write_csv(path, [row])
        return folder

    ingested(project(tmp_path / "daily", 1))
    how, events, rejects = ingested(project(tmp_path / "daily", 2))
    _, all_events, all_rejects = ingested(project(tmp_path / "whole", 2))
    assert how["events"] == "appended"
    pd.testing.assert_frame_equal(events, all_events)
    pd.testing.assert_frame_equal(rejects, all_rejects)
    assert rejects["reason"].tolist()[-1] == "duplicate key (an earlier row has it)"


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_a_failed_ingest_leaves_nothing_the_next_one_would_trust(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    """An ingest that failed after loading one table leaves that table as the last good
    ingest left it (on Spark too, whose writes are staged), and nothing the next ingest would
    take as the last good one's (its files and row count unchanged)."""
    compute = ""
    if engine == "spark":
        request.getfixturevalue("spark")
        compute = "{engine: spark, master: 'local[2]'}"
    folder = book(tmp_path / "co", fmt="csv", compute=compute)
    add_day(folder, 1, DAY_1[:1], "csv", event="login", kind="export")
    config = (folder / "accounthealth.yaml").read_text()
    ingested(folder)
    # Events read with another mapping, then a broken tickets file fails the ingest.
    tried = config.replace("*.csv'}", "*.csv', columns: {event: kind}}")
    tried = tried.replace("sources:\n", "sources:\n  tickets: {file: data/tickets.csv}\n")
    (folder / "accounthealth.yaml").write_text(tried)
    (folder / "data" / "tickets.csv").write_text('ticket_id,account_id,opened_at\n"T1,A1\n')
    with pytest.raises(ah.AccountHealthError):
        ingested(folder)
    with ah.open(folder) as p:
        assert p.compute.execute(p.compute.table("events"))["event"].tolist() == ["login"]
    (folder / "accounthealth.yaml").write_text(config)
    how, events, _ = ingested(folder)
    assert events["event"].tolist() == ["login"]
    assert how["events"] == "unchanged"


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


@pytest.mark.parametrize("store", ["duckdb", "postgres"])
def test_each_tables_last_ingest_is_looked_up_at_once(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    folder = book(tmp_path / "co", DAY_1)
    if store == "postgres":
        url = request.getfixturevalue("postgres_server").new_database()
        with (folder / "accounthealth.yaml").open("a") as config:
            config.write(f"store: {{postgres: '{url}', schema: health}}\n")
    for day in (2, 3):
        ingested(folder)
        add_day(folder, day, [(f"x{day}", "A1")])
    ingested(folder)
    with ah.open(folder) as p:
        # Last read in place, after an ingest from files: a run with no fingerprint.
        for at, fingerprint in (("2026-01-01", '{"settings": ""}'), ("2026-01-02", None)):
            p.store.sql(
                "INSERT INTO ingest_runs VALUES ('r', 'metrics', '', 0, 0, 0, ?, ?)",
                [fingerprint, at],
            )
        names = ["events", "accounts", "metrics", "tickets"]
        last = last_fingerprints(p.store, names)
        for name in names:
            [(latest,)] = p.store.sql(
                "SELECT max(fingerprint) FROM (SELECT fingerprint FROM ingest_runs "
                "WHERE table_name = ? ORDER BY ingested_at DESC LIMIT 1) AS l",
                [name],
            ) or [(None,)]
            assert (last[name] and last[name].to_json()) == (
                latest and Fingerprint.from_json(latest).to_json()
            ), name
    # The third ingest's, which read the three days' files; none for a table whose last run
    # had none, or never ingested.
    assert [Path(name).name for name, _, _ in last["events"].files] == [
        "day1.parquet",
        "day2.parquet",
        "day3.parquet",
    ]
    assert last["accounts"] is not None and last["metrics"] is None and last["tickets"] is None
