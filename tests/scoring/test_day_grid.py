"""The grid of each day of a run worked out in memory (scoring/day_grid.py) against the day's
query over the same running values, on the cases a population and its metrics trip over:
accounts created later or on no date, contracts that end on the day, have no end or no ARR,
no seats to divide by, no change from zero, and segments chosen by an account column and by
the day's ARR. And a backfill it serves scores every day as the day scored alone does."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import accounthealth as ah
from accounthealth.metrics.compute import running_aggregates
from accounthealth.project import CARRIED
from accounthealth.scoring.day_grid import DayGrid
from accounthealth.scoring.functions import Values
from accounthealth.scoring.grid import SEGMENT_MODEL, grid_query
from accounthealth.scoring.run import day_grid

from builders import account, make_project, placed_reads

FIRST, LAST = dt.date(2026, 3, 1), dt.date(2026, 3, 12)

MODEL = """
signals:
  users_7d: {distinct: events.user_id, window: 7d}
components:
  all:
    weight: 1
    metrics:
      n_3d: {count: events, window: 3d, score: {linear: {bad: 0, good: 3}}}
      qty_sum_5d: {sum: events.quantity, window: 5d, score: {linear: {bad: 0, good: 5}}}
      qty_avg: {avg: events.quantity, score: {linear: {bad: 0, good: 5}}}
      since_event: {days_since: events, score: {linear: {bad: 10, good: 0}}}
      since_login_4d: {days_since: events, where: "event = 'login'", window: 4d,
                       score: {linear: {bad: 4, good: 0}}}
      exported_5d: {exists: events, where: "event = 'export'", window: 5d, score: boolean}
      last_nps: {latest: surveys.score, score: {linear: {bad: 0, good: 10}}}
      open_p1: {count: tickets, where: "priority = 'P1'", active: true,
                score: {bands: {0: 100, 1: 0}}}
      per_seat: {ratio: [users_7d, licensed_seats], score: {percentile: {within: segment}}}
      trend: {change: {count: events, window: 2d}, score: {bands: {-50%: 0, 0%: 100}}}
      seats: {attribute: licensed_seats, score: {linear: {bad: 0, good: 10}}}
      arr: {attribute: arr, score: {linear: {bad: 0, good: 2000}}}
      renewal: {attribute: days_to_renewal, score: {linear: {bad: 0, good: 365}}}
      tenure: {attribute: tenure_days, score: {linear: {bad: 0, good: 365}}}
segments:
  enterprise: {when: "segment = 'enterprise'"}
  large: {when: "arr >= 1000"}
"""


def event(i: int, acc: str, day: int, event: str = "login", user: str = "u1", qty: str = "1"):
    return {
        "event_id": f"e{i}",
        "account_id": acc,
        "user_id": user,
        "event_time": f"2026-03-{day:02d} 09:00:00",
        "event": event,
        "quantity": qty,
    }


def contract(i: int, acc: str, start: str, end: str = "", arr: str = "500") -> dict:
    return {"contract_id": f"C{i}", "account_id": acc, "start_date": start, "end_date": end,
            "arr": arr}  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Not in id order: the grid places each by its position among the sorted ids.
    accounts = [
        account("A4", created_at="2026-03-06"),  # an account from the 6th
        account("A1", segment="enterprise", licensed_seats=4),
        account("A6"),  # no contracts: a customer with no ARR
        account("A2", licensed_seats=0),  # no seats: no users per seat
        account("A5"),  # its only contract ends on the 5th: not a customer from then
        account("A3", created_at=""),  # no creation date: always an account, no tenure
    ]
    contracts = [
        contract(1, "A1", "2025-01-01", "2026-12-31", "1200"),
        contract(2, "A1", "2026-03-04", "2026-03-09", "300"),  # live 4th to 8th
        contract(3, "A2", "2025-01-01"),  # no end: no renewal date
        contract(4, "A3", "2025-01-01", "2026-06-30", ""),  # no ARR
        contract(5, "A4", "2026-03-06", "2027-03-06", "900"),
        contract(6, "A5", "2025-01-01", "2026-03-05"),
        contract(7, "A9", "2025-01-01", "2026-12-31"),  # an account that is not there
    ]
    events = [
        event(1, "A1", 1),
        event(2, "A1", 2, "export", "u2", "3"),
        event(3, "A1", 2, user="u3", qty="nan"),
        event(4, "A1", 6, qty="inf"),
        event(5, "A2", 3, "export"),
        event(6, "A2", 9, user="u4", qty="2"),
        event(7, "A3", 5),
        event(8, "A4", 7, "export", "u5"),
        event(9, "A6", 11),
    ]
    tickets = [
        {"ticket_id": "T1", "account_id": "A1", "opened_at": "2026-03-03 08:00",
         "closed_at": "2026-03-08 08:00", "priority": "P1"},
        {"ticket_id": "T2", "account_id": "A2", "opened_at": "2026-03-05 08:00",
         "closed_at": "", "priority": "P1"},
    ]  # fmt: skip
    surveys = [
        {"response_id": "R1", "account_id": "A1", "responded_at": "2026-03-04 10:00",
         "kind": "nps", "score": 8},
        {"response_id": "R2", "account_id": "A3", "responded_at": "2026-03-08 10:00",
         "kind": "nps", "score": 3},
    ]  # fmt: skip
    folder = make_project(
        tmp_path_factory.mktemp("day_grid"),
        MODEL,
        {
            "accounts": accounts,
            "contracts": contracts,
            "events": events,
            "tickets": tickets,
            "surveys": surveys,
        },
    )
    with ah.open(folder) as p:
        p.ingest()
    return folder


def _dates() -> list[dt.date]:
    return [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]


# A backfill's days, and a run of one day (the daily run's, when it keeps running values).
@pytest.mark.parametrize("dates", [_dates(), [dt.date(2026, 3, 6)]], ids=["run", "one day"])
def test_each_day_is_the_grid_its_query_gives(project: Path, dates: list[dt.date]) -> None:
    with ah.open(project) as p:
        engine, model = p.compute, p.model
        in_memory = day_grid(engine, model, running_aggregates(engine, model, dates), p.query_cache)
        assert in_memory is not None, "the model's aggregates all run: the grid serves"
        queried = running_aggregates(engine, model, dates)
        for day in dates:
            grid, numbers = in_memory.numbered(day)
            # What scoring is handed as NumPy is what it would read back from the grid: every
            # metric column of integers or doubles, read-only as Arrow's own are.
            handed = {
                field.name
                for field in grid.schema
                if field.name.startswith("v__")
                and (pa.types.is_integer(field.type) or pa.types.is_float64(field.type))
            }
            assert handed and handed <= set(numbers)
            for name, values in numbers.items():
                read = Values.of(grid.column(name))
                assert values.data.dtype == np.float64 and not values.data.flags.writeable, name
                np.testing.assert_array_equal(values.null, read.null, err_msg=name)
                np.testing.assert_array_equal(values.data, read.data, err_msg=name)
                # No negative zero where Arrow reads back an integer's (1/-0 is -inf).
                assert not np.any(np.signbit(values.data) != np.signbit(read.data)), name
            mine = grid.sort_by("account_id")
            query = grid_query(engine, model, [day], running=queried.table([day]))
            theirs = engine.to_arrow(query).sort_by("account_id")
            assert mine.schema == theirs.schema, day
            assert mine.column("account_id").to_pylist() == theirs.column("account_id").to_pylist()
            for name in theirs.column_names:
                expected, got = theirs.column(name), mine.column(name)
                assert got.is_null().to_pylist() == expected.is_null().to_pylist(), (day, name)
                if pa.types.is_floating(expected.type):
                    np.testing.assert_allclose(
                        pc.fill_null(got, 0.0).to_numpy(),
                        pc.fill_null(expected, 0.0).to_numpy(),
                        rtol=1e-12,
                        err_msg=f"{day} {name}",
                    )
                else:
                    assert got.to_pylist() == expected.to_pylist(), (day, name)


def test_the_population_on_a_day(project: Path) -> None:
    # Hand-worked, so that the two ways cannot agree on a wrong population: on the 5th, A4
    # is not yet an account and A5's contract has ended; A1's second contract is live.
    dates = _dates()
    with ah.open(project) as p:
        engine, model = p.compute, p.model
        grid = day_grid(engine, model, running_aggregates(engine, model, dates), None)
        assert grid is not None
        for day in dates[:4]:
            grid.numbered(day)
        day_five = grid.numbered(dt.date(2026, 3, 5))[0]
        rows = {r["account_id"]: r for r in day_five.to_pylist()}
    assert sorted(rows) == ["A1", "A2", "A3", "A6"]
    assert rows["A1"]["arr"] == 1500 and rows["A1"]["days_to_renewal"] == 4  # ends on the 9th
    assert rows["A2"]["days_to_renewal"] is None and rows["A3"]["arr"] is None
    assert rows["A3"]["tenure_days"] is None and rows["A6"]["arr"] is None
    assert rows["A2"]["v__per_seat"] is None  # no seats
    # Segments: A1 by its segment, A2 (ARR 500) and A6 (none) by the default model.
    assert [rows[a]["_segment_model"] for a in ("A1", "A2", "A6")] == [0, 2, 2]


def test_a_model_with_an_aggregate_kept_otherwise_is_left_to_the_query(tmp_path: Path) -> None:
    # Distinct values of rows open on a date are not kept running (metrics/sliding.py).
    model = _one_component(
        "open_tickets: {count: tickets, active: true, score: boolean}",
        "open_priorities: {distinct: tickets.priority, active: true, score: boolean}",
    )
    folder = make_project(tmp_path / "p", model, {"accounts": [account("A1")], "tickets": []})
    with ah.open(folder) as p:
        p.ingest()
        assert _grid_of_run(p) is None


def test_an_account_id_held_twice_is_left_to_the_query(tmp_path: Path) -> None:
    # A table read in place may hold an id twice (ingest rejects it); the query then joins
    # both rows, which a grid by account position cannot.
    model = _one_component("n_3d: {count: events, window: 3d, score: boolean}")
    folder = make_project(
        tmp_path / "p", model, {"accounts": [account("A1"), account("A2")], "events": []}
    )
    with ah.open(folder) as p:
        p.ingest()
        assert _grid_of_run(p) is not None
        p.compute.sql("INSERT INTO accounts SELECT * FROM accounts WHERE account_id = 'A2'")
        assert _grid_of_run(p) is None


def _one_component(*metrics: str) -> str:
    """A model of one component holding ``metrics`` (YAML lines, ``name: {...}``)."""
    lines = "".join(f"      {metric}\n" for metric in metrics)
    return f"components:\n  all:\n    weight: 1\n    metrics:\n{lines}"


def _grid_of_run(p: ah.Project) -> DayGrid | None:
    """The in-memory grid of a run over the test's days, or None where the query serves."""
    running = running_aggregates(p.compute, p.model, _dates())
    return day_grid(p.compute, p.model, running, p.query_cache)


def test_the_daily_run_carrying_on_scores_its_day_as_the_query_does(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One copy scores the last day alone with the day's query (no running values kept);
    # the other backfills to the day before, and its daily run of the last day carries on
    # and works the grid out in memory.
    alone, daily = tmp_path / "alone", tmp_path / "daily"
    for folder in (alone, daily):
        shutil.copytree(project, folder)
        shutil.rmtree(folder / CARRIED, ignore_errors=True)
    with ah.open(alone) as p:
        p.score(LAST)
        expected = p.scores(LAST, LAST).set_index("account_id")
        expected_values = _metric_values(p, LAST)
    grids = []
    real = DayGrid.numbered
    monkeypatch.setattr(DayGrid, "numbered", lambda grid, day: grids.append(day) or real(grid, day))
    placed = placed_reads(monkeypatch)
    with ah.open(daily) as p:
        p.score(start=FIRST, end=LAST - dt.timedelta(days=1))
        grids.clear()
        placed.clear()
        report = p.score(LAST)
        got = p.scores(LAST, LAST).set_index("account_id")
        got_values = _metric_values(p, LAST)
    assert report.carried_from == LAST - dt.timedelta(days=1), report.not_carried
    assert grids == [LAST], "the daily run's grid is worked out in memory"
    # Its contracts (with no end, no ARR, one ending on a day of the run) as the run before
    # kept them, worked out: none read again.
    assert not any("arr" in columns for columns in placed), placed
    assert sorted(got.index) == sorted(expected.index)
    for column in ("tier", "segment_model"):
        assert got[column].to_dict() == expected[column].to_dict(), column
    for column in ("score", "arr", "days_to_renewal"):
        assert got[column].astype(float).to_dict() == pytest.approx(
            expected[column].astype(float).to_dict(), nan_ok=True
        ), column
    assert got_values == pytest.approx(expected_values, nan_ok=True)


def _metric_values(p: ah.Project, day: dt.date) -> dict[tuple[str, str], float]:
    table = p.store.table("metric_values")
    frame = p.store.execute(table.filter(table.as_of == day))
    return {(r.account_id, r.metric): float("nan") if r.value is None else float(r.value)
            for r in frame.itertuples()}  # fmt: skip


def test_a_backfill_scores_each_day_as_the_day_alone(project: Path) -> None:
    dates = _dates()
    with ah.open(project) as p:
        alone = {}
        for day in dates:
            p.score(day)
            alone[day] = p.scores(day, day).set_index("account_id")
        p.score(start=FIRST, end=LAST)
        for day in dates:
            run = p.scores(day, day).set_index("account_id")
            assert sorted(run.index) == sorted(alone[day].index), day
            for column in ("tier", "segment_model"):
                assert run[column].to_dict() == alone[day][column].to_dict(), (day, column)
            for column in ("score", "arr", "days_to_renewal"):
                expected = alone[day][column].astype(float).to_dict()
                got = run[column].astype(float).to_dict()
                assert got == pytest.approx(expected, nan_ok=True), (day, column)


def test_segments_of_account_columns_alone_are_labelled_by_a_query_compiled_once(
    project: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "co"
    shutil.copytree(project, folder)
    model = (folder / "model.yaml").read_text()
    (folder / "model.yaml").write_text(
        model.replace('large: {when: "arr >= 1000"}', 'small: {when: "licensed_seats < 5"}')
    )
    dates = _dates()
    with ah.open(folder) as p:
        engine, model = p.compute, p.model
        queried = running_aggregates(engine, model, dates)
        expected = {
            day: engine.to_arrow(grid_query(engine, model, [day], running=queried.table([day])))
            for day in dates
        }
        in_memory = day_grid(engine, model, running_aggregates(engine, model, dates), p.query_cache)
        assert in_memory is not None
        # Compiled and kept with the run's other queries, for the next run to take as it is.
        name = hashlib.sha256(b"segment labels of accounts").hexdigest()[:16]
        key = f"{p.query_cache.key(engine, model)}-read-{name}"
        assert p.query_cache.get(key) is not None
        for day in dates:
            mine = in_memory.numbered(day)[0].sort_by("account_id")
            theirs = expected[day].sort_by("account_id")
            assert mine.column(SEGMENT_MODEL).to_pylist() == (
                theirs.column(SEGMENT_MODEL).to_pylist()
            ), day
    labels = {label for table in expected.values() for label in table[SEGMENT_MODEL].to_pylist()}
    assert len(labels) == 3, "each segment, and the default, labels an account"
