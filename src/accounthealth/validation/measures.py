"""The backtest's figures, each with a bootstrap confidence interval.

Observations of one account on nearby dates are not independent, so intervals come from a
cluster bootstrap: each replicate draws accounts with replacement and weights every
observation and outcome of an account by how often it was drawn. Every figure is therefore
written as a function of those weights.
"""

from __future__ import annotations

import math
import typing as t
from dataclasses import dataclass

import numpy as np
import pandas as pd

Weights = np.ndarray
Statistic = t.Callable[[Weights], float]


def weighted_auc(label: np.ndarray, risk: np.ndarray, weight: Weights | None = None) -> float:
    """Area under the ROC curve of ``risk`` for ``label`` (ties count one half), with
    observation weights; NaN when one class has no weight."""
    weight = np.ones(len(label)) if weight is None else weight
    values, group = np.unique(risk, return_inverse=True)
    pos = np.bincount(group, weights=weight * label, minlength=len(values))
    neg = np.bincount(group, weights=weight * (1 - label), minlength=len(values))
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos <= 0 or total_neg <= 0:
        return math.nan
    below = np.cumsum(neg) - neg
    return float((pos * (below + 0.5 * neg)).sum() / (total_pos * total_neg))


def _rate(hit: np.ndarray, among: np.ndarray) -> Statistic:
    """Weighted share of ``hit`` among the rows where ``among`` holds."""

    def stat(w: Weights) -> float:
        base = (w * among).sum()
        return float((w * hit * among).sum() / base) if base > 0 else math.nan

    return stat


def _mean(values: np.ndarray, among: np.ndarray) -> Statistic:
    def stat(w: Weights) -> float:
        base = (w * among).sum()
        return float((w * np.nan_to_num(values) * among).sum() / base) if base > 0 else math.nan

    return stat


@dataclass
class Bootstrap:
    """Replicate weights per account, shared by every figure of one report."""

    accounts: pd.Index
    replicates: np.ndarray  # (reps, accounts): how often each account was drawn
    level: float = 0.95

    @classmethod
    def draw(cls, accounts: t.Iterable[str], reps: int, seed: int = 0) -> Bootstrap:
        index = pd.Index(sorted(set(accounts)))
        rng = np.random.default_rng(seed)
        n = len(index)
        draws = rng.multinomial(n, np.full(n, 1 / n), size=reps) if n and reps else None
        return cls(index, draws if draws is not None else np.zeros((0, n)))

    def estimate(self, accounts: pd.Series, stat: Statistic, count: int) -> dict:
        """The figure on the data as it is, its interval, and ``count`` (what it rests on)."""
        value = stat(np.ones(len(accounts)))
        out = {"value": _clean(value), "low": None, "high": None, "n": int(count)}
        if len(self.replicates) == 0 or math.isnan(value):
            return out
        position = self.accounts.get_indexer(accounts)
        samples = np.array([stat(rep[position].astype(float)) for rep in self.replicates])
        samples = samples[~np.isnan(samples)]
        if len(samples) >= 0.8 * len(self.replicates):
            tail = (1 - self.level) / 2 * 100
            out["low"], out["high"] = (
                _clean(v) for v in np.percentile(samples, [tail, 100 - tail])
            )
        return out


def _clean(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 6)


def deciles(obs: pd.DataFrame) -> np.ndarray:
    """Each observation's score decile among the accounts on its date: 0 for the lowest-scored
    tenth. Ties are broken by account id, so the result does not depend on row order."""
    ordered = obs.sort_values(["as_of", "score", "account_id"])
    rank = ordered.groupby("as_of").cumcount()
    size = ordered.groupby("as_of")["score"].transform("size")
    decile = pd.Series((rank * 10) // size, index=ordered.index)
    return decile.reindex(obs.index).to_numpy()


def roc_points(label: np.ndarray, risk: np.ndarray, points: int = 50) -> list[list[float]]:
    """The ROC curve as up to ``points`` (false positive rate, true positive rate) pairs."""
    if label.sum() == 0 or label.sum() == len(label):
        return []
    order = np.argsort(-risk, kind="stable")
    tpr = np.concatenate([[0], np.cumsum(label[order]) / label.sum()])
    fpr = np.concatenate([[0], np.cumsum(1 - label[order]) / (1 - label).sum()])
    keep = np.unique(np.linspace(0, len(tpr) - 1, points).round().astype(int))
    return [[round(float(fpr[i]), 4), round(float(tpr[i]), 4)] for i in keep]


def ranking(obs: pd.DataFrame, boot: Bootstrap) -> dict:
    """AUC of churn within the horizon, lift of the bottom decile, concordance of time to
    churn. ``obs`` holds known observations (for AUC and lift) and censored ones."""
    from lifelines.utils import concordance_index

    known = obs[obs["known"]].reset_index(drop=True)
    y = known["churned"].to_numpy(dtype=float)
    risk = -known["score"].to_numpy(dtype=float)
    decile = deciles(known)
    bottom = (decile == 0).astype(float)
    ones = np.ones(len(known))

    def lift(w: Weights) -> float:
        overall = _rate(y, ones)(w)
        return _rate(y, bottom)(w) / overall if overall > 0 else math.nan

    surv = obs[obs["duration"] > 0]
    concordance = (
        concordance_index(surv["duration"], surv["score"], surv["event"])
        if surv["event"].any() and (~surv["event"]).any()
        else math.nan
    )
    return {
        "auc": boot.estimate(known["account_id"], lambda w: weighted_auc(y, risk, w), len(known)),
        "top_decile_lift": boot.estimate(known["account_id"], lift, int(bottom.sum())),
        "concordance": {"value": _clean(concordance), "n": len(surv)},
        "roc": roc_points(y, risk),
        "churn_by_decile": [
            _clean(y[decile == d].mean()) if (decile == d).any() else None for d in range(10)
        ],
    }


def by_tier(known: pd.DataFrame, tiers: t.Sequence[str], boot: Bootstrap) -> list[dict]:
    """Churn rate within the horizon of the observations in each tier, and the rate of
    partial churn (renewal at lower ARR) where contractions are known."""
    y = known["churned"].to_numpy(dtype=float)
    shrank = known.get("contracted", pd.Series(False, index=known.index)).to_numpy(dtype=float)
    out = []
    for tier in tiers:
        among = (known["tier"] == tier).to_numpy(dtype=float)
        out.append(
            {
                "tier": tier,
                "observations": int(among.sum()),
                "churned": int((among * y).sum()),
                "churn_rate": boot.estimate(known["account_id"], _rate(y, among), among.sum()),
                "contracted": int((among * shrank).sum()),
                "contraction_rate": _clean(_rate(shrank, among)(np.ones(len(known)))),
            }
        )
    return out


def calibration(known: pd.DataFrame, width: int = 10) -> list[dict]:
    """Observed churn within the horizon per score band (0-10, 10-20, ... 90-100)."""
    band = np.minimum((known["score"] // width) * width, 100 - width)
    out = []
    for low in range(0, 100, width):
        rows = known[band == low]
        out.append(
            {
                "band": f"{low}-{low + width}",
                "observations": len(rows),
                "churned": int(rows["churned"].sum()),
                "churn_rate": _clean(rows["churned"].mean()) if len(rows) else None,
                "mean_score": _clean(rows["score"].mean()) if len(rows) else None,
            }
        )
    return out


def before_outcome(
    before: pd.DataFrame, top_tier: str, days: t.Sequence[int], boot: Bootstrap
) -> dict:
    """Per lead (90, 60, 30 days): share of churned accounts that were in the top tier, and
    the mean score of churned and of retained accounts that long before the outcome."""
    green: dict[str, dict] = {}
    trajectory: dict[str, dict] = {"churned": {}, "retained": {}}
    for k in days:
        rows = before[(before["days_before"] == k) & before["score"].notna()]
        churned = (~rows["retained"]).to_numpy(dtype=float)
        is_top = (rows["tier"] == top_tier).to_numpy(dtype=float)
        score = rows["score"].to_numpy(dtype=float)
        green[str(k)] = boot.estimate(
            rows["account_id"], _rate(is_top, churned), int(churned.sum())
        )
        for name, among in (("churned", churned), ("retained", 1 - churned)):
            trajectory[name][str(k)] = boot.estimate(
                rows["account_id"], _mean(score, among), int(among.sum())
            )
    return {"churned_in_top_tier": green, "mean_score": trajectory}


def lead_time(obs: pd.DataFrame, churns: pd.DataFrame, bottom_tier: str, every: int) -> dict:
    """How long before churning accounts had been in the bottom tier without a break: the
    run of bottom-tier observations that ends at the last observation before the churn."""
    seq = obs[["account_id", "as_of", "tier"]].sort_values(["account_id", "as_of"])
    seq = seq.assign(_t=pd.to_datetime(seq["as_of"]), _red=seq["tier"] == bottom_tier)
    gap = seq["_t"].diff().dt.days
    breaks = (
        (seq["account_id"] != seq["account_id"].shift()) | (seq["_red"] != seq["_red"].shift())
    ) | (gap > every)
    seq["_run_start"] = seq["_t"].where(breaks).ffill()
    events = churns.assign(_d=pd.to_datetime(churns["date"])).sort_values("_d")
    last = pd.merge_asof(
        events,
        seq.sort_values("_t")[["account_id", "_t", "_red", "_run_start"]],
        left_on="_d",
        right_on="_t",
        by="account_id",
        direction="backward",
        allow_exact_matches=False,
        tolerance=pd.Timedelta(days=every),
    )
    seen = last[last["_t"].notna()]
    red = seen[seen["_red"].astype(bool)]
    days = (red["_d"] - red["_run_start"]).dt.days
    return {
        "churns_observed": len(seen),
        "bottom_tier_at_churn": len(red),
        "share_warned": _clean(len(red) / len(seen)) if len(seen) else None,
        "median_days": _clean(float(days.median())) if len(days) else None,
        "quartiles_days": [_clean(float(q)) for q in days.quantile([0.25, 0.75])]
        if len(days)
        else None,
    }
