"""The stable tier that rules act on: a score that wobbles around a tier bound does not move it.

It changes only when the score passes the bound by the hysteresis margin and stays in the new
tier ``min_days`` days in a row. One call advances every account by one day, vectorised.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from accounthealth.config.playbooks import Stability
from accounthealth.metrics.definitions import ResolvedModel

STATE_COLUMNS = ("stable_tier", "stable_since", "previous_tier", "pending_tier", "pending_days")
# Without stability: every tier change counts at once.
NO_STABILITY = Stability(hysteresis=0, min_days=1, cooldown=1)


def tier_bounds(resolved: ResolvedModel) -> dict[tuple[str, str], tuple[float, float]]:
    """(segment model, tier) -> the tier's score range [low, high)."""
    bounds = {}
    for seg in resolved.segments:
        ordered = sorted(seg.tiers, key=lambda tier: -tier.min)
        high = np.inf
        for tier in ordered:
            bounds[(seg.segment, tier.name)] = (tier.min, high)
            high = tier.min
        spec = resolved.model.trend_tiers
        if spec is not None and (seg.segment, spec.split) in bounds:
            # The 4-tier split: Stable and Declining share the middle tier's range.
            for name in (spec.stable, spec.declining):
                bounds[(seg.segment, name)] = bounds[(seg.segment, spec.split)]
    return bounds


def empty_states() -> pd.DataFrame:
    """No account has a stable tier yet."""
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in STATE_COLUMNS})
    frame["pending_days"] = frame["pending_days"].astype("int64")
    return frame.rename_axis("account_id")


def advance(
    states: pd.DataFrame,
    today: pd.DataFrame,
    day: dt.date,
    bounds: dict[tuple[str, str], tuple[float, float]],
    stability: Stability,
) -> pd.DataFrame:
    """The states after ``day``: ``states`` and ``today`` (score, tier, segment_model) are
    indexed by account_id. Accounts not scored today keep their state; an account seen for the
    first time starts in its tier with no previous one (it entered nothing)."""
    known = today.index.intersection(states.index)
    new = today.index.difference(states.index)
    prev = states.loc[known]
    cur = today.loc[known]
    stable = prev["stable_tier"].to_numpy(object)
    raw = cur["tier"].to_numpy(object)
    score = cur["score"].to_numpy(float)
    candidate = _candidate(
        stable, raw, score, cur["segment_model"].to_numpy(object), bounds, stability.hysteresis
    )
    changing = candidate != stable
    pending_tier = prev["pending_tier"].to_numpy(object)
    same = changing & (pending_tier == candidate)
    days = np.where(same, prev["pending_days"].to_numpy(int) + 1, np.where(changing, 1, 0))
    confirm = changing & (days >= stability.min_days)
    since = np.array([day - dt.timedelta(days=int(n) - 1) for n in days], dtype=object)
    out = pd.DataFrame(
        {
            "stable_tier": np.where(confirm, candidate, stable),
            "stable_since": np.where(confirm, since, prev["stable_since"].to_numpy(object)),
            "previous_tier": np.where(confirm, stable, prev["previous_tier"].to_numpy(object)),
            "pending_tier": np.where(changing & ~confirm, candidate, None),
            "pending_days": np.where(changing & ~confirm, days, 0),
        },
        index=known,
    )
    first = pd.DataFrame(
        {
            "stable_tier": today.loc[new, "tier"],
            "stable_since": day,
            "previous_tier": None,
            "pending_tier": None,
            "pending_days": 0,
        },
        index=new,
    )
    first = first[first["stable_tier"].notna()]
    untouched = states.loc[states.index.difference(today.index)]
    parts = [p for p in (untouched, out, first) if not p.empty]
    result = pd.concat(parts) if parts else empty_states()
    result["pending_days"] = result["pending_days"].astype("int64")
    return result.rename_axis("account_id")


def _candidate(
    stable: np.ndarray,
    raw: np.ndarray,
    score: np.ndarray,
    segment: np.ndarray,
    bounds: dict[tuple[str, str], tuple[float, float]],
    margin: float,
) -> np.ndarray:
    """The tier the account moves towards today: the raw tier when the score is past the stable
    tier's range by the margin (or the two share a range, as Stable and Declining do), else the
    stable tier. No score today moves nothing."""
    low, high = _ranges(segment, stable, bounds)
    raw_low, _ = _ranges(segment, raw, bounds)
    unknown = np.isnan(low)  # the stable tier is not one of this model's: follow the score
    with np.errstate(invalid="ignore"):
        beyond = (score >= high + margin) | (score < low - margin)
    moves = unknown | beyond | (raw_low == low)
    has_score = ~np.isnan(score) & pd.notna(raw)
    return np.where(has_score & moves & (raw != stable), raw, stable)


def _ranges(
    segment: np.ndarray, tiers: np.ndarray, bounds: dict[tuple[str, str], tuple[float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """Each tier's [low, high) for its account's segment model (NaN when not one of its tiers)."""
    pairs = [bounds.get((s, t), (np.nan, np.nan)) for s, t in zip(segment, tiers, strict=True)]
    both = np.array(pairs, dtype=float).reshape(-1, 2)
    return both[:, 0], both[:, 1]
