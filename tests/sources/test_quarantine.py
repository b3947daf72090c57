"""Ingest: formats, column mapping, rejected rows with file/row/line/column/reason, atomic and
idempotent loads."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import accounthealth as ah

from builders import account, make_project, write_csv

MODEL = "components:\n  c:\n    weight: 1\n    metrics:\n      m: {count: events, score: boolean}\n"


def project(tmp_path: Path, **tables: list[dict]) -> Path:
    return make_project(tmp_path, MODEL, {"accounts": [account("A1"), account("A2")], **tables})


def use_sources(folder: Path, sources: str) -> None:
    """Point the project at data/accounts.csv and ``sources`` (YAML lines under sources:)."""
    (folder / "accounthealth.yaml").write_text(
        "model: model.yaml\nsources:\n  accounts: {file: data/accounts.csv}\n" + sources
    )


def test_bad_rows_are_kept_aside_with_where_and_why(tmp_path: Path) -> None:
    tickets = [
        {"ticket_id": "T1", "account_id": "A1", "opened_at": "2026-01-01 10:00", "csat": "4"},
        {"ticket_id": "T2", "account_id": "A1", "opened_at": "31/02/2025"},
        {"ticket_id": "T3", "account_id": "A2", "opened_at": "2026-01-01", "csat": "five"},
        {"ticket_id": "T4", "account_id": "A9", "opened_at": "2026-01-01"},
        {"ticket_id": "", "account_id": "A1", "opened_at": "2026-01-01"},
        {"ticket_id": "T1", "account_id": "A2", "opened_at": "2026-01-02"},
    ]
    with ah.open(project(tmp_path, tickets=tickets, events=[])) as p:
        report = p.ingest()
        rejects = p.rejects("tickets")
        loaded = p.compute.execute(p.compute.table("tickets"))
    t = next(r for r in report.tables if r.table == "tickets")
    assert (t.rows_read, t.rows_loaded, t.rows_rejected) == (6, 1, 5)
    assert loaded["ticket_id"].tolist() == ["T1"] and loaded["csat"].tolist() == [4.0]
    got = {
        (r.row_number, r.line, r.column_name, None if pd.isna(r.value) else r.value, r.reason)
        for r in rejects.itertuples()
    }
    assert got == {
        (2, 3, "opened_at", "31/02/2025", "not a valid timestamp"),
        (3, 4, "csat", "five", "not a valid float64"),
        (4, 5, "account_id", "A9", "unknown account_id (not in accounts)"),
        (5, 6, "ticket_id", None, "required value is missing"),
        (6, 7, "ticket_id", "T1", "duplicate key (an earlier row has it)"),
    }
    assert all(Path(f).name == "tickets.csv" for f in rejects["source_file"])
    record = json.loads(rejects[rejects["row_number"] == 3]["record"].iloc[0])
    assert record["csat"] == "five"  # the whole raw row is kept


def test_reingest_changes_nothing(tmp_path: Path) -> None:
    tickets = [
        {"ticket_id": "T1", "account_id": "A1", "opened_at": "2026-01-01"},
        {"ticket_id": "T2", "account_id": "A1", "opened_at": "bad"},
    ]
    with ah.open(project(tmp_path, tickets=tickets, events=[])) as p:
        p.ingest()
        first = {t: p.compute.execute(p.compute.table(t)) for t in ("accounts", "tickets")}
        p.ingest()
        for t, frame in first.items():
            assert p.compute.execute(p.compute.table(t)).equals(frame)
        assert len(p.rejects()) == 1


def test_failed_ingest_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    folder = project(
        tmp_path,
        tickets=[{"ticket_id": "T1", "account_id": "A1", "opened_at": "2026-01-01"}],
        events=[],
    )
    with ah.open(folder) as p:
        p.ingest()
    write_csv(folder / "data" / "accounts.csv", [account("A1"), account("A2"), account("A3")])
    write_csv(folder / "data" / "tickets.csv", [{"ticket_id": "T1", "account_id": "A1"}])
    with ah.open(folder) as p:
        with pytest.raises(ah.DataError) as info:
            p.ingest()
        assert "required column 'opened_at' is missing" in info.value.message
        assert "tickets.csv" in info.value.message
        # accounts were read fine but not committed: still two
        assert p.compute.execute(p.compute.table("accounts")).shape[0] == 2


def test_parquet_json_mapping_and_globs(tmp_path: Path) -> None:
    folder = project(tmp_path)
    data = folder / "data"
    pq.write_table(
        pa.table(
            {
                "company": ["A1", "A2"],
                "ts": ["2026-01-01 10:00", "2026-01-02"],
                "event_id": ["e1", "e2"],
                "user_id": ["u", "v"],
            }
        ),
        data / "ev1.parquet",
    )
    pq.write_table(
        pa.table({"company": ["A1"], "ts": ["2026-01-03"], "event_id": ["e3"], "user_id": ["w"]}),
        data / "ev2.parquet",
    )
    (data / "surveys.json").write_text(
        json.dumps(
            [{"response_id": "R1", "account_id": "A1", "responded_at": "2026-01-01", "score": 9}]
        )
    )
    (data / "contacts.jsonl").write_text(
        '{"contact_id": "P1", "account_id": "A1", "is_champion": true}\n\n'
        '{"contact_id": "P2", "account_id": "A2", "is_champion": "maybe"}\n'
    )
    use_sources(
        folder,
        "  events: {file: 'data/ev*.parquet', columns: {account: company, time: ts}}\n"
        "  surveys: {file: data/surveys.json}\n  contacts: {file: data/contacts.jsonl}\n",
    )
    with ah.open(folder) as p:
        p.ingest()
        events = p.compute.execute(p.compute.table("events").order_by("event_id"))
        contacts = p.compute.execute(p.compute.table("contacts"))
        rejects = p.rejects()
    assert events["account_id"].tolist() == ["A1", "A2", "A1"]
    assert str(events["event_time"].dtype).startswith("datetime64")
    assert contacts["is_champion"].tolist() == [True]
    assert rejects["line"].tolist() == [3]  # JSON lines: the line in the file


def test_missing_and_misnamed_columns(tmp_path: Path) -> None:
    folder = project(tmp_path)
    write_csv(folder / "data" / "events.csv", [{"acount_id": "A1", "event_time": "2026-01-01"}])
    use_sources(
        folder,
        "  events: {file: data/events.csv}\n",
    )
    with ah.open(folder) as p, pytest.raises(ah.DataError) as info:
        p.ingest()
    assert "required column 'account_id' is missing" in info.value.message
    assert "did you mean 'acount_id'?" in info.value.message
    use_sources(
        folder,
        "  events: {file: data/nope.csv}\n",
    )
    with ah.open(folder) as p, pytest.raises(ah.DataError, match="no file matches"):
        p.ingest()


def test_extra_account_columns_are_kept_as_attributes(tmp_path: Path) -> None:
    model = (
        "components:\n  c:\n    weight: 1\n    metrics:\n"
        "      m: {attribute: health_flag, score: boolean}\n"
    )
    folder = make_project(tmp_path, model, {"accounts": [account("A1", health_flag=1)]})
    with ah.open(folder) as p:
        p.ingest()
        p.score()
        assert p.scores()["score"].tolist() == [100]


def test_checks_across_files_keys_and_blanks(tmp_path: Path) -> None:
    """Duplicates are found across files and on every column of a composite key, only
    whitespace counts as blank, and loaded rows keep the files' order."""
    folder = project(tmp_path, events=[])
    data = folder / "data"
    first = [
        {"account_id": "A2", "metric": "nps", "date": "2026-01-02", "value": "7"},
        {"account_id": "A1", "metric": "nps", "date": "2026-01-01", "value": "9"},
        {"account_id": "A1", "metric": " \t", "date": "2026-01-01", "value": "1"},
        {"account_id": "A1", "metric": " seats", "date": "2026-01-01", "value": "3"},
    ]
    second = [
        {"account_id": "A1", "metric": "nps", "date": "2026-01-01", "value": "8"},
        {"account_id": "A1", "metric": "nps", "date": "2026-01-03", "value": "6"},
        {"account_id": "A1", "metric": "nps", "date": "2026-01-01 09:00", "value": "5"},
    ]
    write_csv(data / "metrics_1.csv", first)
    write_csv(data / "metrics_2.csv", second)
    use_sources(
        folder,
        "  events: {file: data/events.csv}\n  metrics: {file: 'data/metrics_*.csv'}\n",
    )
    with ah.open(folder) as p:
        p.ingest()
        loaded = p.compute.execute(p.compute.table("metrics"))
        rejects = p.rejects("metrics")
    assert list(zip(loaded["metric"], loaded["value"], strict=True)) == [
        ("nps", 7.0),
        ("nps", 9.0),
        (" seats", 3.0),  # text around a value is the value's own
        ("nps", 6.0),
    ]
    got = {
        (Path(r.source_file).name, r.row_number, r.column_name, r.reason)
        for r in rejects.itertuples()
    }
    assert got == {
        ("metrics_1.csv", 3, "metric", "required value is missing"),
        # The same account, metric and day as the second row of the first file.
        ("metrics_2.csv", 1, "account_id,metric,date", "duplicate key (an earlier row has it)"),
        ("metrics_2.csv", 3, "account_id,metric,date", "duplicate key (an earlier row has it)"),
    }


def test_keys_alike_but_not_equal_are_not_duplicates(tmp_path: Path) -> None:
    """Repeated keys are first found by a hash of the key: keys whose values are the same
    but in other columns, or equal in every column but one, are not duplicates."""
    folder = project(tmp_path, events=[])
    rows = [
        {"account_id": "A1", "metric": "A2", "date": "2026-01-01", "value": "1"},
        {"account_id": "A2", "metric": "A1", "date": "2026-01-01", "value": "2"},
        {"account_id": "A1", "metric": "A1", "date": "2026-01-01", "value": "3"},
        {"account_id": "A2", "metric": "A2", "date": "2026-01-01", "value": "4"},
        {"account_id": "A1", "metric": "A2", "date": "2026-01-02", "value": "5"},
        {"account_id": "A2", "metric": "A1", "date": "2026-01-01", "value": "6"},
    ]
    write_csv(folder / "data" / "metrics.csv", rows)
    use_sources(folder, "  metrics: {file: data/metrics.csv}\n")
    with ah.open(folder) as p:
        p.ingest()
        loaded = p.compute.execute(p.compute.table("metrics"))
        rejects = p.rejects("metrics")
    assert loaded["value"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert list(zip(rejects["row_number"], rejects["reason"], strict=True)) == [
        (6, "duplicate key (an earlier row has it)")
    ]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_empty_value_is_missing_in_csv_and_json_alike(tmp_path: Path, fmt: str) -> None:
    """Two events without an id (an empty one): no key, so neither is a duplicate."""
    folder = project(tmp_path, events=[])
    rows = [
        {"event_id": "", "account_id": "A1", "event_time": "2026-01-02", "event": ""},
        {"event_id": "", "account_id": "A2", "event_time": "2026-01-03", "event": "login"},
    ]
    path = folder / "data" / f"events.{fmt}"
    if fmt == "csv":
        write_csv(path, rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    use_sources(folder, f"  events: {{file: data/events.{fmt}}}\n")
    with ah.open(folder) as p:
        p.ingest()
        loaded = p.compute.execute(p.compute.table("events"))
        assert p.rejects("events").empty
    assert loaded["event_id"].isna().all() and loaded["event"].isna().tolist() == [True, False]


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("co", {}),
        # A pattern's characters in the project folder's name (a sibling folder "co2" matches
        # the pattern): its files are read into memory first, as named.
        ("co[2026]", {}),
        # A column named as DuckDB's row numbers: read into memory first too.
        ("co", {"file_row_number": [1, 2]}),
    ],
)
def test_parquet_files_read_in_place(tmp_path: Path, name: str, extra: dict) -> None:
    """Parquet files whose columns differ in width or presence load in file order, a bad row
    is named by its file and row, and a file that is not Parquet is an error naming it."""
    folder = project(tmp_path / name)
    # What "co[2026]" matches as a pattern: other files of the same names.
    decoys = project(tmp_path / "co2") / "data"
    for other in ("ev1", "ev2"):
        decoy = pa.table({"account_id": ["A9"], "event_time": ["2026-01-01"]})
        pq.write_table(decoy, decoys / f"{other}.parquet")
    data = folder / "data"
    pq.write_table(
        pa.table(
            {
                "account_id": ["A1", "A2"],
                "event_time": pa.array(
                    [1_767_261_600_000_000, 1_767_348_000_000_000], pa.timestamp("us")
                ),
                "quantity": pa.array([1, 2], pa.int32()),
                "browser": ["x", "y"],
                **extra,
            }
        ),
        data / "ev1.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "account_id": ["A2", "A7", "A1"],
                "event_time": pa.array([1_767_434_400_000_000] * 3, pa.timestamp("us")),
                "quantity": pa.array([2**40, 5, None], pa.int64()),
            }
        ),
        data / "ev2.parquet",
    )
    use_sources(
        folder,
        "  events: {file: 'data/ev*.parquet'}\n",
    )
    with ah.open(folder) as p:
        report = p.ingest()
        events = p.compute.execute(p.compute.table("events"))
        rejects = p.rejects("events")
    assert events["account_id"].tolist() == ["A1", "A2", "A2", "A1"]
    assert events["quantity"].tolist()[:3] == [1.0, 2.0, 2.0**40]
    assert pd.isna(events["quantity"].iloc[3])
    assert [(Path(r.source_file).name, r.row_number, r.reason) for r in rejects.itertuples()] == [
        ("ev2.parquet", 2, "unknown account_id (not in accounts)")
    ]
    events_report = next(r for r in report.tables if r.table == "events")
    assert (events_report.rows_read, events_report.rows_loaded) == (5, 4)
    (data / "ev3.parquet").write_text("account_id,event_time\nA1,2026-01-01\n")
    with ah.open(folder) as p, pytest.raises(ah.DataError) as info:
        p.ingest()
    assert "cannot read parquet file" in info.value.message
    assert "ev3.parquet" in info.value.message
    # Times as text in one file: no one type holds the column (DataError, not Arrow's).
    when = pa.array(["2026-01-03"], pa.string())
    pq.write_table(pa.table({"account_id": ["A1"], "event_time": when}), data / "ev3.parquet")
    with ah.open(folder) as p, pytest.raises(ah.DataError) as info:
        p.ingest()
    assert "column 'event_time' is timestamp[us] in ev1.parquet but string in ev3.parquet" in (
        info.value.message
    )
    assert "sources.events" in info.value.where


def test_parquet_rows_keep_their_place_and_their_own_columns(tmp_path: Path) -> None:
    """Several files load in their order with nothing rejected too; a folder named like a
    partition (key=value) adds nothing to the rows; files listed one by one count in the order
    they are listed."""
    folder = project(tmp_path)
    for n in range(5):
        part = folder / "data" / "ev" / "account_id=A2" / f"day={n}"
        part.mkdir(parents=True)
        pq.write_table(
            pa.table({"event_id": [f"e{n}"], "account_id": ["A1"], "event_time": ["2026-01-01"]}),
            part / "part.parquet",
        )
    write_csv(
        folder / "data" / "b.csv",
        [{"ticket_id": "T1", "account_id": "A1", "opened_at": "2026-01-02"}],
    )
    write_csv(
        folder / "data" / "a.csv",
        [{"ticket_id": "T1", "account_id": "A2", "opened_at": "2026-01-01"}],
    )
    use_sources(
        folder,
        "  events: {file: 'data/ev/*/*/part.parquet'}\n"
        "  tickets: {file: [data/b.csv, data/a.csv]}\n",
    )
    with ah.open(folder) as p:
        p.ingest()
        events = p.compute.execute(p.compute.table("events"))
        tickets = p.compute.execute(p.compute.table("tickets"))
        rejects = p.rejects("tickets")
    assert events["event_id"].tolist() == [f"e{n}" for n in range(5)]
    assert set(events["account_id"]) == {"A1"}
    assert tickets["account_id"].tolist() == ["A1"]  # b.csv is listed first
    assert [
        (Path(f).name, r) for f, r in zip(rejects["source_file"], rejects["reason"], strict=True)
    ] == [("a.csv", "duplicate key (an earlier row has it)")]


def test_a_parquet_file_broken_after_its_footer_is_an_error(tmp_path: Path) -> None:
    folder = project(tmp_path)
    path = folder / "data" / "events.parquet"
    pq.write_table(
        pa.table(
            {
                "event_id": [f"event-{i}" for i in range(20_000)],
                "account_id": ["A1"] * 20_000,
                "event_time": ["2026-01-01"] * 20_000,
            }
        ),
        path,
    )
    data = bytearray(path.read_bytes())
    data[100:600] = b"\xab" * 500
    path.write_bytes(bytes(data))
    use_sources(
        folder,
        "  events: {file: data/events.parquet}\n",
    )
    with ah.open(folder) as p:
        with pytest.raises(ah.DataError) as info:
            p.ingest()
        assert "cannot read the parquet files" in info.value.message
        assert "events.parquet" in info.value.message
        assert not p.compute.has_table("events")  # nothing half-written


def test_duckdb_out_of_memory_is_said_as_such(tmp_path: Path) -> None:
    """Not as files that cannot be read: the fix is DuckDB's memory, not the files."""
    folder = project(tmp_path, events=[])
    (folder / "data" / "events").mkdir()
    n = 300_000
    for i in range(2):
        rows = {
            "event_id": [f"e{i}_{j}" for j in range(n)],
            "account_id": ["A1"] * n,
            "event_time": pa.array([1_767_261_600_000_000] * n, pa.timestamp("us")),
        }
        pq.write_table(pa.table(rows), folder / "data" / "events" / f"d{i}.parquet")
    use_sources(
        folder, "  events: {file: 'data/events/*.parquet'}\ncompute: {conf: {memory_limit: 8MB}}\n"
    )
    with ah.open(folder) as p, pytest.raises(ah.DataError) as info:
        p.ingest()
    # Whichever table it happens on (accounts too, in a limit this small).
    assert "DuckDB ran out of memory loading " in info.value.message
    assert "memory_limit" in info.value.fix and "sources." in info.value.where
