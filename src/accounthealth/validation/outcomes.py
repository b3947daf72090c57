"""What happened to each account: churn and renewal outcomes, from contracts or from an
`outcomes` table.

From contracts, an account's contracts are merged into customer spells: a contract that starts
within ``grace`` days of the previous one's end continues the spell (a renewal signed late).
A spell that ends is a churn on its end date, once ``grace`` days have passed with no
successor (or at once when the last contract's status says it churned). Every other contract
end inside a spell is a renewal, classed as expanded or contracted when the live ARR after it
differs from the ARR before it. An account that churns and signs again later starts a new spell.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from accounthealth.errors import DataError

OUTCOMES = ("churned", "renewed", "expanded", "contracted")
RETAINED = ("renewed", "expanded", "contracted")
# Contract statuses that confirm a churn before the grace period has passed.
CHURN_STATUSES = frozenset({"churned", "cancelled", "canceled", "terminated", "lost"})
COLUMNS = ["account_id", "date", "outcome", "amount"]


def _live_arr(contracts: pd.DataFrame, points: pd.DataFrame) -> pd.Series:
    """ARR of each (account_id, day) in ``points`` summed over the contracts live that day."""
    pairs = points[["account_id", "day"]].reset_index().merge(contracts, on="account_id")
    live = (pairs["start_date"] <= pairs["day"]) & (
        pairs["end_date"].isna() | (pairs["end_date"] > pairs["day"])
    )
    arr = pairs[live].groupby("index")["arr"].sum()
    return arr.reindex(points.index, fill_value=0.0)


def from_contracts(contracts: pd.DataFrame, known_until: dt.date, grace: int = 30) -> pd.DataFrame:
    """Churn and renewal outcomes known on ``known_until`` (one row per account and date)."""
    c = contracts[["account_id", "start_date", "end_date", "arr", "status"]].copy()
    if c.empty:
        return pd.DataFrame(columns=COLUMNS)
    c["start_date"] = pd.to_datetime(c["start_date"])
    c["end_date"] = pd.to_datetime(c["end_date"])
    c["arr"] = pd.to_numeric(c["arr"]).fillna(0.0)
    c["status"] = c["status"].astype("string").str.lower()
    c = c.sort_values(["account_id", "start_date", "end_date"]).reset_index(drop=True)
    # An open-ended contract: far enough to never end, near enough to add days to.
    far = pd.Timestamp("2200-01-01")
    ends = c["end_date"].fillna(far)
    # The furthest end of the account's earlier contracts: a gap longer than grace after it
    # starts a new spell.
    reach = ends.groupby(c["account_id"]).cummax().groupby(c["account_id"]).shift()
    gap = (c["start_date"] - reach).dt.days
    new_spell = reach.isna() | (gap > grace)
    c["spell"] = new_spell.cumsum()
    c["_end"] = ends
    spells = c.groupby("spell").agg(account_id=("account_id", "first"), end=("_end", "max"))
    last = c.sort_values("_end").groupby("spell").tail(1).set_index("spell")
    spells["confirmed"] = last["status"].isin(CHURN_STATUSES).fillna(False)
    known = pd.Timestamp(known_until)
    ended = (spells["end"] <= known) & (
        spells["confirmed"] | (spells["end"] + pd.Timedelta(days=grace) <= known)
    )
    churns = spells[ended].reset_index()
    churn_arr = _live_arr(
        c, churns.assign(day=churns["end"] - pd.Timedelta(days=1))[["account_id", "day"]]
    )
    churn_rows = pd.DataFrame(
        {
            "account_id": churns["account_id"],
            "date": churns["end"],
            "outcome": "churned",
            "amount": -churn_arr.to_numpy(),
        }
    )
    # Renewals: a contract end inside a spell, with the spell going on after it.
    inner = c[c["end_date"].notna() & (c["end_date"] <= known)]
    inner = inner.merge(spells["end"].rename("spell_end"), left_on="spell", right_index=True)
    inner = inner[inner["end_date"] < inner["spell_end"]]
    points = inner[["account_id", "spell", "end_date"]].drop_duplicates()
    points = points.rename(columns={"end_date": "day"}).reset_index(drop=True)
    before = _live_arr(c, points.assign(day=points["day"] - pd.Timedelta(days=1)))
    # After a renewal signed late (a gap within grace), the ARR is the successor's.
    starts = points.reset_index().merge(c[["spell", "start_date"]], on="spell")
    starts = starts[starts["start_date"] >= starts["day"]].groupby("index")["start_date"].min()
    live_on_day = _live_arr(c, points) > 0
    points["day_after"] = points["day"].where(live_on_day, starts.reindex(points.index))
    after = _live_arr(c, points[["account_id"]].assign(day=points["day_after"]))
    change = (after - before).to_numpy()
    tolerance = 1e-9 * np.maximum(before.abs().to_numpy(), 1.0)
    outcome = np.where(
        change > tolerance, "expanded", np.where(change < -tolerance, "contracted", "renewed")
    )
    renewal_rows = pd.DataFrame(
        {"account_id": points["account_id"], "date": points["day"], "outcome": outcome}
    ).assign(amount=change)
    out = pd.concat([churn_rows, renewal_rows], ignore_index=True)
    out["date"] = out["date"].dt.date
    return out.sort_values(["account_id", "date"]).reset_index(drop=True)[COLUMNS]


def from_table(outcomes: pd.DataFrame, known_until: dt.date) -> pd.DataFrame:
    """Outcomes given directly (the canonical `outcomes` table), checked and normalised."""
    out = outcomes[["account_id", "date", "outcome"]].copy()
    out["amount"] = outcomes.get("amount", np.nan)
    out["outcome"] = out["outcome"].astype("string").str.strip().str.lower()
    bad = out[~out["outcome"].isin(OUTCOMES)]
    if not bad.empty:
        first = bad.iloc[0]
        raise DataError(
            f"unknown outcome '{first['outcome']}' ({len(bad)} row(s))",
            where=f"outcomes table, account {first['account_id']}, date {first['date']}",
            fix=f"use one of: {', '.join(OUTCOMES)}",
        )
    out["date"] = pd.to_datetime(out["date"]).dt.date
    out = out[out["date"] <= known_until]
    return out.sort_values(["account_id", "date"]).reset_index(drop=True)[COLUMNS]
