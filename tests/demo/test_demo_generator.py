"""The demo generator: reproducible, never in the future, and churn follows the signals."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from accounthealth.demo.generator import generate

END = dt.date(2026, 6, 30)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    generate(folder, accounts=400, years=2, end=END, seed=3)
    return folder / "data"


def test_same_seed_same_bytes(data: Path, tmp_path: Path) -> None:
    generate(tmp_path, accounts=400, years=2, end=END, seed=3)
    for file in data.iterdir():
        assert (tmp_path / "data" / file.name).read_bytes() == file.read_bytes(), file.name


def test_nothing_after_the_end_date(data: Path) -> None:
    events = pd.read_parquet(data / "product_events.parquet")
    assert events["ts"].max() < pd.Timestamp(END + dt.timedelta(days=1))
    tickets = pd.read_csv(data / "tickets.csv")
    opened = pd.to_datetime(tickets["opened_at"], errors="coerce").dropna()
    assert opened.max() < pd.Timestamp(END + dt.timedelta(days=1))


def test_churned_accounts_go_quiet_and_signals_differ(data: Path) -> None:
    contracts = pd.read_csv(data / "contracts.csv", parse_dates=["start_date", "end_date"])
    events = pd.read_parquet(data / "product_events.parquet")
    last = contracts.sort_values("end_date").groupby("account_id").tail(1)
    churned = last[last["status"] == "churned"]
    assert 0.05 < len(churned) / len(last) < 0.5
    after = events.merge(churned, left_on="company_id", right_on="account_id")
    assert (after["ts"] >= after["end_date"]).sum() == 0
    # Usage in the 60 days before a renewal decision is lower for accounts that churned.
    decided = contracts[contracts["status"].isin(["churned", "renewed"])]
    usage = []
    for row in decided.itertuples():
        window = events[
            (events["company_id"] == row.account_id)
            & (events["ts"] >= row.end_date - pd.Timedelta(days=90))
            & (events["ts"] < row.end_date - pd.Timedelta(days=30))
        ]
        usage.append(window["user_id"].nunique() / row.seats)
    decided = decided.assign(usage=usage)
    means = decided.groupby("status")["usage"].mean()
    assert means["churned"] < 0.8 * means["renewed"]


def test_bad_rows_are_present(data: Path) -> None:
    tickets = pd.read_csv(data / "tickets.csv", dtype=str)
    assert set(tickets["ticket_id"].dropna()) >= {"T-BAD-1", "T-BAD-2", "T-BAD-3"}
    assert tickets["ticket_id"].isna().sum() == 1
