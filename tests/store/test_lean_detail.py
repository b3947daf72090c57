"""A DuckDB store's detail files leave out what follows from the rest and the model (whether a
metric had data, each metric's and component's share of the score): its score_details view
works them out as it reads, and they are the ones scoring computed, for every version, at the
positions each version recorded."""

from __future__ import annotations

import datetime as dt
import math
import shutil
import typing as t
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import accounthealth as ah
from accounthealth.scoring import run as run_module
from accounthealth.scoring.combine import SHARES
from accounthealth.store import scores as history
from accounthealth.store.archive import LAYOUT_FILE
from accounthealth.store.derived import DERIVED
from accounthealth.store.model_parts import version_positions

from builders import account, make_project

DAY = dt.date(2026, 6, 30)
EARLIER = DAY - dt.timedelta(days=1)
ARCHIVE = "accounthealth.duckdb.details"
# Weights whose sums are not all exact in binary; segment models with components of their
# own, so that positions are not each segment's order; a default score and metrics that drop
# out; a segment with no component that has a score.
MODEL = """
segments:
  enterprise:
    when: "segment = 'enterprise'"
    weights: {usage: 0.1}
    components:
      voice: null
      seats:
        weight: 0.7
        metrics:
          seats: {attribute: licensed_seats, score: {linear: {bad: 0, good: 50}}}
  quiet:  # the voice only, and no data for it: every share 0
    when: "segment = 'quiet'"
    components: {usage: null}
components:
  usage:
    weight: 3
    metrics:
      events_7d: {count: events, window: 7d, score: {linear: {bad: 0, good: 4}}}
      idle_days:
        days_since: events
        score: {linear: {bad: 10, good: 0}}
        missing: {default: 0}
        weight: 0.3
  voice:
    weight: 1.1
    metrics:
      nps: {avg: surveys.score, window: 90d, score: {linear: {bad: 0, good: 10}}}
      csat: {avg: tickets.csat, window: 90d, score: {linear: {bad: 1, good: 5}}, weight: 0.7}
"""
# The same model with its components and metrics in another order: the same version.
REORDERED = (
    MODEL[: MODEL.index("\ncomponents:\n") + 1]
    + """components:
  voice:
    weight: 1.1
    metrics:
      csat: {avg: tickets.csat, window: 90d, score: {linear: {bad: 1, good: 5}}, weight: 0.7}
      nps: {avg: surveys.score, window: 90d, score: {linear: {bad: 0, good: 10}}}
  usage:
    weight: 3
    metrics:
      idle_days:
        days_since: events
        score: {linear: {bad: 10, good: 0}}
        missing: {default: 0}
        weight: 0.3
      events_7d: {count: events, window: 7d, score: {linear: {bad: 0, good: 4}}}
"""
)
ACCOUNTS = {"E1", "E2", "Z1", "D1", "D2", "D3", "D4"}


def _time(days_before: int) -> str:
    return f"{DAY - dt.timedelta(days=days_before)} 10:00:00"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    accounts = [
        account("E1", segment="enterprise", licensed_seats=20),
        account("E2", segment="enterprise"),  # no seats: its own component drops out
        account("Z1", segment="quiet"),
        *(account(a, segment="smb") for a in ("D1", "D2", "D3", "D4")),
    ]
    events = [
        {"account_id": "E1", "user_id": "u", "event_time": _time(1), "event": "login"},
        {"account_id": "D1", "user_id": "u", "event_time": _time(2), "event": "login"},
        {"account_id": "D2", "user_id": "u", "event_time": _time(30), "event": "login"},
    ]  # E2, D3, D4: none, so no days since (a default score)
    surveys = [{"response_id": "s1", "account_id": "D1", "responded_at": _time(5), "score": 8}]
    tickets = [
        {"ticket_id": "t1", "account_id": "D1", "opened_at": _time(3), "csat": 4},
        {"ticket_id": "t2", "account_id": "D3", "opened_at": _time(3), "csat": 2},
        # A value of a metric the enterprise model has not: not data it had.
        {"ticket_id": "t3", "account_id": "E1", "opened_at": _time(3), "csat": 5},
    ]  # D2, D4: no voice at all, so its weight goes to usage
    tables = {"accounts": accounts, "events": events, "surveys": surveys, "tickets": tickets}
    path = make_project(tmp_path / "p", MODEL, tables)
    with ah.open(path) as p:
        p.ingest()
    return path


def _read(p: ah.Project, day: dt.date) -> dict[str, dict]:
    table = p.store.table("score_details")
    rows = p.store.to_arrow(table.filter(table.as_of == day)).to_pylist()
    return {row["account_id"]: row for row in rows}


def _computed(p: ah.Project, day: dt.date) -> dict[str, dict]:
    """The detail rows scoring gives ``day`` now, with the derived columns, at the positions
    of the version as the store recorded them."""
    return _computed_from(run_module.score_table(p.compute, p.model, [day]), p)


def _computed_from(scored: pa.Table, p: ah.Project) -> dict[str, dict]:
    """``_computed``'s rows of the ``scored`` rows."""
    rows = history._details_table(scored, p.model, version_positions(p.store, p.model))
    return {row["account_id"]: row for row in rows.to_pylist()}


def _differing(read: dict[str, dict], computed: dict[str, dict]) -> list[tuple[str, str]]:
    """The (account, column) whose value the view reads differs from scoring's: NULL against
    a number, or numbers apart by more than the last bits (sums in another order)."""
    assert read.keys() == computed.keys() == ACCOUNTS
    differing = []
    for account_id, row in computed.items():
        for column, value in row.items():
            got = read[account_id][column]
            same = got == value or (
                isinstance(value, float)
                and isinstance(got, float)
                and math.isclose(got, value, rel_tol=1e-15)
            )
            if not same:
                differing.append((account_id, column))
    return differing


def test_the_view_gives_the_presence_and_shares_scoring_computed(folder: Path) -> None:
    with ah.open(folder) as p:
        p.score(DAY)
        read, computed = _read(p, DAY), _computed(p, DAY)
        files = [f for (f,) in p.store.sql("SELECT file FROM detail_files") if "-lean/" in f]
    written = [name for f in files for name in pq.read_schema(folder / ARCHIVE / f).names]
    derived = [c for c in computed["E1"] if DERIVED.fullmatch(c)]
    assert files and derived and not [c for c in written if DERIVED.fullmatch(c)]
    assert _differing(read, computed) == []
    # The cases the model is there for, as scoring gave them.
    shares = [(a, c, v) for a, row in computed.items() for c, v in row.items() if "share" in c]
    assert any(v is None for a, _, v in shares if a == "E1")  # the voice: not its model's
    assert {v for a, _, v in shares if a == "Z1" and v is not None} == {0.0}
    present = {v for row in computed.values() for c, v in row.items() if c.endswith("present")}
    assert present == {True, False}


def test_a_run_writing_lean_detail_scores_without_the_shares(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the view works out, scoring for such a store does not: the rows it hands to
    history are scoring's own but for those columns."""
    with ah.open(folder) as p:
        full = run_module.score_table(p.compute, p.model, [DAY])
        shares = [c for c in full.column_names if c.startswith(SHARES)]
        lean = run_module.score_table(p.compute, p.model, [DAY], shares=False)
        assert shares and lean.equals(full.drop_columns(shares))
        handed: list[list[str]] = []
        begin = history.HistoryWriter.begin

        def begin_seen(
            writer: history.HistoryWriter, scored: pa.Table, *args: t.Any, **kw: t.Any
        ) -> None:
            handed.append(scored.column_names)
            begin(writer, scored, *args, **kw)

        monkeypatch.setattr(history.HistoryWriter, "begin", begin_seen)
        p.score(DAY)
        read = _read(p, DAY)
    assert handed == [lean.column_names]
    assert _differing(read, _computed_from(full, p)) == []


def test_each_version_and_order_of_the_model_reads_as_it_scored(folder: Path) -> None:
    """A second version with other weights has its own; the same version with its YAML in
    another order (the same digest) keeps the positions it recorded."""
    model = folder / "model.yaml"
    with ah.open(folder) as p:
        p.score(EARLIER)
        first = p.model.version
        before = _computed(p, EARLIER)
    model.write_text(model.read_text().replace("weight: 1.1", "weight: 2.3"))
    with ah.open(folder) as p:
        p.score(DAY)
        assert p.model.version != first
        assert _differing(_read(p, EARLIER), before) == []
        assert _differing(_read(p, DAY), _computed(p, DAY)) == []
    model.write_text(REORDERED)
    with ah.open(folder) as p:
        assert p.model.version == first
        p.score(EARLIER)
        assert _differing(_read(p, EARLIER), before) == []
        labels = p.store.sql(
            "SELECT metric, value FROM metric_values WHERE as_of = ? AND account_id = 'D1' "
            "AND model_version = ?",
            [EARLIER, first],
        )
    assert dict(labels)["events_7d"] == 1.0 and dict(labels)["csat"] == 4.0


def test_a_store_from_before_lean_files_reads_its_detail_and_writes_lean_days(
    folder: Path,
) -> None:
    """A store upgraded from before lean files: its detail folder of full rows is read with
    their own shares, its version's parts get their weights where they are, and the days
    written since are lean, read beside them."""
    with ah.open(folder) as p:
        p.score(EARLIER)
        version = p.model.version
        full = history._details_table(
            run_module.score_table(p.compute, p.model, [EARLIER]),
            p.model,
            version_positions(p.store, p.model),
        )
        stored = p.store.table("score_details_stored").schema().to_pyarrow()
        parts = p.store.sql("SELECT * FROM model_parts ORDER BY ALL")
        # The store as before: no weights, the earlier day's detail as a full file of its own
        # shares (marked, to tell them from worked-out ones) in a folder without the suffix,
        # and views that read only that folder.
        p.store.sql("ALTER TABLE model_parts DROP COLUMN weight")
        p.store.sql("DELETE FROM schema_version WHERE version = 9")
        p.store.sql("DELETE FROM detail_files WHERE file NOT LIKE 'scores/%'")
        old = folder / ARCHIVE / "m5c3"
        old.mkdir()
        pq.write_table(stored.empty_table(), old / LAYOUT_FILE)
        name = f"m5c3/{uuid.uuid4().hex}.parquet"
        marked = full.set_column(
            full.schema.get_field_index("m0_share"), "m0_share", pa.array([0.25] * full.num_rows)
        )
        pq.write_table(marked.select(stored.names).cast(stored), folder / ARCHIVE / name)
        p.store.sql(
            "INSERT INTO detail_files VALUES (?, ?, ?, ?)", [version, EARLIER, name, full.num_rows]
        )
        p.store.sql(
            "CREATE OR REPLACE VIEW score_details AS SELECT * FROM score_details_stored "
            "UNION ALL BY NAME SELECT * EXCLUDE (filename) FROM read_parquet("
            f"'{old}/*.parquet', filename = true) WHERE filename IN "
            f"(SELECT '{folder / ARCHIVE}/' || file FROM detail_files)"
        )
    shutil.rmtree(folder / ARCHIVE / "m5c3-lean")
    with ah.open(folder) as p:
        p.score(DAY)
        earlier, today, computed = _read(p, EARLIER), _read(p, DAY), _computed(p, DAY)
        assert p.store.sql("SELECT * FROM model_parts ORDER BY ALL") == parts
    assert {row["m0_share"] for row in earlier.values()} == {0.25}  # its own, as written
    assert _differing(today, computed) == []
    assert sorted(path.name for path in (folder / ARCHIVE).iterdir()) == [
        "m5c3",
        "m5c3-lean",
        "scores",
    ]
