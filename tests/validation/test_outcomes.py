"""Outcomes from contracts: churn when a customer spell ends with no successor, renewals
classed by ARR change, late renewals within the grace period, comebacks, pending ends."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from accounthealth.errors import DataError
from accounthealth.validation.outcomes import from_contracts, from_table

D = dt.date.fromisoformat


def contracts(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"account_id": a, "start_date": D(s), "end_date": D(e) if e else None, "arr": arr,
             "status": status}
            for a, s, e, arr, status in rows
        ]
    )  # fmt: skip


def outcomes_of(frame: pd.DataFrame, known: str = "2026-06-01", grace: int = 30) -> list:
    out = from_contracts(frame, D(known), grace)
    return [(r.account_id, str(r.date), r.outcome, r.amount) for r in out.itertuples()]


def test_a_spell_that_ends_with_no_successor_is_a_churn_of_its_arr() -> None:
    got = outcomes_of(contracts(("A", "2025-01-01", "2026-01-01", 100.0, "churned")))
    assert got == [("A", "2026-01-01", "churned", -100.0)]


def test_renewals_signed_late_continue_the_spell_and_are_classed_by_arr() -> None:
    got = outcomes_of(
        contracts(
            ("A", "2024-01-01", "2025-01-01", 100.0, "renewed"),
            ("A", "2025-01-20", "2026-01-20", 120.0, "renewed"),  # 19 days late: a renewal
            ("A", "2026-01-20", "2027-01-20", 90.0, "active"),
            ("B", "2025-01-01", "2026-01-01", 50.0, "renewed"),
            ("B", "2026-01-01", "2027-01-01", 50.0, "active"),
        )
    )
    assert got == [
        ("A", "2025-01-01", "expanded", 120.0 - 100.0),
        ("A", "2026-01-20", "contracted", 90.0 - 120.0),
        ("B", "2026-01-01", "renewed", 0.0),
    ]


def test_an_account_that_comes_back_churned_once_and_starts_again() -> None:
    got = outcomes_of(
        contracts(
            ("A", "2024-01-01", "2025-01-01", 100.0, "churned"),
            ("A", "2025-06-01", "2026-06-01", 80.0, "active"),  # back after 5 months
        ),
        known="2026-03-01",
    )
    assert got == [("A", "2025-01-01", "churned", -100.0)]


def test_a_recent_end_is_not_a_churn_until_the_grace_period_passes() -> None:
    ended = contracts(("A", "2025-05-20", "2026-05-20", 100.0, "active"))
    assert outcomes_of(ended, known="2026-06-01") == []
    assert outcomes_of(ended, known="2026-06-19") == [("A", "2026-05-20", "churned", -100.0)]
    # A status that says so confirms it at once; an end after the known date is no outcome.
    confirmed = contracts(("A", "2025-05-20", "2026-05-20", 100.0, "Churned"))
    assert outcomes_of(confirmed, known="2026-06-01") == [("A", "2026-05-20", "churned", -100.0)]
    assert outcomes_of(confirmed, known="2026-05-19") == []


def test_overlapping_contracts_churn_when_the_last_one_ends() -> None:
    got = outcomes_of(
        contracts(
            ("A", "2025-01-01", "2025-12-01", 60.0, "active"),
            ("A", "2025-03-01", "2026-03-01", 40.0, "churned"),
        )
    )
    # The first contract ends inside the spell: a contraction from 100 to 40.
    assert got == [("A", "2025-12-01", "contracted", -60.0), ("A", "2026-03-01", "churned", -40.0)]


def test_an_open_ended_contract_never_churns() -> None:
    assert outcomes_of(contracts(("A", "2020-01-01", None, 10.0, "active"))) == []


def test_an_outcomes_table_with_an_unknown_outcome_names_the_row() -> None:
    table = pd.DataFrame(
        {"account_id": ["A", "B"], "date": [D("2026-01-01")] * 2, "outcome": ["Churned", "lost"]}
    )
    with pytest.raises(DataError) as err:
        from_table(table, D("2026-06-01"))
    assert "unknown outcome 'lost'" in err.value.message
    assert "account B" in err.value.message and "churned, renewed" in err.value.message
    ok = from_table(table.iloc[:1], D("2026-06-01"))
    assert ok["outcome"].tolist() == ["churned"]
    assert from_table(table.iloc[:1], D("2025-12-31")).empty  # not known yet
