"""Overrides with governance: a CSM sets an account's score, tier or one component's score,
always with a written reason, an author, a start and an expiry; it can be removed; the computed
score stays stored beside it. Scoring applies the overrides active on each date; backtests
and calibration never see them, they judge the model.

With the model's `overrides: {worsen_only: true}`, an override may only make health worse, on
the day it is set and on every day it applies (it never lifts a score above the computed one).
"""

from __future__ import annotations

import datetime as dt
import typing as t
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa

from accounthealth.actions.audit import Entry, append
from accounthealth.engine.base import Engine
from accounthealth.errors import AccountHealthError, NotFoundError, did_you_mean
from accounthealth.metrics.definitions import ResolvedModel

TARGETS = ("score", "tier", "component")
_SCHEMA = pa.schema(
    {
        "override_id": pa.string(), "account_id": pa.string(), "target": pa.string(),
        "component": pa.string(), "score": pa.float64(), "tier": pa.string(),
        "reason": pa.string(), "author": pa.string(), "starts_on": pa.date32(),
        "expires_on": pa.date32(), "created_at": pa.timestamp("us"),
        "removed_at": pa.timestamp("us"), "removed_by": pa.string(),
        "removal_reason": pa.string(),
    }
)  # fmt: skip


def tier_rank(resolved: ResolvedModel, segment_model: str) -> dict[str, int]:
    """Tier name -> rank, 0 the healthiest, for one segment model (4-tier names included)."""
    seg = next(s for s in resolved.segments if s.segment == segment_model)
    names = [tier.name for tier in sorted(seg.tiers, key=lambda tier: -tier.min)]
    ranks = {name: i for i, name in enumerate(names)}
    spec = resolved.model.trend_tiers
    if spec is not None and spec.split in ranks:
        # Declining is worse than Stable, both in the middle tier's place.
        ranks |= {spec.stable: ranks[spec.split], spec.declining: ranks[spec.split] + 0.5}
    return ranks


def create(
    store: Engine,
    resolved: ResolvedModel,
    computed: t.Mapping[str, t.Any],
    *,
    by: str,
    reason: str,
    score: float | None = None,
    tier: str | None = None,
    component: str | None = None,
    starts: dt.date | None = None,
    expires: dt.date | None = None,
    component_score: float | None = None,
) -> str:
    """Set an override on the account whose latest computed scores are ``computed``; returns
    its id. Refused without a reason or author, with an unknown tier or component, or, under
    worsen_only, when it would make health better."""
    policy = resolved.model.overrides
    account = computed["account_id"]
    if not by.strip():
        raise AccountHealthError("who sets the override?", where="--by", fix="give your name")
    if not reason.strip():
        raise AccountHealthError(
            "an override needs a written reason", where="--reason",
            fix="say why the score is wrong, e.g. --reason 'champion left on 2026-11-02'",
        )  # fmt: skip
    if (score is None) == (tier is None) or (component is not None and score is None):
        raise AccountHealthError(
            "give either --score or --tier (a component override takes --score)",
            where="override", fix="e.g. --tier Red, or --component relationship --score 20",
        )  # fmt: skip
    if score is not None and not 0 <= score <= 100:
        raise AccountHealthError(
            f"score {score:g} is outside 0-100", where="--score", fix="give 0 to 100"
        )
    segment = computed["segment_model"]
    ranks = tier_rank(resolved, segment)
    if tier is not None and tier not in ranks:
        raise AccountHealthError(
            f"no tier '{tier}' for {account}", where="--tier", fix=did_you_mean(tier, ranks)
        )
    components = [c.name for s in resolved.segments if s.segment == segment for c in s.components]
    if component is not None and component not in components:
        raise AccountHealthError(
            f"{account} has no component '{component}'",
            where="--component", fix=did_you_mean(component, components),
        )  # fmt: skip
    if policy.worsen_only:
        _check_worse(computed, ranks, score, tier, component, component_score)
    starts = starts or dt.date.today()
    expires = expires or starts + dt.timedelta(days=policy.expiry)
    if expires <= starts:
        raise AccountHealthError(
            f"the override would expire on {expires}, before it starts on {starts}",
            where="--expires", fix="give a date after the start",
        )  # fmt: skip
    target = "component" if component else "tier" if tier else "score"
    override_id = "O" + uuid.uuid4().hex[:9]
    now = dt.datetime.now()
    row = {
        "override_id": override_id, "account_id": account, "target": target,
        "component": component, "score": score, "tier": tier, "reason": reason,
        "author": by, "starts_on": starts, "expires_on": expires, "created_at": now,
        "removed_at": None, "removed_by": None, "removal_reason": None,
    }  # fmt: skip
    with store.transaction():
        store.write_arrow("overrides", pa.Table.from_pylist([row], schema=_SCHEMA))
        details = {
            k: row[k]
            for k in ("target", "component", "score", "tier", "reason", "starts_on", "expires_on")
            if row[k] is not None
        }
        details |= {"computed_score": computed.get("score"), "computed_tier": computed.get("tier")}
        append(store, [Entry(by, "override.set", override_id, account, details)], now)
    return override_id


def _check_worse(
    computed: t.Mapping[str, t.Any],
    ranks: dict[str, int],
    score: float | None,
    tier: str | None,
    component: str | None,
    component_score: float | None,
) -> None:
    fix = "this model allows overrides that make health worse only (overrides.worsen_only)"
    if tier is not None and ranks[tier] <= ranks.get(computed.get("tier"), -1):
        raise AccountHealthError(
            f"{tier} is not worse than the computed tier {computed.get('tier')}",
            where="--tier", fix=fix,
        )  # fmt: skip
    current = component_score if component else computed.get("score")
    if score is not None and current is not None and score >= current:
        raise AccountHealthError(
            f"{score:g} is not below the computed {'component ' if component else ''}score "
            f"{current:.0f}", where="--score", fix=fix,
        )  # fmt: skip


def remove(store: Engine, override_id: str, *, by: str, reason: str) -> None:
    """End an override now (it stays in the table and the audit log)."""
    if not by.strip() or not reason.strip():
        raise AccountHealthError(
            "removing an override needs --by and --reason", where="override remove",
            fix="say who and why",
        )  # fmt: skip
    found = store.sql(
        "SELECT account_id, removed_at FROM overrides WHERE override_id = ?", [override_id]
    )
    if not found:
        raise NotFoundError(
            f"no override {override_id}", where="override remove",
            fix="list them with 'accounthealth overrides list'",
        )  # fmt: skip
    if found[0][1] is not None:
        raise AccountHealthError(
            f"override {override_id} was removed already", where="override remove", fix="none"
        )
    now = dt.datetime.now()
    with store.transaction():
        store.sql(
            "UPDATE overrides SET removed_at = ?, removed_by = ?, removal_reason = ? "
            "WHERE override_id = ?",
            [now, by, reason, override_id],
        )
        append(store, [Entry(by, "override.removed", override_id, found[0][0],
                             {"reason": reason})], now)  # fmt: skip


def in_force(store: Engine, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Overrides in force on some day from ``start`` to ``end``: from starts_on until the day
    before expires_on, and before the day they were removed."""
    # All of them, filtered here: overrides are made by hand (a few thousand at most), and
    # compiling a filtered query cost more than reading them, once per day of a backfill.
    # Through Arrow: Ibis's own conversion to pandas took 6-8 ms of every run's start, with no
    # override at all, against 1-2 ms.
    frame = store.to_arrow(store.table("overrides")).to_pandas()
    frame["removed_on"] = frame["removed_at"]
    for column in ("starts_on", "expires_on", "removed_on"):
        frame[column] = [None if pd.isna(v) else pd.Timestamp(v).date() for v in frame[column]]
    spans = zip(frame["starts_on"], frame["expires_on"], frame["removed_on"], strict=True)
    keep = [
        s is not None and e is not None and s <= end and e > start and (r is None or r > start)
        for s, e, r in spans
    ]
    return frame[keep].reset_index(drop=True)


def apply(
    frame: pd.DataFrame,
    overrides: pd.DataFrame,
    resolved: ResolvedModel,
    tier_of: t.Callable[[str, float], str],
) -> None:
    """Apply the overrides in force on each row's date, in place: ``computed_score`` and
    ``computed_tier`` keep the model's result, ``override_id`` names the override. The most
    recently created override of an account wins when several are in force."""
    frame["computed_score"] = np.nan
    frame["computed_tier"] = None
    frame["override_id"] = None
    if overrides.empty or frame.empty:
        return
    worsen_only = resolved.model.overrides.worsen_only
    for o in overrides.sort_values("created_at").itertuples():
        end = min(d for d in (o.expires_on, o.removed_on) if d is not None)
        rows = (
            (frame["account_id"] == o.account_id)
            & (frame["as_of"] >= o.starts_on)
            & (frame["as_of"] < end)
            & frame["score"].notna()
        )
        if not rows.any():
            continue
        first = frame["override_id"].isna() & rows
        frame.loc[first, "computed_score"] = frame.loc[first, "score"]
        frame.loc[first, "computed_tier"] = frame.loc[first, "tier"]
        computed = frame.loc[rows, "computed_score"]
        if o.target == "tier":
            ranks = [tier_rank(resolved, s) for s in frame.loc[rows, "segment_model"]]
            keep = [
                worsen_only and r.get(o.tier, 0) <= r.get(t_, 0)
                for r, t_ in zip(ranks, frame.loc[rows, "computed_tier"], strict=True)
            ]
            frame.loc[rows, "tier"] = np.where(keep, frame.loc[rows, "computed_tier"], o.tier)
        else:
            value = (
                _with_component(frame.loc[rows], resolved, o.component, o.score)
                if o.target == "component"
                else pd.Series(o.score, index=computed.index)
            )
            if worsen_only:
                value = np.minimum(value, computed)
            frame.loc[rows, "score"] = value
            frame.loc[rows, "tier"] = [
                tier_of(s, v) for s, v in zip(frame.loc[rows, "segment_model"], value, strict=True)
            ]
        frame.loc[rows, "override_id"] = o.override_id


def _with_component(
    rows: pd.DataFrame, resolved: ResolvedModel, component: str, value: float
) -> pd.Series:
    """The account's score with one component's score replaced: the weighted mean of the
    present components' scores is recomputed with that component present at ``value``, and
    the renewal proximity factor of the day is applied again."""
    out = pd.Series(np.nan, index=rows.index)
    for seg in resolved.segments:
        mine = rows["segment_model"] == seg.segment
        if not mine.any():
            continue
        weights = {c.name: c.weight for c in seg.components}
        part = rows[mine]
        total = pd.Series(0.0, index=part.index)
        weighted = pd.Series(0.0, index=part.index)
        for name, weight in weights.items():
            score = part[f"cs__{name}"] if f"cs__{name}" in part else pd.Series(np.nan, part.index)
            if name == component:
                score = pd.Series(value, index=part.index)
            present = score.notna()
            total += np.where(present, weight, 0.0)
            weighted += np.where(present, weight * score.fillna(0.0), 0.0)
        base = weighted / total
        # Renewal proximity multiplies the risk (100 - score); keep the day's factor.
        old_risk = 100 - part["base_score"]
        factor = np.where(old_risk > 0, (100 - part["own_score"]) / old_risk, 1.0)
        out[part.index] = (100 - (100 - base) * factor).clip(0, 100)
    return out


def listing(
    store: Engine,
    *,
    active_on: dt.date | None = None,
    author: str | None = None,
    account_id: str | None = None,
) -> pd.DataFrame:
    """Overrides, newest first; ``active_on`` keeps those in force on that date."""
    o = store.table("overrides")
    if author:
        o = o.filter(o.author.lower() == author.lower())
    if account_id:
        o = o.filter(o.account_id == account_id)
    if active_on:
        o = o.filter(
            (o.starts_on <= active_on) & (o.expires_on > active_on)
            & (o.removed_at.isnull() | (o.removed_at.cast("date") > active_on))
        )  # fmt: skip
    return store.execute(o.order_by(o.created_at.desc()))


def log_expired(store: Engine, day: dt.date) -> int:
    """Write one audit entry for each override that has expired by ``day`` (once each)."""
    rows = store.sql(
        """SELECT override_id, account_id, expires_on FROM overrides
           WHERE expires_on <= ? AND removed_at IS NULL AND override_id NOT IN (
               SELECT subject FROM audit_log WHERE action = 'override.expired')""",
        [day],
    )
    append(store, [Entry("accounthealth", "override.expired", oid, account, {"on": expires})
                   for oid, account, expires in rows])  # fmt: skip
    return len(rows)
