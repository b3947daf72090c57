"""Every metric kind, filter, window and 'active' option against values worked out by hand,
on every engine (DuckDB, PostgreSQL, Spark)."""

from __future__ import annotations

import datetime as dt
import typing as t
from pathlib import Path

import pytest

import accounthealth as ah

from builders import account, make_project

AS_OF = dt.date(2026, 3, 31)

MODEL = """
signals:
  users_28d: {distinct: events.user_id, window: 28d}
components:
  all:
    weight: 1
    metrics:
      n_events: {count: events, score: boolean}
      n_28d: {count: events, window: 28d, score: boolean}
      logins_28d: {count: events, where: "event = 'login'", window: 28d, score: boolean}
      users: {distinct: events.user_id, window: 28d, score: boolean}
      qty_sum: {sum: events.quantity, window: 28d, score: boolean}
      csat_avg: {avg: tickets.csat, score: boolean}
      nps_latest: {latest: surveys.score, where: "kind = 'nps'", score: boolean}
      since_event: {days_since: events, score: boolean}
      since_left: {days_since: contacts.left_at, score: boolean}
      champion: {exists: contacts, where: "is_champion", active: true, score: boolean}
      seats: {attribute: licensed_seats, score: boolean}
      arr: {attribute: arr, score: boolean}
      renewal: {attribute: days_to_renewal, score: boolean}
      tenure: {attribute: tenure_days, score: boolean}
      per_seat: {ratio: [users_28d, licensed_seats], score: boolean}
      per_ticket: {ratio: [users_28d, {count: tickets, window: 7d}], score: boolean}
      trend: {change: {count: events, window: 14d}, score: boolean}
      open_p1: {count: tickets, where: "priority = 'P1'", active: true, score: boolean}
      overdue: {count: invoices, active: true, time: due_at, until: paid_at, score: boolean}
      qty_avg_28d: {avg: events.quantity, window: 28d, score: boolean}
      exported_7d: {exists: events, where: "event = 'export'", window: 7d, score: boolean}
      since_login_14d: {days_since: events, where: "event = 'login'", window: 14d, score: boolean}
      nps_latest_30d: {latest: surveys.score, window: 30d, score: boolean}
      events_seen_5d: {distinct: events.event, window: 5d, score: boolean}
      open_priorities: {distinct: tickets.priority, active: true, score: boolean}
"""


def ev(i: int, acc: str, when: str, user: str = "u1", event: str = "login", qty: int = 1) -> dict:
    return {
        "event_id": f"e{i}",
        "account_id": acc,
        "user_id": user,
        "event_time": when,
        "event": event,
        "quantity": qty,
    }


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, new_compute: t.Callable[[], dict | None]
) -> Path:
    events = [
        ev(1, "A1", "2026-01-10 09:00:00", "u1"),  # outside 28d, inside all history
        ev(2, "A1", "2026-03-10 09:00:00", "u1", "export", 5),  # previous 14d window
        ev(3, "A1", "2026-03-20 09:00:00", "u2"),  # current 14d window
        ev(4, "A1", "2026-03-29 09:00:00", "u3", "export", 2),
        ev(5, "A1", "2026-03-31 23:59:00", "u2"),  # last minute of the as-of day: counts
        ev(6, "A1", "2026-04-01 00:00:00", "u9"),  # the next day: never counts
        ev(7, "A2", "2026-03-25 12:00:00", "u1"),
    ]
    tickets = [
        {
            "ticket_id": "T1",
            "account_id": "A1",
            "opened_at": "2026-03-01 08:00",
            "closed_at": "2026-03-02 08:00",
            "priority": "P1",
            "csat": 2,
        },
        {
            "ticket_id": "T2",
            "account_id": "A1",
            "opened_at": "2026-03-30 08:00",
            "closed_at": "2026-04-02 08:00",
            "priority": "P1",
            "csat": 4,
        },  # open on the 31st
        {
            "ticket_id": "T3",
            "account_id": "A1",
            "opened_at": "2026-03-31 08:00",
            "closed_at": "2026-03-31 12:00",
            "priority": "P1",
        },  # closed the same day
    ]
    surveys = [
        {
            "response_id": "R1",
            "account_id": "A1",
            "responded_at": "2026-02-01 10:00",
            "kind": "nps",
            "score": 9,
        },
        {
            "response_id": "R2",
            "account_id": "A1",
            "responded_at": "2026-03-15 10:00",
            "kind": "nps",
            "score": 6,
        },
        {
            "response_id": "R3",
            "account_id": "A1",
            "responded_at": "2026-03-20 10:00",
            "kind": "csat",
            "score": 5,
        },
        {
            "response_id": "R4",
            "account_id": "A1",
            "responded_at": "2026-04-05 10:00",
            "kind": "nps",
            "score": 0,
        },
    ]
    contacts = [
        {
            "contact_id": "P1",
            "account_id": "A1",
            "is_champion": "true",
            "started_at": "2025-01-01",
            "left_at": "2026-03-21",
        },
        {
            "contact_id": "P2",
            "account_id": "A2",
            "is_champion": "true",
            "started_at": "2025-01-01",
            "left_at": "2026-05-01",
        },
    ]
    invoices = [
        {
            "invoice_id": "I1",
            "account_id": "A1",
            "issued_at": "2026-02-01",
            "due_at": "2026-03-01",
            "paid_at": "",
        },  # overdue
        {
            "invoice_id": "I2",
            "account_id": "A1",
            "issued_at": "2026-02-15",
            "due_at": "2026-03-15",
            "paid_at": "2026-03-20",
        },  # paid
        {
            "invoice_id": "I3",
            "account_id": "A2",
            "issued_at": "2026-03-15",
            "due_at": "2026-04-15",
            "paid_at": "",
        },  # not yet due
    ]
    contracts = [
        {
            "contract_id": "C1",
            "account_id": "A1",
            "start_date": "2025-06-01",
            "end_date": "2026-06-01",
            "arr": 1200,
        },
        {
            "contract_id": "C2",
            "account_id": "A1",
            "start_date": "2026-01-01",
            "end_date": "2026-12-31",
            "arr": 300,
        },
        {
            "contract_id": "C3",
            "account_id": "A2",
            "start_date": "2025-01-01",
            "end_date": "2026-04-30",
            "arr": 500,
        },
        {
            "contract_id": "C4",
            "account_id": "A3",
            "start_date": "2025-01-01",
            "end_date": "2026-03-31",
            "arr": 500,
        },  # ended on the as-of date: not a customer
    ]
    accounts = [
        account("A1", licensed_seats=4, created_at="2025-06-01"),
        account("A2", licensed_seats=0, created_at="2025-01-01"),
        account("A3"),
        account("A4", created_at="2026-04-01"),  # created after the as-of date
    ]
    folder = make_project(
        tmp_path_factory.mktemp("kinds"),
        MODEL,
        {
            "accounts": accounts,
            "contracts": contracts,
            "events": events,
            "tickets": tickets,
            "surveys": surveys,
            "contacts": contacts,
            "invoices": invoices,
        },
        compute=new_compute(),
    )
    with ah.open(folder) as p:
        p.ingest()
    return folder


def stored_values(p: ah.Project, as_of: dt.date) -> dict[str, dict[str, float | None]]:
    table = p.store.table("metric_values")
    frame = p.store.execute(table.filter(table.as_of == as_of))
    out: dict[str, dict[str, float | None]] = {}
    for r in frame.itertuples():
        out.setdefault(r.account_id, {})[r.metric] = None if r.value != r.value else r.value
    return out


@pytest.fixture(scope="module")
def values(project: Path) -> dict[str, dict[str, float | None]]:
    with ah.open(project) as p:
        p.score(AS_OF)
        return stored_values(p, AS_OF)


@pytest.mark.parametrize("batch_days", [None, 11])
def test_a_batch_of_dates_reads_what_each_date_alone_reads(
    project: Path, batch_days: int | None
) -> None:
    # A backfill keeps running values over its days (on DuckDB; metrics/sliding.py) and pairs
    # rows with dates for the rest (open_priorities; PostgreSQL and Spark: every aggregate),
    # bounding rows differently per kind (windows, rows still open, each account's last row
    # before the batch): every kind must come out as each date alone gives it, day by day
    # (batch_days None) and in batches of 11 days.
    # Dates on which a row has just left a window (28d: Mar 10 + 28 = Apr 7; 14d: Mar 20 + 14;
    # 7d and 5d: Mar 29 + 7, Mar 29 + 5) or just entered one.
    dates = [dt.date(2026, 3, 2), dt.date(2026, 3, 15), AS_OF]
    dates += [dt.date(2026, 4, day) for day in (1, 2, 3, 5, 7)]
    with ah.open(project) as p:
        alone = {}
        for day in dates:
            p.score(day)
            alone[day] = stored_values(p, day)
        p.score(start=dt.date(2026, 3, 1), end=dt.date(2026, 4, 8), batch_days=batch_days)
        for day in dates:
            batch = stored_values(p, day)
            for account_id, metrics in alone[day].items():
                assert batch[account_id] == pytest.approx(metrics), (day, account_id)
            assert batch.keys() == alone[day].keys()


def test_population_is_customers_on_the_date(values: dict) -> None:
    # A3's only contract ended on the as-of date; A4 was created the day after.
    assert sorted(values) == ["A1", "A2"]


@pytest.mark.parametrize(
    ("metric", "a1", "a2"),
    [
        ("n_events", 5, 1),  # e1..e5; e6 is the next day
        ("n_28d", 4, 1),  # (Mar 3, Mar 31]: e2..e5
        ("logins_28d", 2, 1),  # e3, e5
        ("users", 3, 1),  # u1, u2, u3
        ("qty_sum", 9, 1),  # 5 + 1 + 2 + 1
        ("csat_avg", 3, None),  # (2 + 4) / 2; T3 has no csat; A2 has no tickets
        ("nps_latest", 6, None),  # R2; R3 is csat, R4 is in the future
        ("since_event", 0, 6),  # A1 last on the 31st; A2 on the 25th
        ("since_left", 10, None),  # P1 left Mar 21; P2 leaves in the future
        ("champion", 0, 1),  # P1 has left; P2 still there on the date
        ("seats", 4, 0),
        ("arr", 1500, 500),  # both A1 contracts are live
        ("renewal", 62, 30),  # A1: June 1; A2: April 30
        ("tenure", 303, 454),
        ("per_seat", 0.75, None),  # 3 users / 4 seats; A2 has 0 seats -> no value
        ("per_ticket", 1.5, None),  # 3 users / 2 tickets opened in 7 days (T2, T3)
        # (Mar 17, Mar 31]: e3,e4,e5 = 3 vs (Mar 3, Mar 17]: e2 = 1 -> (3-1)/1; A2: 1 vs 0 -> none
        ("trend", 2.0, None),
        ("open_p1", 1, 0),  # T2 open; T1 closed; T3 opened and closed the same day
        ("overdue", 1, 0),  # I1 due Mar 1 and unpaid; I2 paid; I3 not yet due
        ("open_priorities", 1, 0),  # T2's P1: the only ticket open on the date
    ],
)
def test_metric_values(values: dict, metric: str, a1: float | None, a2: float | None) -> None:
    assert values["A1"][metric] == (None if a1 is None else pytest.approx(a1))
    assert values["A2"][metric] == (None if a2 is None else pytest.approx(a2))
