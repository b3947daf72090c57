"""Property tests: a score as of D never sees data after D; scores stay in 0..100; tiers are
monotone in the score."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import accounthealth as ah

from builders import account, make_project

AS_OF = dt.date(2026, 3, 31)

# Every metric kind, so every code path is checked against the future.
MODEL = """
renewal: {within_days: 60, amplify: 1}
signals:
  users_28d: {distinct: events.user_id, window: 28d}
components:
  usage:
    weight: 50
    metrics:
      events_28d: {count: events, window: 28d, score: {linear: {bad: 0, good: 10}}}
      seats: {ratio: [users_28d, licensed_seats], score: {linear: {bad: 0, good: 1}}}
      trend: {change: {count: events, window: 14d}, score: {bands: {-50%: 0, 0%: 70, 50%: 100}}}
      volume: {sum: events.quantity, window: 60d, score: {percentile: {within: all}}}
      last: {days_since: events, score: {linear: {bad: 30, good: 0}}, missing: {default: 0}}
      latest_qty: {latest: events.quantity, score: {linear: {bad: 0, good: 5}}}
  support:
    weight: 50
    metrics:
      open_p1: {count: tickets, where: "priority = 'P1'", active: true,
                score: {bands: {0: 100, 1: 40, 2: 0}}}
      csat: {avg: tickets.csat, window: 90d, score: {linear: {bad: 1, good: 5}}}
      recent: {exists: tickets, window: 30d, score: {boolean: {true: 40, false: 100}}}
      tenure: {attribute: tenure_days, score: {linear: {bad: 0, good: 365}}}
"""

days = st.integers(min_value=-120, max_value=60)  # offset from AS_OF; > 0 is the future
events = st.lists(
    st.tuples(
        st.sampled_from(["A1", "A2", "A3"]),
        days,
        st.integers(0, 23),
        st.sampled_from(["u1", "u2", "u3"]),
        st.integers(1, 5),
    ),
    max_size=40,
)
tickets = st.lists(
    st.tuples(
        st.sampled_from(["A1", "A2", "A3"]),
        days,
        st.one_of(st.none(), st.integers(0, 40)),
        st.sampled_from(["P1", "P2"]),
        st.one_of(st.none(), st.integers(1, 5)),
    ),
    max_size=12,
)


def _rows(evs: list, tks: list) -> dict[str, list[dict]]:
    def at(offset: int, hour: int = 9) -> str:
        moment = dt.datetime.combine(AS_OF, dt.time(hour)) + dt.timedelta(days=offset)
        return moment.isoformat(sep=" ")

    return {
        "accounts": [account("A1"), account("A2", created_at="2025-11-01"), account("A3")],
        "contracts": [
            {
                "contract_id": f"C{a}",
                "account_id": a,
                "start_date": "2025-01-01",
                "end_date": "2026-05-01",
                "arr": 100,
            }
            for a in ("A1", "A2", "A3")
        ],
        "events": [
            {
                "event_id": f"e{i}",
                "account_id": a,
                "user_id": u,
                "event_time": at(d, h),
                "event": "login",
                "quantity": q,
            }
            for i, (a, d, h, u, q) in enumerate(evs)
        ],
        "tickets": [
            {
                "ticket_id": f"t{i}",
                "account_id": a,
                "opened_at": at(d),
                "closed_at": "" if c is None else at(d + c),
                "priority": p,
                "csat": "" if s is None else s,
            }
            for i, (a, d, c, p, s) in enumerate(tks)
        ],
    }


def _known_by(rows: dict[str, list[dict]], day: dt.date) -> dict[str, list[dict]]:
    """Only what was known at the end of ``day``: later rows dropped, later closes reopened."""
    cutoff = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    known = dict(rows)
    known["events"] = [
        r for r in rows["events"] if dt.datetime.fromisoformat(r["event_time"]) < cutoff
    ]
    known["tickets"] = [
        {
            **r,
            "closed_at": r["closed_at"]
            if r["closed_at"] and dt.datetime.fromisoformat(r["closed_at"]) < cutoff
            else "",
        }
        for r in rows["tickets"]
        if dt.datetime.fromisoformat(r["opened_at"]) < cutoff
    ]
    return known


def _scores(rows: dict[str, list[dict]]) -> dict[str, tuple]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_project(Path(tmp) / "p", MODEL, rows)
        with ah.open(folder) as project:
            project.ingest()
            project.score(AS_OF)
            frame = project.scores()
    return {
        r.account_id: (round(r.score, 9), r.tier, round(r.coverage, 9)) for r in frame.itertuples()
    }


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=events, tks=tickets)
def test_future_data_never_changes_a_past_score(evs: list, tks: list) -> None:
    rows = _rows(evs, tks)
    with_future = _scores(rows)
    without_future = _scores(_known_by(rows, AS_OF))
    assert with_future == without_future
    for score, tier, coverage in with_future.values():
        assert 0 <= score <= 100
        assert 0 <= coverage <= 1
        assert tier == ("Green" if score >= 70 else "Yellow" if score >= 40 else "Red")


def _metric_detail(project: ah.Project, days: list[dt.date]) -> dict[tuple, float | None]:
    table = project.store.table("metric_values")
    return {
        (r.account_id, r.as_of, r.metric): None if r.value != r.value else round(r.value, 9)
        for r in project.store.execute(table.filter(table.as_of.isin(days))).itertuples()
    }


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=events, tks=tickets, step=st.integers(3, 6))
def test_a_backfill_gives_what_each_day_alone_gives(evs: list, tks: list, step: int) -> None:
    # A backfill keeps running values from day to day (metrics/sliding.py) instead of reading
    # each day's rows again: rows entering and leaving windows, tickets opening and closing,
    # the latest row and the last day changing, on random data, must all come out as scoring
    # each day alone does (on every step-th day of the backfill, and its last).
    start, end = AS_OF - dt.timedelta(days=40), AS_OF + dt.timedelta(days=20)
    days = [start + dt.timedelta(days=i) for i in range(0, (end - start).days, step)] + [end]
    columns = ["account_id", "as_of", "score", "tier", "coverage"]

    def stored(project: ah.Project) -> tuple[dict, list]:
        frame = project.scores(start, end)
        frame = frame[frame["as_of"].isin(pd.to_datetime(days))]
        frame = frame.sort_values(["as_of", "account_id"])
        rows = frame[columns].round(9).itertuples(index=False)
        return _metric_detail(project, days), [tuple(r) for r in rows]

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_project(Path(tmp) / "p", MODEL, _rows(evs, tks))
        with ah.open(folder) as project:
            project.ingest()
            for day in days:
                project.score(day)
            alone = stored(project)
            project.score(start=start, end=end)
            backfill = stored(project)
    assert len(alone[0]) > 0
    assert backfill == alone
