"""Running values carried from one day's run to the next (metrics/carryover.py): each day's
values must equal the day computed from all history, whatever arrives in between: a new day's
file of events, a row for a day already counted, a file changed under the kept state."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import tempfile
import threading
import time
import typing as t
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import accounthealth as ah
import accounthealth.project as project_module
from accounthealth.engine.duckdb import DuckDBEngine
from accounthealth.engine.readers import Readers
from accounthealth.metrics import carryover, state_files
from accounthealth.metrics.census import census
from accounthealth.metrics.compute import running_aggregates
from accounthealth.metrics.hashed import HASH, HashedPositions
from accounthealth.metrics.placing import POSITIONS_TABLE
from accounthealth.metrics.series import EPOCH, Carried, Series
from accounthealth.metrics.sliding import RunningAggregates
from accounthealth.project import CARRIED
from accounthealth.scoring import day_grid
from accounthealth.scoring.run import compiled_queries
from accounthealth.sources.schema import TABLES
from accounthealth.store.archive import ORPHAN_AGE_SECONDS, HistoryArchive

from builders import Notes, account, make_project, placed_reads, write_csv

X = dt.date(2026, 3, 31)  # the backfill's last day; the daily runs follow
DAILY = 4

# Every kind the running values carry: windows, a previous window (offset), distinct values
# in both, all history, days since and latest with windows and offsets, rows open on the date.
MODEL = """
signals:
  users_28d: {distinct: events.user_id, window: 28d}
components:
  usage:
    weight: 50
    metrics:
      events_28d: {count: events, window: 28d, score: {linear: {bad: 0, good: 10}}}
      seats: {ratio: [users_28d, licensed_seats], score: {linear: {bad: 0, good: 1}}}
      trend: {change: {count: events, window: 7d}, score: {bands: {-50%: 0, 0%: 70, 50%: 100}}}
      users_trend: {change: {distinct: events.user_id, window: 5d},
                    score: {bands: {-50%: 0, 0%: 70, 50%: 100}}}
      all_users: {distinct: events.user_id, score: {linear: {bad: 0, good: 3}}}
      volume: {sum: events.quantity, window: 10d, score: {percentile: {within: all}}}
      last: {days_since: events, score: {linear: {bad: 30, good: 0}}, missing: {default: 0}}
      last_7d: {days_since: events, window: 7d, score: {linear: {bad: 7, good: 0}},
                missing: {default: 0}}
      latest_qty: {latest: events.quantity, window: 6d, score: {linear: {bad: 0, good: 5}}}
      gap_trend: {change: {days_since: events, window: 7d},
                  score: {bands: {-50%: 0, 0%: 70, 50%: 100}}}
      qty_trend: {change: {latest: events.quantity, window: 6d},
                  score: {bands: {-50%: 0, 0%: 70, 50%: 100}}}
  support:
    weight: 50
    metrics:
      open_p1: {count: tickets, where: "priority = 'P1'", active: true,
                score: {bands: {0: 100, 1: 40, 2: 0}}}
      csat: {avg: tickets.csat, window: 20d, score: {linear: {bad: 1, good: 5}}}
"""
EVENT_FIELDS = list(TABLES["events"].column_names)

days = st.integers(min_value=-40, max_value=DAILY)  # from X; > 0 arrives with a daily file
events = st.lists(
    st.tuples(
        st.sampled_from(["A1", "A2", "A3"]),
        days,
        st.integers(0, 23),
        st.sampled_from(["u1", "u2", "u3", "u4"]),
        st.integers(1, 5),
    ),
    # Enough that values recur across the day carried on from, in and out of windows.
    min_size=40,
    max_size=80,
)
tickets = st.lists(
    st.tuples(
        st.sampled_from(["A1", "A2", "A3"]),
        st.integers(-30, 0),
        st.one_of(st.none(), st.integers(0, 10)),  # days open; may close after X
        st.sampled_from(["P1", "P2"]),
        st.one_of(st.none(), st.integers(1, 5)),
    ),
    max_size=10,
)


def _at(offset: int, hour: int = 9) -> str:
    return (dt.datetime.combine(X, dt.time(hour)) + dt.timedelta(days=offset)).isoformat(sep=" ")


def _event(i: int, a: str, d: int, h: int, u: str, q: int) -> dict:
    return {
        "event_id": f"e{i}",
        "account_id": a,
        "user_id": u,
        "event_time": _at(d, h),
        "event": "login",
        "quantity": q,
    }


def _project(
    folder: Path,
    evs: list,
    tks: list,
    events: dict | None = None,
    contracts: list[dict] | None = None,
    model: str = MODEL,
) -> Path:
    """Events as daily files (all up to X in the first), or from ``events``; tickets (and any
    ``contracts``) as one file, unchanged."""
    make_project(
        folder,
        model,
        {
            **({"contracts": contracts} if contracts is not None else {}),
            "accounts": [account("A1"), account("A2"), account("A3")],
            "tickets": [
                {
                    "ticket_id": f"t{i}",
                    "account_id": a,
                    "opened_at": _at(d),
                    "closed_at": "" if c is None else _at(d + c, 15),
                    "priority": p,
                    "csat": "" if s is None else s,
                }
                for i, (a, d, c, p, s) in enumerate(tks)
            ],
        },
        sources={"events": events or {"file": "data/events/*.csv"}},
    )
    if events is None:
        _events_file(folder, "0000", [_event(i, *e) for i, e in enumerate(evs) if e[1] <= 0])
    return folder


def _events_file(folder: Path, name: str, rows: list[dict]) -> None:
    write_csv(folder / "data" / "events" / f"{name}.csv", rows, EVENT_FIELDS)


def _stored(p: ah.Project, day: dt.date) -> dict[tuple[str, str], float | None]:
    table = p.store.table("metric_values")
    frame = p.store.execute(table.filter(table.as_of == day))
    return {(r.account_id, r.metric): _number(r.value) for r in frame.itertuples()}


def _from_all_history(p: ah.Project, day: dt.date) -> dict[tuple[str, str], float | None]:
    """The day's values computed by the metric query alone, from all history."""
    frame = p.evaluate([day])
    return {
        (r["account_id"], name): _number(r[f"v__{name}"])
        for r in frame.to_dict("records")
        for name in p.model.metrics
    }


def _carried_on(
    p: ah.Project, day: dt.date, since: dt.date, why: str | None = None
) -> dict[tuple[str, str], float | None]:
    """Score ``day``, which must carry on from ``since`` and say ``why`` a table could not
    (None: all did), and its values must be those of all history; they are returned."""
    report = p.score(day)
    assert (report.carried_from, report.not_carried) == (since, why)
    stored = _stored(p, day)
    assert stored == _from_all_history(p, day)
    return stored


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 9)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=events, tks=tickets)
def test_each_day_carried_on_equals_the_day_from_all_history(evs: list, tks: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = _project(Path(tmp) / "p", evs, tks)
        with ah.open(folder) as p:
            p.ingest()
            p.score(start=X - dt.timedelta(days=6), end=X)
            # Two days one at a time, as the daily job runs; then two days' files at once and
            # one run of both days.
            for run in ([1], [2], [3, 4]):
                for k in run:
                    rows = [_event(i, *e) for i, e in enumerate(evs) if e[1] == k]
                    _events_file(folder, f"{k:04d}", rows)
                p.ingest()
                first, last = (X + dt.timedelta(days=k) for k in (run[0], run[-1]))
                report = p.score(start=first, end=last)
                assert report.carried_from == first - dt.timedelta(days=1), report.not_carried
                assert report.not_carried is None
                for day in report.dates:
                    assert _stored(p, day) == _from_all_history(p, day), day


@pytest.fixture
def carried_on(tmp_path: Path) -> Path:
    """A project backfilled to X, its events arriving as daily files."""
    evs = [("A1", d, 10, "u1" if d % 2 else "u2", 2) for d in range(-40, 1, 3)]
    evs += [("A2", d, 11, "u3", 1) for d in range(-30, 1, 4)]
    evs += [("A4", -3, 9, "u5", 1)]  # no account yet: ingest keeps it out
    tks = [("A1", -5, None, "P1", None), ("A2", -12, 15, "P1", 4), ("A3", -3, 1, "P2", 2)]
    folder = _project(tmp_path / "p", evs, tks)
    with ah.open(folder) as p:
        p.ingest()
        p.score(start=X - dt.timedelta(days=3), end=X)
    return folder


def _reversed(carried: Carried) -> Carried:
    """``carried`` with its accounts listed in reverse order, every row moved with them, and
    each account's position by hash."""
    n, index = len(carried.ids), carried.index

    def moved(accounts: np.ndarray) -> np.ndarray:
        return (n - 1 - accounts).astype(np.int32)

    return dataclasses.replace(
        carried,
        ids=carried.ids.take(pa.array(np.arange(n)[::-1])),
        running={
            col: {name: values[::-1].copy() for name, values in arrays.items()}
            for col, arrays in carried.running.items()
        },
        series={
            name: [Series(moved(rows.accounts), rows.days, rows.columns) for rows in pieces]
            for name, pieces in carried.series.items()
        },
        sightings={
            col: dataclasses.replace(seen, accounts=moved(seen.accounts))
            for col, seen in carried.sightings.items()
        },
        index=None if index is None else HashedPositions(index.hashes, moved(index.positions)),
    )


@pytest.mark.parametrize("compiled", [False, True])
def test_accounts_kept_in_another_order_carry_on_to_the_same_values(
    carried_on: Path, compiled: bool
) -> None:
    """The engine may list the accounts in another order than the kept state does: each
    carried row then moves to its account's position now, and the next day's values are
    those of all history. A run with compiled reads finds its rows' accounts by hash: by the
    positions now, not those kept."""
    day = X + dt.timedelta(days=1)
    _events_file(carried_on, "0001", [_event(300, "A1", 1, 9, "u4", 2)])  # the day's own row
    with ah.open(carried_on) as p:
        p.ingest()
        queries = compiled_queries(p.compute, p.model, p.query_cache) if compiled else None
        before = [X - dt.timedelta(days=1), X]
        ran = running_aggregates(p.compute, p.model, before, compiled=queries)
        for d in before:
            ran.raw(d)
        columns = list(ran.aggregates.values())
        kept = _reversed(ran.carry(columns))
        assert not kept.ids.equals(ran.ids)
        assert (kept.index is not None) == compiled
        carrying = running_aggregates(p.compute, p.model, [day], kept, queries)
        assert not carrying._same  # each carried row is moved to its account's position
        on = carrying.raw(day)
        alone = running_aggregates(p.compute, p.model, [day]).raw(day)
    assert len(on) >= 10  # all but the distinct users of all history carry on
    for col, raw in on.items():
        expected = alone[col]
        null = np.zeros(len(raw.data), bool) if raw.null is None else raw.null
        assert null.tolist() == (
            [False] * len(null) if expected.null is None else expected.null.tolist()
        ), col
        assert raw.data[~null].tolist() == expected.data[~null].tolist(), col


def test_running_values_whose_work_failed_say_so_whenever_asked(
    carried_on: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What failed on the reading threads is raised by every later use, not only the first:
    the values are not there to use."""

    def fail(*_: t.Any) -> None:
        raise duckdb.IOException("the disk went away")

    monkeypatch.setattr(RunningAggregates, "_make_series", fail)
    with ah.open(carried_on) as p:
        running = running_aggregates(p.compute, p.model, [X])
        for use in (running.ready, running.ready, lambda: running.raw(X)):
            with pytest.raises(duckdb.IOException, match="the disk went away"):
                use()


def test_the_next_days_run_finds_the_accounts_where_the_kept_state_has_them(
    carried_on: Path,
) -> None:
    # The accounts come sorted, so a state kept by one process is taken as it is by the next
    # (DuckDB's own order for distinct values varies with its threads).
    day = X + dt.timedelta(days=1)
    with ah.open(carried_on) as p:
        ran = running_aggregates(p.compute, p.model, [X])
        ran.raw(X)
        columns = list(ran.aggregates.values())
        kept = ran.carry(columns)
    ids = kept.ids.to_pylist()
    assert ids == sorted(ids) and len(ids) == 3
    with ah.open(carried_on) as p:
        assert running_aggregates(p.compute, p.model, [day], kept)._same


def _series_files(folder: Path, day: dt.date, table: str) -> list[Path]:
    """The files of the pieces of the series of ``table``'s rows the state kept of ``day``
    holds (the model's aggregates of it share one)."""
    (state,) = (folder / CARRIED).glob(f"*/{day.isoformat()}/state.json")
    meta = json.loads(state.read_text())
    (files,) = [
        files
        for name, files in meta["series"].items()
        if "|" not in name and meta["columns"][name.split(",")[0]] == table
    ]
    return [state.parent / file for file in files]


def test_a_kept_series_links_its_pieces_and_writes_only_new_days(carried_on: Path) -> None:
    """Each daily run keeps the series' pieces it carried on as they were (the kept state
    links their files) and writes only its own day's rows, merged with the newest pieces as a
    binary counter merges: after six days of one event each, the backfill's piece is still
    the file the backfill wrote, beside two pieces (days 1-4 and 5-6), and every day's
    values are those of all history."""
    backfilled = _series_files(carried_on, X, "events")
    assert len(backfilled) == 1
    inode = backfilled[0].stat().st_ino
    for k in range(1, 7):
        day = X + dt.timedelta(days=k)
        _events_file(carried_on, f"{k:04d}", [_event(100 + k, "A1", k, 10, "u1", 1)])
        with ah.open(carried_on) as p:
            p.ingest()
            _carried_on(p, day, day - dt.timedelta(days=1))
        files = _series_files(carried_on, day, "events")
        assert files[0].stat().st_ino == inode, k
        # Beside the backfill's: day 1; days 1-2; 1-2 and 3; 1-4; 1-4 and 5; 1-4 and 5-6.
        assert len(files) == (2, 2, 3, 2, 3, 3)[k - 1], k
    # Days 1-4's piece, written when day 4 merged it, is linked by days 5 and 6.
    kept = [_series_files(carried_on, X + dt.timedelta(days=k), "events")[1] for k in (4, 5, 6)]
    assert len({f.stat().st_ino for f in kept}) == 1


def test_a_fresh_run_keeps_the_sightings_its_own_read_found(carried_on: Path) -> None:
    """A run that starts afresh keeps, of each windowed distinct aggregate, the sightings still
    counted after its last day from its own read of them: carrying them on reads nothing
    more, and they are those worked out by hand from the events."""
    days = [X - dt.timedelta(days=k) for k in (2, 1, 0)]
    last = len(days) - 1
    with ah.open(carried_on) as p:
        ran = running_aggregates(p.compute, p.model, days)
        for d in days:
            ran.raw(d)
        events = p.compute.to_arrow(p.compute.table("events")).to_pylist()

        def no_read(*_: t.Any) -> t.NoReturn:
            raise AssertionError("read while carrying on")

        ran._read = no_read  # type: ignore[method-assign]
        carried = ran.carry(list(ran.aggregates.values()))
    position = {account: i for i, account in enumerate(ran.ids.to_pylist())}
    windowed = {a: c for a, c in ran.aggregates.items() if a.kind == "distinct" and a.window}
    assert len(windowed) >= 2  # users in 28 days, and in 5 days and the 5 before
    for agg, col in windowed.items():
        kept = carried.sightings[col]
        values, base = kept.values.to_pylist(), (days[0] - EPOCH).days  # kept: epoch days
        rows = zip(kept.accounts, kept.codes, kept.days, kept.leaves, kept.latest, strict=True)
        found = sorted(
            (int(a), values[c], int(day) - base, int(gone) - base, bool(latest))
            for a, c, day, gone, latest in rows
        )
        # By hand: each (account, value, day) seen up to the last day leaves when the window
        # has passed it or the value is seen next (plus the offset); those leaving later count.
        seen = sorted(
            {
                (position[e["account_id"]], e[agg.column], (e[agg.time].date() - days[0]).days)
                for e in events
                if e["account_id"] in position
                and e[agg.column] is not None
                and e[agg.time].date() <= X
            }
        )
        o, w = agg.offset, t.cast(int, agg.window)
        expected = []
        for i, (a, v, u) in enumerate(seen):
            after = seen[i + 1] if i + 1 < len(seen) and seen[i + 1][:2] == (a, v) else None
            gone = u + o + w if after is None else min(u + o + w, after[2] + o)
            if gone > last:
                expected.append((a, v, u, gone, after is None))
        assert expected, col
        assert found == expected, col


def test_a_row_for_a_day_already_counted_reads_that_table_again(carried_on: Path) -> None:
    day = X + dt.timedelta(days=1)
    late = _event(900, "A3", -2, 8, "u9", 4)  # two days before X, in the new day's file
    _events_file(carried_on, "0001", [_event(901, "A3", 1, 9, "u9", 1), late])
    with ah.open(carried_on) as p:
        p.ingest()
        report = p.score(day)
        # Tickets did not change: carried on; events read all history again.
        assert report.carried_from == X
        assert report.not_carried is not None
        assert report.not_carried.startswith("events: it holds")
        assert "rows came for days already counted" in report.not_carried
        assert _stored(p, day) == _from_all_history(p, day)
        assert _stored(p, day)[("A3", "events_28d")] == 2
        # That run kept all it read: the next day carries all on again.
        _events_file(carried_on, "0002", [_event(902, "A1", 2, 9, "u1", 3)])
        p.ingest()
        after = p.score(day + dt.timedelta(days=1))
        assert (after.carried_from, after.not_carried) == (day, None)
        assert _stored(p, after.dates[0]) == _from_all_history(p, after.dates[0])


def test_a_file_changed_under_the_kept_state_is_read_again(carried_on: Path) -> None:
    first = carried_on / "data" / "events" / "0000.csv"
    first.write_text(first.read_text().replace(",2\n", ",5\n"))  # other quantities, same rows
    _events_file(carried_on, "0001", [])
    with ah.open(carried_on) as p:
        p.ingest()
        day = X + dt.timedelta(days=1)
        report = p.score(day)
        assert report.not_carried == "events: a file read before was changed, moved or removed"
        assert _stored(p, day) == _from_all_history(p, day)
        # The 10 days to X + 1 hold three of A1's events (X - 7, X - 4, X - 1), now of 5 each.
        assert _stored(p, day)[("A1", "volume")] == 3 * 5


def test_accounts_added_read_every_table_again(carried_on: Path) -> None:
    # A4's events were kept out while it was no account; an ingest against the new accounts
    # loads them, so what was counted no longer holds.
    accounts = carried_on / "data" / "accounts.csv"
    write_csv(accounts, [account(a) for a in ("A1", "A2", "A3", "A4")])
    _events_file(carried_on, "0001", [])
    with ah.open(carried_on) as p:
        p.ingest()
        day = X + dt.timedelta(days=1)
        report = p.score(day)
        assert report.not_carried is not None
        assert "events: accounts were added or removed since" in report.not_carried
        assert _stored(p, day) == _from_all_history(p, day)
        assert _stored(p, day)[("A4", "events_28d")] == 1


def test_another_model_starts_its_own_running_values(carried_on: Path) -> None:
    model = carried_on / "model.yaml"
    model.write_text(model.read_text().replace("window: 28d", "window: 21d"))
    with ah.open(carried_on) as p:
        day = X + dt.timedelta(days=1)
        report = p.score(day)
        # Nothing was kept for this model; carrying on was in use, so this run starts it.
        assert (report.carried_from, report.not_carried) == (None, None)
        assert _stored(p, day) == _from_all_history(p, day)
        following = p.score(day + dt.timedelta(days=1))
        assert following.carried_from == day


def test_a_day_not_following_a_kept_one_reads_all_history(carried_on: Path) -> None:
    with ah.open(carried_on) as p:
        day = X + dt.timedelta(days=5)
        report = p.score(day)
        assert report.carried_from is None
        assert _stored(p, day) == _from_all_history(p, day)


def test_a_kept_state_that_cannot_be_read_costs_a_read_of_all_history(carried_on: Path) -> None:
    (state,) = (carried_on / CARRIED).glob(f"*/{X.isoformat()}")
    series = next(state.glob("series-*.arrow"))
    series.write_bytes(series.read_bytes()[:100])  # cut short
    day = X + dt.timedelta(days=1)
    with ah.open(carried_on) as p:
        report = p.score(day)
        assert report.carried_from is None
        assert report.not_carried is not None
        assert report.not_carried.startswith(f"the running values kept of {X} could not be read")
        assert _stored(p, day) == _from_all_history(p, day)
        # That run kept its own: the next day carries on from it.
        _carried_on(p, day + dt.timedelta(days=1), day)


def test_a_table_changed_other_than_by_an_ingest_is_read_again(carried_on: Path) -> None:
    # Its files are the ones the kept state saw, so only its count of rows can tell.
    with ah.open(carried_on) as p:
        p.compute.sql("DELETE FROM tickets WHERE ticket_id = 't1'")  # A2's closed P1
        why = (
            "tickets: it holds 2 rows, not 3 as when its running values were kept, from the "
            "same files: it was changed other than by an ingest"
        )
        assert _carried_on(p, X + dt.timedelta(days=1), X, why)[("A2", "csat")] is None


def _compiled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL of each query compiled from now on."""
    compiles: list[str] = []
    real = DuckDBEngine.prepare

    def prepare(self: DuckDBEngine, expr: t.Any) -> t.Any:
        query = real(self, expr)
        compiles.append(query.sql)
        return query

    monkeypatch.setattr(DuckDBEngine, "prepare", prepare)
    return compiles


def _next_day(folder: Path, k: int, event: dict) -> None:
    """Day X + ``k`` as the daily job runs it, in a process of its own: ``event`` arrives in a
    file, is ingested, and the day carries on from the day before."""
    day = X + dt.timedelta(days=k)
    _events_file(folder, f"{k:04d}", [event])
    with ah.open(folder) as p:
        p.ingest()
        _carried_on(p, day, day - dt.timedelta(days=1))


def test_the_daily_runs_reads_are_compiled_once(
    carried_on: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day carrying on reads its own day's rows by queries that differ from day to day only
    in their dates: the backfill's end compiles them, with the dates as parameters, beside
    the grid's query, and no daily run compiles a read. The counts of the tables' rows are
    one query too, whichever tables had files ingested and whatever the run carries (each
    count switched on or off): the backfill compiles it, and no daily run compiles a count.
    The values are those of all history."""
    queries = carried_on / ".accounthealth-cache" / "queries"
    kept = [json.loads(entry.read_text())["query"]["sql"] for entry in queries.glob("*.json")]
    reads = [sql for sql in kept if HASH in sql]
    # The events' rows, their users, the tickets' opened and closed: each its query, each
    # returning its rows' accounts' hashes (metrics/hashed.py), not joining their positions.
    assert len(reads) >= 4
    assert not any(POSITIONS_TABLE in sql for sql in kept)
    assert all("getvariable('accounthealth_first')" in sql.lower() for sql in reads)
    assert not any(str(X + dt.timedelta(days=1)) in sql for sql in reads)  # no date in them
    compiles = _compiled(monkeypatch)
    for k in (1, 2, 3):
        compiles.clear()
        _next_day(carried_on, k, _event(900 + k, "A1", k, 9, "u7", 3))
        counts = [sql for sql in compiles if "getvariable('accounthealth_after')" in sql.lower()]
        assert not any(HASH in sql or POSITIONS_TABLE in sql for sql in compiles)
        assert counts == [], k
    assert compiles == []
    census = [sql for sql in kept if "getvariable('accounthealth_after')" in sql.lower()]
    assert len(census) == 1


def _index_file(folder: Path, day: dt.date) -> Path:
    (state,) = (folder / CARRIED).glob(f"*/{day.isoformat()}/state.json")
    return state.parent / state_files.INDEX


def test_the_accounts_hashes_are_kept_with_the_state_and_found_once(
    carried_on: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backfill finds its accounts' positions by their ids' hashes and keeps them with its
    state; while the accounts are the same, the days after take them as kept (the file is
    linked, not written again) and hash no account."""
    backfilled = _index_file(carried_on, X)
    inode = backfilled.stat().st_ino

    def found(*_: object) -> None:
        raise AssertionError("the accounts were hashed again")

    monkeypatch.setattr(HashedPositions, "found", found)
    for k in (1, 2):
        _next_day(carried_on, k, _event(300 + k, "A2", k, 9, "u4", 2))
        assert _index_file(carried_on, X + dt.timedelta(days=k)).stat().st_ino == inode, k


def test_running_values_as_the_day_before_are_kept_under_a_new_name(carried_on: Path) -> None:
    """A day's running values that are the day before's, bit for bit, are kept as the day
    before's file under a new name; the others are written again, with the day's values.
    A2's new event changes its events' aggregates; no ticket opens, closes or leaves a window,
    so those of the tickets stay as they were."""
    _next_day(carried_on, 1, _event(301, "A2", 1, 9, "u4", 2))
    then, now = (_index_file(carried_on, X + dt.timedelta(days=k)).parent for k in (0, 1))
    linked = set()
    for path in sorted(now.glob("running-*.arrow")):
        before, after = (state_files.kept_arrays(folder / path.name) for folder in (then, now))
        same = before.keys() == after.keys() and all(
            before[name].tobytes() == after[name].tobytes() for name in before
        )
        assert (path.stat().st_ino == (then / path.name).stat().st_ino) == same, path.name
        linked |= {path.name} if same else set()
    assert 0 < len(linked) < len(list(now.glob("running-*.arrow")))


def test_accounts_sharing_a_hash_are_joined_to_their_rows_instead(
    carried_on: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where two accounts' ids hash alike, a run finds its rows' accounts by joining their ids,
    and keeps no hashes for the next: the values are still those of all history."""
    _index_file(carried_on, X).unlink()  # as if the backfill's accounts had shared a hash
    monkeypatch.setattr(HashedPositions, "found", lambda *_: None)
    joined = _compiled(monkeypatch)
    for k in (1, 2):
        joined.clear()
        _next_day(carried_on, k, _event(300 + k, "A1", k, 9, "u4", 2))
        assert not _index_file(carried_on, X + dt.timedelta(days=k)).exists(), k
        assert not any(HASH in sql for sql in joined), k
        # The joining reads, compiled by the first day (the cache keeps them by another name
        # than the hashing ones) and by no day after.
        reads = [sql for sql in joined if POSITIONS_TABLE in sql]
        assert len(reads) >= 4 if k == 1 else reads == [], k


# A model whose every aggregate carries on (no distinct values over all history), so the
# day grid serves the days carried on too.
GRID_MODEL = "\n".join(line for line in MODEL.splitlines() if "all_users" not in line)
DEAL = {
    "contract_id": "c1",
    "account_id": "A1",
    "start_date": "2025-01-01",
    "end_date": "2027-01-01",
    "arr": 1000,
}


@pytest.fixture
def grid_carried(tmp_path: Path) -> Path:
    """A project of GRID_MODEL with a contract, backfilled to X."""
    evs = [("A1", d, 10, "u1" if d % 2 else "u2", 2) for d in range(-40, 1, 3)]
    folder = _project(tmp_path / "p", evs, [], contracts=[DEAL])
    (folder / "model.yaml").write_text(GRID_MODEL)
    with ah.open(folder) as p:
        p.ingest()
        p.score(start=X - dt.timedelta(days=1), end=X)
    return folder


def test_the_grids_accounts_carry_on_until_their_file_changes(
    grid_carried: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = placed_reads(monkeypatch)
    day = X + dt.timedelta(days=1)
    with ah.open(grid_carried) as p:
        # A1's two users over 28 days, of its 10 seats.
        assert _carried_on(p, day, X)[("A1", "seats")] == 0.2
    assert not any("licensed_seats" in read for read in reads)  # as the backfill read them
    # Carried on as they were, the kept accounts are the day before's file under a new name,
    # and so are their ids.
    assert _input(grid_carried, day).stat().st_ino == _input(grid_carried, X).stat().st_ino
    assert _ids(grid_carried, day).stat().st_ino == _ids(grid_carried, X).stat().st_ino
    write_csv(
        grid_carried / "data" / "accounts.csv",
        [account("A1", licensed_seats=2), account("A2"), account("A3")],
    )
    after = day + dt.timedelta(days=1)
    with ah.open(grid_carried) as p:
        p.ingest()
        assert _carried_on(p, after, day)[("A1", "seats")] == 1.0
    assert any("licensed_seats" in read for read in reads)
    assert _input(grid_carried, after).stat().st_ino != _input(grid_carried, day).stat().st_ino
    assert _ids(grid_carried, after).stat().st_ino != _ids(grid_carried, day).stat().st_ino


SEGMENTED = """
segments:
  big:
    when: "segment = 'enterprise'"
    weights: {usage: 90, support: 10}
"""


def _grid_file(folder: Path, day: dt.date, name: str) -> Path:
    return next((folder / CARRIED).glob(f"*/{day.isoformat()}/grid-{name}.arrow"))


def test_the_grids_segments_and_population_carry_on_while_the_accounts_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accounts' segment models and the day's population with its account columns, worked
    out by the day grid, are kept for the next day: it labels no account and takes no column
    while the accounts file is the same, takes them again when its population changes, and
    labels again once the file changes."""
    evs = [("A1", d, 10, "u1", 2) for d in range(-40, 1, 3)]
    folder = _project(tmp_path / "p", evs, [], contracts=[DEAL])
    (folder / "model.yaml").write_text(GRID_MODEL + SEGMENTED)
    # A3 becomes an account two days after X: the population changes, its accounts do not.
    accounts = [
        account("A1", segment="enterprise", owner="Bo"),
        account("A2", manager="Cy"),
        account("A3", created_at=(X + dt.timedelta(days=2)).isoformat()),
    ]
    write_csv(folder / "data" / "accounts.csv", accounts)
    labelled: list[int] = []
    real = day_grid.DayGrid._label

    def label(self: day_grid.DayGrid, table: pa.Table, *args: t.Any) -> np.ndarray:
        labelled.append(table.num_rows)
        return real(self, table, *args)

    monkeypatch.setattr(day_grid.DayGrid, "_label", label)

    def models(p: ah.Project, on: dt.date) -> dict[str, tuple[str, ...]]:
        scores = p.scores(on, on)
        columns = ["account_id", "segment_model", "name", "owner", "manager"]
        return {r[0]: tuple(r[1:]) for r in scores[columns].itertuples(index=False)}

    def linked(name: str, on: dt.date, before: dt.date) -> bool:
        """Whether the state of ``on`` keeps ``before``'s file under a new name."""
        now, then = _grid_file(folder, on, name), _grid_file(folder, before, name)
        return now.stat().st_ino == then.stat().st_ino

    big, default = ("big", "Company A1", "Bo", "Max"), ("default", "Company A2", "Ana", "Cy")
    a3 = ("default", "Company A3", "Ana", "Max")
    day = X + dt.timedelta(days=1)
    joined = day + dt.timedelta(days=1)
    with ah.open(folder) as p:
        p.ingest()
        p.score(start=X - dt.timedelta(days=1), end=X)
        assert labelled == [3]
        _carried_on(p, day, X)
        assert labelled == [3]  # carried on
        assert models(p, day) == models(p, X) == {"A1": big, "A2": default}
        assert linked("labels", day, X) and linked("population", day, X)
        _carried_on(p, joined, day)
        assert labelled == [3]
        assert models(p, joined) == {"A1": big, "A2": default, "A3": a3}
        assert linked("labels", joined, day) and not linked("population", joined, day)
    population = feather.read_table(_grid_file(folder, joined, "population"))
    assert population.column("account_id").to_pylist() == ["A1", "A2", "A3"]
    write_csv(
        folder / "data" / "accounts.csv", [*accounts[:2], {**accounts[2], "segment": "enterprise"}]
    )
    after = joined + dt.timedelta(days=1)
    with ah.open(folder) as p:
        p.ingest()
        _carried_on(p, after, joined)
        assert labelled == [3, 3]
        assert models(p, after) == {"A1": big, "A2": default, "A3": ("big", *a3[1:])}
    assert not linked("labels", after, joined)


def _input(folder: Path, day: dt.date) -> Path:
    """The accounts the day grid read, as the state kept of ``day`` keeps them."""
    return next((folder / CARRIED).glob(f"*/{day.isoformat()}/input-accounts.arrow"))


def _ids(folder: Path, day: dt.date) -> Path:
    """The ids of the accounts, as the state kept of ``day`` keeps them."""
    return _index_file(folder, day).with_name(state_files.IDS)


def test_the_grids_contracts_carry_on_until_their_file_changes(
    grid_carried: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = placed_reads(monkeypatch)
    day = X + dt.timedelta(days=1)

    def arr(p: ah.Project, on: dt.date) -> float:
        return float(p.scores(on, on).set_index("account_id").loc["A1", "arr"])

    with ah.open(grid_carried) as p:
        _carried_on(p, day, X)
        assert arr(p, day) == 1000
    assert not any("arr" in read for read in reads)
    write_csv(grid_carried / "data" / "contracts.csv", [{**DEAL, "arr": 2500}])
    with ah.open(grid_carried) as p:
        p.ingest()
        _carried_on(p, day + dt.timedelta(days=1), day)
        assert arr(p, day + dt.timedelta(days=1)) == 2500
    assert any("arr" in read for read in reads)


def _two_days_of_events(folder: Path) -> tuple[dt.date, dt.date]:
    """A file of events for each of the two days after X; those days."""
    _events_file(folder, "0001", [_event(901, "A1", 1, 9, "u7", 2)])
    _events_file(folder, "0002", [_event(902, "A2", 2, 9, "u3", 1)])
    return X + dt.timedelta(days=1), X + dt.timedelta(days=2)


def _disk_full(*_: object) -> None:
    raise OSError("No space left on device")


def test_a_failed_history_write_still_keeps_the_day_for_the_next(
    carried_on: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The state is kept while the day's history is written: it is the data's, so the next day
    # carries on from it though that write failed.
    day, after = _two_days_of_events(carried_on)
    with ah.open(carried_on) as p:
        p.ingest()
        with monkeypatch.context() as patched:
            patched.setattr(HistoryArchive, "replace", _disk_full)
            with pytest.raises(OSError, match="No space left"):
                p.score(day)
        assert day not in p.scored_dates()
        report = p.score(after)
        assert (report.carried_from, report.not_carried) == (day, None)
        assert _stored(p, after) == _from_all_history(p, after)
        assert _stored(p, after)[("A1", "events_28d")] >= 1
        # The failed day scored again carries on from the day before it.
        again = p.score(day)
        assert (again.carried_from, again.not_carried) == (X, None)
        assert _stored(p, day) == _from_all_history(p, day)


def test_a_state_that_cannot_be_written_costs_the_next_day_a_read_not_the_days_scores(
    carried_on: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The state is taken and written in a thread while the day is scored: failing there, the
    # day is scored all the same and no part of a state is left for the next day to trust.
    day, after = _two_days_of_events(carried_on)
    notes = Notes()
    with ah.open(carried_on, progress=notes) as p:
        p.ingest()
        with monkeypatch.context() as patched:
            patched.setattr(state_files, "write_arrays", _disk_full)
            _carried_on(p, day, X)
        assert notes.lines == [
            "the running values could not be kept for the next day "
            "(OSError('No space left on device'))"
        ]
        assert not list((carried_on / CARRIED).glob("*/.writing-*"))
        assert not list((carried_on / CARRIED).glob(f"*/{day}"))
        # Nothing kept of the day: the next reads all history, and keeps its own state.
        assert p.score(after).carried_from is None
        assert _stored(p, after) == _from_all_history(p, after)
        assert list((carried_on / CARRIED).glob(f"*/{after}/state.json"))


@pytest.mark.parametrize("failing", ["score_table", "final_scores"])
def test_a_run_failing_while_its_state_is_written_keeps_none_of_it(
    carried_on: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """The state's rows are written from the run's start, its running values once the last
    day is reached: a run failing before then (scoring the day) stops that thread, one failing
    after (its tiers) drops what it wrote. Neither keeps anything, and the day carries on
    when scored again."""
    day = X + dt.timedelta(days=1)
    started, failed = threading.Event(), threading.Event()
    stage = carryover.CarryOver._stage

    def late(self: carryover.CarryOver, *args: t.Any) -> t.Any:
        started.set()
        failed.wait(timeout=60)  # still writing when the run fails
        return stage(self, *args)

    def broken(*_: object, **__: object) -> None:
        assert started.wait(timeout=60)  # the state is being kept already
        failed.set()
        raise RuntimeError(f"{failing} broke")

    with ah.open(carried_on) as p:
        with monkeypatch.context() as patched:
            patched.setattr(carryover.CarryOver, "_stage", late)
            patched.setattr(project_module, failing, broken)
            with pytest.raises(RuntimeError, match=f"{failing} broke"):
                p.score(day)
        assert not list((carried_on / CARRIED).glob("*/.writing-*"))
        assert not list((carried_on / CARRIED).glob(f"*/{day}"))
        _carried_on(p, day, X)


def test_what_a_killed_run_left_is_deleted_once_an_hour_old(carried_on: Path) -> None:
    (kept,) = (carried_on / CARRIED).glob("*/")
    old, recent = kept / ".writing-killed", kept / ".writing-now"
    for folder in (old, recent):
        folder.mkdir()
        (folder / "ids.arrow").write_bytes(b"")
    hour_ago = time.time() - ORPHAN_AGE_SECONDS - 60
    os.utime(old, (hour_ago, hour_ago))
    with ah.open(carried_on) as p:
        _carried_on(p, X + dt.timedelta(days=1), X)
    assert not old.exists()
    assert recent.exists()  # perhaps a run writing it now


def _lake_project(folder: Path, append_only: bool) -> Path:
    """The ``carried_on`` book, its events a folder of Parquet files read in place (a lake the
    daily export adds a file to), backfilled to X."""
    evs = [("A1", d, 10, "u1" if d % 2 else "u2", 2) for d in range(-40, 1, 3)]
    evs += [("A2", d, 11, "u3", 1) for d in range(-30, 1, 4)]
    tks = [("A1", -5, None, "P1", None), ("A2", -12, 15, "P1", 4)]
    _project(folder, [], tks, {"path": "lake/events/*.parquet", "append_only": append_only})
    # An event without an account: the view leaves it out, the counts that tell a change not.
    orphan = {**_event(len(evs), "A1", -2, 9, "u1", 1), "account_id": None}
    _lake_file(folder, "0000", [*(_event(i, *e) for i, e in enumerate(evs)), orphan])
    with ah.open(folder) as p:
        report = p.ingest()
        assert {r.table: r.how for r in report.tables}["events"] == "read in place"
        p.score(start=X - dt.timedelta(days=3), end=X)
    return folder


def _lake_file(folder: Path, name: str, rows: list[dict]) -> None:
    (folder / "lake" / "events").mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows).set_column(
        3, "event_time", pa.array([dt.datetime.fromisoformat(r["event_time"]) for r in rows])
    )
    pq.write_table(table, folder / "lake" / "events" / f"{name}.parquet")


def _kept_tables(folder: Path, day: dt.date) -> set[str]:
    """The tables whose running values the state kept of ``day`` counts."""
    (state,) = (folder / CARRIED).glob(f"*/{day.isoformat()}/state.json")
    return set(json.loads(state.read_text())["tables"])


def test_a_kept_states_counts_are_its_days_counted_on_a_connection_of_its_own(
    carried_on: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread keeping the state counts its tables (the census) on a reader connection of
    its own, once the state is written: the counts kept are those of the run's last day, and
    the run's own connection counts nothing after scoring."""
    day = X + dt.timedelta(days=1)
    _events_file(carried_on, "0001", [_event(901, "A1", 1, 9, "u7", 2)])
    counted_on: list[tuple[str, int]] = []
    real = carryover.Counting.count

    def count(self: carryover.Counting, engine: t.Any) -> t.Any:
        counted_on.append((threading.current_thread().name, id(engine)))
        return real(self, engine)

    monkeypatch.setattr(carryover.Counting, "count", count)
    with ah.open(carried_on) as p:
        p.ingest()
        report = p.score(day)
        scoring = list(counted_on)
        assert report.carried_from == X, report.not_carried
        (state,) = (carried_on / CARRIED).glob(f"*/{day.isoformat()}/state.json")
        kept = json.loads(state.read_text())["tables"]
        counts = census(p.compute, {"events": ["event_time"]}, day)["events"]
        own = id(p.compute)
    assert {k: kept["events"][k] for k in counts} == json.loads(json.dumps(counts))
    assert kept["events"]["until"]["event_time"] == kept["events"]["rows"]
    # The resumed state's census on the run's connection, the kept one's on the thread's own.
    (resumed, kept_by) = scoring
    assert resumed == ("MainThread", own)
    assert kept_by[0].startswith("accounthealth-carry") and kept_by[1] != own


def test_a_census_failing_on_the_keeping_thread_keeps_no_state_and_closes_its_connection(
    carried_on: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    day, after = _two_days_of_events(carried_on)
    readers = _readers_opened(monkeypatch)
    real_count = carryover.Counting.count

    def count(self: carryover.Counting, engine: t.Any) -> t.Any:
        if threading.current_thread().name.startswith("accounthealth-carry"):
            raise duckdb.IOException("the disk went away")
        return real_count(self, engine)  # the resumed state's census

    notes = Notes()
    with ah.open(carried_on, progress=notes) as p:
        p.ingest()
        with monkeypatch.context() as patched:
            patched.setattr(carryover.Counting, "count", count)
            report = p.score(day)
        assert report.carried_from == X  # the day itself scores as ever
        assert notes.lines == [
            "the running values could not be kept for the next day "
            "(IOException('the disk went away'))"
        ]
        assert not list((carried_on / CARRIED).glob(f"*/{day}"))
        assert p.score(after).carried_from is None
    _all_closed(readers)  # the run's readers and the keeping thread's


def _readers_opened(monkeypatch: pytest.MonkeyPatch) -> list[DuckDBEngine]:
    """The read connections opened from now on, as they are opened."""
    readers: list[DuckDBEngine] = []
    real_reader = DuckDBEngine.reader

    def reader(self: DuckDBEngine) -> DuckDBEngine:
        readers.append(real_reader(self))
        return readers[-1]

    monkeypatch.setattr(DuckDBEngine, "reader", reader)
    return readers


def _all_closed(readers: list[DuckDBEngine]) -> None:
    assert readers
    for connection in readers:
        with pytest.raises(duckdb.ConnectionException):
            connection.sql("SELECT 1")


def test_a_state_that_keeps_no_aggregate_is_not_carried_on(tmp_path: Path) -> None:
    """Distinct values of all history are never kept: the day is the query's, from all
    history, and says it carried nothing on."""
    model = """
components:
  usage:
    weight: 100
    metrics:
      all_users: {distinct: events.user_id, score: {linear: {bad: 0, good: 3}}}
"""
    folder = _project(tmp_path / "p", [("A1", -2, 10, "u1", 1)], [], model=model)
    day = X + dt.timedelta(days=1)
    with ah.open(folder) as p:
        p.ingest()
        p.score(start=X - dt.timedelta(days=1), end=X)
    _events_file(folder, "0001", [_event(901, "A1", 1, 9, "u7", 2)])
    with ah.open(folder) as p:
        p.ingest()
        assert p.score(day).carried_from is None
        assert _stored(p, day) == _from_all_history(p, day)


def test_the_kept_state_is_read_while_its_tables_are_counted(
    carried_on: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Here the count waits until the state is being read, which it could not if the state
    were read only once its tables were counted."""
    day, _ = _two_days_of_events(carried_on)
    reading = threading.Event()
    real_read, real_census = state_files.read_state, carryover.census

    def read_state(*args: t.Any) -> t.Any:
        reading.set()
        return real_read(*args)

    def census(*args: t.Any) -> t.Any:
        assert reading.wait(timeout=30), "the state was read only once its tables were counted"
        return real_census(*args)

    monkeypatch.setattr(state_files, "read_state", read_state)
    monkeypatch.setattr(carryover, "census", census)
    with ah.open(carried_on) as p:
        p.ingest()
        _carried_on(p, day, X)


def test_the_day_grid_is_set_up_while_the_days_reads_are_in_flight(
    carried_on: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daily run sets up its day grid (and reads its overrides) while its reads run: here
    every read waits until the grid is set up, which it could not if the run waited for them
    first."""
    day, _ = _two_days_of_events(carried_on)
    set_up = threading.Event()
    real_serving, real_run = day_grid.DayGrid.serving.__func__, Readers._run

    def serving(cls: type[day_grid.DayGrid], *args: t.Any) -> t.Any:
        grid = real_serving(cls, *args)
        set_up.set()
        return grid

    def run(self: Readers, *args: t.Any) -> t.Any:
        assert set_up.wait(timeout=30), "the run waited for its reads before its day grid"
        return real_run(self, *args)

    monkeypatch.setattr(day_grid.DayGrid, "serving", classmethod(serving))
    monkeypatch.setattr(Readers, "_run", run)
    with ah.open(carried_on) as p:
        p.ingest()
        _carried_on(p, day, X)


@pytest.mark.parametrize("failing", ["a read", "the day grid"])
def test_a_failure_while_the_reads_are_in_flight_fails_the_run_and_closes_its_readers(
    carried_on: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    day, _ = _two_days_of_events(carried_on)
    readers = _readers_opened(monkeypatch)

    def fail(*_: t.Any) -> t.Any:
        raise duckdb.IOException("the disk went away")

    with ah.open(carried_on) as p:
        p.ingest()
        with monkeypatch.context() as patched:
            if failing == "a read":
                patched.setattr(Readers, "_run", fail)
            else:
                patched.setattr(day_grid.DayGrid, "serving", classmethod(fail))
            with pytest.raises(duckdb.IOException, match="the disk went away"):
                p.score(day)
        assert p.store.sql("SELECT count(*) FROM scores WHERE as_of = ?", [day]) == [(0,)]
        assert not list((carried_on / CARRIED).glob(f"*/{day}"))
        _carried_on(p, day, X)  # the next attempt carries on as ever
    _all_closed(readers)


def test_an_append_only_source_read_in_place_carries_on(tmp_path: Path) -> None:
    folder = _lake_project(tmp_path / "p", append_only=True)
    assert _kept_tables(folder, X) == {"events", "tickets"}
    day = X + dt.timedelta(days=1)
    _lake_file(folder, "0001", [_event(901, "A1", 1, 9, "u7", 2), _event(902, "A3", 1, 9, "u8", 1)])
    with ah.open(folder) as p:
        assert _carried_on(p, day, X)[("A3", "events_28d")] == 1
        # A row for a day already counted: that table is read from all history again.
        after = day + dt.timedelta(days=1)
        _lake_file(
            folder, "0002", [_event(903, "A2", 2, 9, "u3", 1), _event(904, "A3", -2, 8, "u9", 4)]
        )
        why = (
            "events: it holds 26 rows up to the kept day by event_time, not 25 as when its "
            "running values were kept: rows came for days already counted"
        )
        assert _carried_on(p, after, day, why)[("A3", "events_28d")] == 2
        # A file taken away: rows were removed.
        (folder / "lake" / "events" / "0001.parquet").unlink()
        again = after + dt.timedelta(days=1)
        report = p.score(again)
        assert report.not_carried is not None
        assert "rows were removed from days already counted" in report.not_carried
        assert _stored(p, again) == _from_all_history(p, again)


def test_a_source_read_in_place_is_not_carried_on_unless_append_only(tmp_path: Path) -> None:
    # Its rows could change in place where no count shows it: it reads all history each day.
    folder = _lake_project(tmp_path / "p", append_only=False)
    assert _kept_tables(folder, X) == {"tickets"}
    day = X + dt.timedelta(days=1)
    _lake_file(folder, "0001", [_event(901, "A1", 1, 9, "u7", 2)])
    with ah.open(folder) as p:
        _carried_on(p, day, X)
    assert _kept_tables(folder, day) == {"tickets"}


def test_a_source_no_longer_append_only_reads_all_history_again(tmp_path: Path) -> None:
    folder = _lake_project(tmp_path / "p", append_only=True)
    config = folder / "accounthealth.yaml"
    config.write_text(config.read_text().replace("append_only: true", "append_only: false"))
    day = X + dt.timedelta(days=1)
    _lake_file(folder, "0001", [_event(901, "A1", 1, 9, "u7", 2)])
    with ah.open(folder) as p:
        _carried_on(p, day, X, "events: it is neither ingested nor read in place with append_only")
    assert _kept_tables(folder, day) == {"tickets"}


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_one_compiled_census_counts_whichever_tables_a_run_asks_for(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """The compiled census counts every table and time column of the state, each count on
    or off: for any tables and columns asked, the counts are those of a census of just them
    (run with literals), and it is compiled once."""
    from accounthealth.engine.postgres import PostgresEngine

    engine: t.Any = (
        DuckDBEngine()
        if kind == "duckdb"
        else PostgresEngine(request.getfixturevalue("postgres_server").new_database())
    )
    engine.sql("CREATE TABLE events (account_id VARCHAR, event_time TIMESTAMP)")
    engine.sql("CREATE TABLE tickets (account_id VARCHAR, opened_at DATE, closed_at DATE)")
    engine.sql(
        "INSERT INTO events VALUES ('a', '2026-01-01 10:00'), ('a', '2026-01-03 00:00'), "
        "('b', '2026-01-02 23:59'), ('b', NULL)"
    )
    engine.sql(
        "INSERT INTO tickets VALUES ('a', '2026-01-01', '2026-01-05'), "
        "('b', '2026-01-03', NULL), ('c', '2026-01-02', '2026-01-02')"
    )
    every = {"events": ["event_time"], "tickets": ["closed_at", "opened_at"], "accounts": []}
    compiled: dict[str, t.Any] = {}

    def compile_once(name: str, build: t.Callable[[], t.Any]) -> t.Any:
        if name not in compiled:
            compiled[name] = engine.prepare(build())
        return compiled[name]

    day = dt.date(2026, 1, 2)
    asked: list[dict[str, list[str]]] = [
        {"events": ["event_time"], "tickets": []},
        {"tickets": ["closed_at"]},
        {"events": [], "tickets": ["opened_at", "closed_at"]},
    ]
    for times in asked:
        expected = census(engine, times, day)
        assert census(engine, times, day, compile_once, every) == expected
    assert census(engine, asked[2], day, compile_once, every)["tickets"] == {
        "rows": 3,
        "later": {"opened_at": 1, "closed_at": 1},
        "until": {"opened_at": 2, "closed_at": 1},
    }
    assert len(compiled) == 1
