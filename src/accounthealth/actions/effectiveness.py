"""Which interventions work: for each kind of task (and the rule that made it), how accounts'
scores and tiers moved in the 30, 60 and 90 days after it was created, and how long accounts
waited for a first action (someone starting, snoozing or resolving the task).

This is what happened after the tasks, not proof they caused it: accounts without a task move
too. The report therefore shows, beside each kind, the same movement for accounts that were in
the same tier on the same days without any task (the baseline).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from accounthealth.actions.overrides import tier_rank
from accounthealth.metrics.definitions import ResolvedModel

AFTER = (30, 60, 90)


def effectiveness(
    tasks: pd.DataFrame, scores: pd.DataFrame, resolved: ResolvedModel
) -> pd.DataFrame:
    """One row per task kind and rule: tasks, share resolved, median days to a first action
    (and how many still wait), and for each of 30/60/90 days after creation the mean score
    change, the share whose tier improved and the baseline mean change of accounts in the same
    tier on the same days with no task. ``scores`` has account_id, as_of, score, tier,
    segment_model."""
    if tasks.empty:
        return pd.DataFrame()
    history = scores.assign(as_of=pd.to_datetime(scores["as_of"]).dt.date)
    history["rank"] = _ranks(history, resolved)
    at = history.set_index(["account_id", "as_of"])[["score", "rank", "tier"]]
    t = tasks.assign(created_on=pd.to_datetime(tasks["created_on"]).dt.date)
    start = at.reindex(pd.MultiIndex.from_arrays([t["account_id"], t["created_on"]]))
    t["score0"], t["rank0"], t["tier0"] = (start[c].to_numpy() for c in ("score", "rank", "tier"))
    created = pd.to_datetime(t["created_at"])
    acted = pd.to_datetime(t["first_action_at"])
    t["wait"] = (acted - created).dt.total_seconds() / 86400
    with_task = set(zip(t["account_id"], t["created_on"], strict=True))
    for days in AFTER:
        later = at.reindex(pd.MultiIndex.from_arrays(
            [t["account_id"], [d + dt.timedelta(days=days) for d in t["created_on"]]]
        ))  # fmt: skip
        t[f"change_{days}"] = later["score"].to_numpy() - t["score0"]
        rank, rank0 = later["rank"].to_numpy(), t["rank0"].to_numpy(dtype=float)
        t[f"better_{days}"] = np.where(np.isnan(rank) | np.isnan(rank0), np.nan, rank < rank0)
        t[f"baseline_{days}"] = _baseline(history, t, days, with_task)
    rows = []
    for (kind, rule), group in t.groupby(["kind", t["rule"].fillna("(by hand)")]):
        row = {
            "kind": kind,
            "rule": rule,
            "tasks": len(group),
            "resolved": float((group["status"] == "resolved").mean()),
            "median_days_to_first_action": float(group["wait"].median()),
            "waiting": int(group["wait"].isna().sum()),
        }
        for days in AFTER:
            change = group[f"change_{days}"]
            row[f"n_{days}d"] = int(change.notna().sum())
            row[f"score_change_{days}d"] = float(change.mean())
            row[f"tier_improved_{days}d"] = float(group[f"better_{days}"].mean())
            row[f"baseline_change_{days}d"] = float(group[f"baseline_{days}"].mean())
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["kind", "rule"]).reset_index(drop=True)


def _ranks(history: pd.DataFrame, resolved: ResolvedModel) -> np.ndarray:
    ranks = {s.segment: tier_rank(resolved, s.segment) for s in resolved.segments}
    return np.array(
        [ranks.get(s, {}).get(t, np.nan) for s, t in zip(history["segment_model"],
                                                          history["tier"], strict=True)],
        dtype=float,
    )  # fmt: skip


def _baseline(
    history: pd.DataFrame,
    tasks: pd.DataFrame,
    days: int,
    with_task: set[tuple[str, dt.date]],
) -> np.ndarray:
    """For each task, the mean score change over ``days`` of accounts in the task's starting
    tier on its creation day that got no task that day."""
    shifted = (
        history[["account_id", "as_of", "score"]]
        .assign(as_of=[d - dt.timedelta(days=days) for d in history["as_of"]])
        .rename(columns={"score": "later"})
    )
    moves = history.merge(shifted, on=["account_id", "as_of"])
    moves = moves[[(a, d) not in with_task for a, d in zip(moves["account_id"], moves["as_of"],
                                                           strict=True)]]  # fmt: skip
    mean = (moves["later"] - moves["score"]).groupby([moves["as_of"], moves["tier"]]).mean()
    keys = pd.MultiIndex.from_arrays([tasks["created_on"], tasks["tier0"]])
    return mean.reindex(keys).to_numpy()
