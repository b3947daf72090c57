"""A DuckDB store's detail files leave out what follows from the rest and the model (whether a
metric had data, each metric's and component's share of the score): its score_details view
works them out as it reads, and they are the ones scoring computed."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import accounthealth as ah
from accounthealth.scoring import run as run_module
from accounthealth.store import scores as history
from accounthealth.store.archive import DERIVED, LAYOUT_FILE

from builders import account, make_project

DAY = dt.date(2026, 6, 30)
ARCHIVE = "accounthealth.duckdb.details"
# Weights whose sums are not all exact in binary, two segment models with different
# components, a default score and metrics that drop out.
MODEL = """
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
  quiet:  # the voice only, and no data for it: no component with a score, every share 0
    when: "segment = 'quiet'"
    components: {usage: null}
"""


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
    return make_project(tmp_path / "p", MODEL, tables)


def _by_account(rows: list[dict]) -> dict[str, dict]:
    return {row["account_id"]: row for row in rows}


def _view_rows(p: ah.Project) -> dict[str, dict]:
    table = p.store.table("score_details")
    return _by_account(p.store.to_arrow(table.filter(table.as_of == DAY)).to_pylist())


def _same(left: object, right: object) -> bool:
    """Equal, both NULL, or within a unit or two in the last place (sums of weights taken in
    another order)."""
    if left is None or right is None or isinstance(left, bool):
        return left == right
    return left == right or math.isclose(float(left), float(right), rel_tol=1e-15)  # type: ignore[arg-type]


def test_the_view_gives_the_presence_and_shares_scoring_computed(folder: Path) -> None:
    with ah.open(folder) as p:
        p.ingest()
        p.score(DAY)
        read = _view_rows(p)
        scored = run_module.score_table(p.compute, p.model, [DAY])
        computed = _by_account(history._details_table(scored, p.model).to_pylist())
        lean = [
            pq.read_schema(folder / ARCHIVE / f).names
            for (f,) in p.store.sql("SELECT file FROM detail_files")
            if not f.startswith("scores/")
        ]
    derived = [c for c in computed["E1"] if DERIVED.fullmatch(c)]
    assert derived and all(not DERIVED.fullmatch(c) for names in lean for c in names)
    assert read.keys() == computed.keys() == {"E1", "E2", "Z1", "D1", "D2", "D3", "D4"}
    for account_id, row in computed.items():
        for column in derived:
            assert _same(read[account_id][column], row[column]), (account_id, column)
    # The cases the model is there for, as scoring gave them.
    shares = {
        a: {c: row[c] for c in derived if c.endswith("_share")} for a, row in computed.items()
    }
    assert {v for a in ("E1", "E2") for c, v in shares[a].items() if v is None} != set()
    assert 0.0 in shares["D2"].values()  # a component with no data: no share
    assert {v for a in computed for c, v in computed[a].items() if c.endswith("_present")} == {
        True,
        False,
    }


def test_a_version_recorded_before_parts_had_weights_gets_them_when_it_scores_again(
    folder: Path,
) -> None:
    with ah.open(folder) as p:
        p.ingest()
        p.score(DAY)
        before = _view_rows(p)
        p.store.sql("UPDATE model_parts SET weight = NULL")
        unweighted = _view_rows(p)
        p.score(DAY)
        after = _view_rows(p)
        unweighted_parts = p.store.sql("SELECT count(*) FROM model_parts WHERE weight IS NULL")
    assert unweighted_parts == [(0,)]
    # Without weights the view cannot say the shares: NULL, not a guess.
    assert {v for row in unweighted.values() for c, v in row.items() if c.endswith("_share")} == {
        None
    }
    assert after == before


def test_detail_written_with_its_shares_before_reads_as_it_was_beside_lean_days(
    folder: Path,
) -> None:
    """A store upgraded from before lean files keeps its detail folder of full rows; the view
    reads those rows' own shares, and the days written since, worked out."""
    earlier = DAY - dt.timedelta(days=1)
    with ah.open(folder) as p:
        p.ingest()
        p.score(earlier)
        version = p.model.version
        scored = run_module.score_table(p.compute, p.model, [earlier])
        full = history._details_table(scored, p.model)
        stored = p.store.table("score_details_stored").schema().to_pyarrow()
    # The earlier day as a full file in a folder of the old name, listed instead.
    old = folder / ARCHIVE / "m5c3"
    old.mkdir()
    pq.write_table(stored.empty_table(), old / LAYOUT_FILE)
    marked = full.set_column(
        full.schema.get_field_index("m0_share"), "m0_share", pa.array([0.25] * full.num_rows)
    )
    name = f"m5c3/{uuid.uuid4().hex}.parquet"
    pq.write_table(
        pa.table({f.name: marked[f.name] for f in stored}, schema=stored), folder / ARCHIVE / name
    )
    with ah.open(folder) as p:
        p.store.sql(
            "DELETE FROM detail_files WHERE as_of = ? AND file NOT LIKE 'scores/%'", [earlier]
        )
        p.store.sql(
            "INSERT INTO detail_files VALUES (?, ?, ?, ?)", [version, earlier, name, full.num_rows]
        )
    with ah.open(folder) as p:
        p.score(DAY)
        rows = p.store.sql("SELECT as_of, m0_share FROM score_details")
    shares = {day: set() for day in (earlier, DAY)}
    for day, share in rows:
        shares[day].add(share)
    assert shares[earlier] == {0.25}  # its own, as written
    assert shares[DAY] and 0.25 not in shares[DAY]
    assert sorted(path.name for path in (folder / ARCHIVE).iterdir()) == [
        "m5c3",
        "m5c3-lean",
        "scores",
    ]
