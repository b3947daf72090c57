"""Observations: an account's score on an observation date, paired with what happened after it
and nothing else.

An observation is *positive* when the account churned within the horizon after the date, and
*known* when it churned or the whole horizon lies before the day outcomes are known until;
the rest are censored (too recent to tell) and left out of the horizon figures, but kept for
the concordance index as censored survival times. An account is observed only while it is a
customer: after a churn and before its next renewal or contract it has nothing to lose.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from accounthealth.validation.outcomes import RETAINED


def _next(obs: pd.DataFrame, events: pd.DataFrame, outcome: str) -> np.ndarray:
    """For each observation (sorted by _t), the date of the account's next ``outcome`` strictly
    after it (NaT when none)."""
    dates = events.loc[events["outcome"] == outcome, ["account_id", "_d"]]
    found = pd.merge_asof(
        obs[["_t", "account_id"]],
        dates.assign(_at=dates["_d"]),
        left_on="_t",
        right_on="_d",
        by="account_id",
        direction="forward",
        allow_exact_matches=False,
    )
    return found["_at"].to_numpy()


def label(
    scores: pd.DataFrame, outcomes: pd.DataFrame, horizon: int, known_until: dt.date
) -> pd.DataFrame:
    """Add churn_date (next churn after the date), churned (within ``horizon`` days),
    contracted (renewed at lower ARR within the horizon, without churning), known, duration
    (days to churn or to ``known_until``) and event to each scored account-date."""
    obs = scores.copy()
    obs["_t"] = pd.to_datetime(obs["as_of"])
    obs = obs.sort_values("_t").reset_index(drop=True)
    events = outcomes.assign(_d=pd.to_datetime(outcomes["date"])).sort_values("_d")
    obs["churn_date"] = _next(obs, events, "churned")
    # Partial churn: the next contraction (a renewal at lower ARR) after the date.
    obs["_shrink"] = _next(obs, events, "contracted")
    # The latest outcome on or before the date: a churn with no comeback since means the
    # account is not a customer on that date (possible with an outcomes table).
    prev = pd.merge_asof(
        obs[["_t", "account_id"]],
        events[["account_id", "_d", "outcome"]],
        left_on="_t",
        right_on="_d",
        by="account_id",
        direction="backward",
    )
    lapsed = prev["outcome"].eq("churned").fillna(False).to_numpy(dtype=bool)
    obs = obs[~lapsed].reset_index(drop=True)
    known = pd.Timestamp(known_until)
    end = obs["_t"] + pd.Timedelta(days=horizon)
    obs["churned"] = obs["churn_date"].notna() & (obs["churn_date"] <= end)
    obs["contracted"] = ~obs["churned"] & obs["_shrink"].notna() & (obs["_shrink"] <= end)
    obs["known"] = obs["churned"] | (end <= known)
    obs["event"] = obs["churn_date"].notna() & (obs["churn_date"] <= known)
    stop = obs["churn_date"].where(obs["event"], known)
    obs["duration"] = (stop - obs["_t"]).dt.days.astype(float)
    obs["churn_date"] = obs["churn_date"].dt.date
    return (
        obs.drop(columns=["_t", "_shrink"])
        .sort_values(["as_of", "account_id"])
        .reset_index(drop=True)
    )


def before_outcomes(
    scores: pd.DataFrame, outcomes: pd.DataFrame, days: tuple[int, ...], every: int
) -> pd.DataFrame:
    """Each outcome (churn or renewal) with the account's score and tier ``days`` before it:
    the last scored date on or before that day, if it is less than ``every`` days earlier."""
    events = outcomes.assign(
        _d=pd.to_datetime(outcomes["date"]),
        retained=outcomes["outcome"].isin(RETAINED),
    )
    observed = scores[["account_id", "as_of", "score", "tier", "segment_model"]].assign(
        _t=lambda f: pd.to_datetime(f["as_of"])
    )
    observed = observed.sort_values("_t")
    parts = []
    for k in days:
        target = events.assign(_at=events["_d"] - pd.Timedelta(days=k), days_before=k)
        target = target.sort_values("_at")
        hit = pd.merge_asof(
            target,
            observed.drop(columns=["as_of"]),
            left_on="_at",
            right_on="_t",
            by="account_id",
            direction="backward",
            tolerance=pd.Timedelta(days=every - 1),
        )
        parts.append(hit)
    out = pd.concat(parts, ignore_index=True)
    return out.drop(columns=["_d", "_at", "_t"])
