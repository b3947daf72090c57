"""The override review: per CSM, overrides active, expired and removed, how far they moved
health, and, once outcomes are known, whether the override or the computed score was right.

An override that made health worse was right when the account churned within the horizon after
it started, and the computed score was right when the account stayed; the reverse for one that
made health better. Until the horizon has passed without a churn, it is not judged.
"""

from __future__ import annotations

import datetime as dt
import typing as t

import numpy as np
import pandas as pd

from accounthealth.actions.overrides import tier_rank
from accounthealth.engine.base import Engine
from accounthealth.metrics.definitions import ResolvedModel


def review(
    store: Engine,
    resolved: ResolvedModel,
    outcomes: pd.DataFrame,
    known_until: dt.date,
    today: dt.date,
    horizon: int = 90,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per override, one row per author). ``outcomes`` has account_id, date and
    outcome ('churned', ...) as known on ``known_until``."""
    found = store.execute(store.table("overrides").order_by("created_at"))
    if found.empty:
        return found, pd.DataFrame()
    scores = store.table("scores")
    over = scores.filter(scores.override_id.notnull())
    moved = store.execute(
        over.group_by("override_id").aggregate(
            days=over.count(),
            points=(over.score - over.computed_score).mean(),
            first_tier=over.computed_tier.first(),
            segment_model=over.segment_model.first(),
        )
    )
    rows = found.merge(moved, on="override_id", how="left")
    for column in ("starts_on", "expires_on"):
        rows[column] = pd.to_datetime(rows[column]).dt.date
    removed = pd.to_datetime(rows["removed_at"]).dt.date
    ends = [
        min(e, r) if pd.notna(r) else e for e, r in zip(rows["expires_on"], removed, strict=True)
    ]
    rows["state"] = np.select(
        [rows["removed_at"].notna(), [e <= today for e in ends]],
        ["removed", "expired"],
        "active",
    )
    rows["direction"] = [_direction(resolved, r) for r in rows.itertuples()]
    churns = outcomes[outcomes["outcome"] == "churned"]
    churn_dates = churns.groupby("account_id")["date"].apply(
        lambda d: sorted(pd.to_datetime(d).dt.date)
    )
    rows["outcome"] = [
        _outcome(churn_dates.get(r.account_id, []), r.starts_on, horizon, known_until)
        for r in rows.itertuples()
    ]
    rows["right"] = [
        None if o is None or d == 0 else "override" if (d < 0) == (o == "churned") else "computed"
        for o, d in zip(rows["outcome"], rows["direction"], strict=True)
    ]
    by_author = rows.groupby("author").agg(
        active=("state", lambda s: int((s == "active").sum())),
        expired=("state", lambda s: int((s == "expired").sum())),
        removed=("state", lambda s: int((s == "removed").sum())),
        mean_points=("points", "mean"),
        judged=("right", lambda s: int(s.notna().sum())),
        override_right=("right", lambda s: int((s == "override").sum())),
        computed_right=("right", lambda s: int((s == "computed").sum())),
    )
    return rows, by_author.reset_index()


def _direction(resolved: ResolvedModel, row: t.Any) -> int:
    """-1 when the override made health worse, +1 better, 0 unchanged or not yet scored."""
    if row.target == "tier":
        computed, segment = row.first_tier, row.segment_model
        if not isinstance(computed, str) or not isinstance(segment, str):
            return 0
        ranks = tier_rank(resolved, segment)
        diff = ranks.get(row.tier, 0) - ranks.get(computed, 0)
        return -1 if diff > 0 else 1 if diff < 0 else 0
    points = row.points
    if points is None or pd.isna(points) or points == 0:
        return 0
    return -1 if points < 0 else 1


def _outcome(
    churns: list[dt.date], start: dt.date, horizon: int, known_until: dt.date
) -> str | None:
    """'churned' within the horizon after ``start``, 'stayed' when the horizon has passed
    without a churn, None when it is too early to tell."""
    end = start + dt.timedelta(days=horizon)
    if any(start < c <= end for c in churns):
        return "churned"
    return "stayed" if end <= known_until else None
