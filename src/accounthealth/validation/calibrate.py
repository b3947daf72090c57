"""Suggested component weights (with tier bounds, renewal proximity and a churn probability)
fitted on churn outcomes up to a date, checked on the period after it, written as a proposed
model file that never replaces the live one by itself.

The fit keeps the score a transparent weighted average: churn within the horizon is modelled
as logistic in the component scores with non-negative coefficients (a higher component score
can only mean less risk) and a small ridge penalty; the coefficients, normalised to sum to 100,
are the weights. A bootstrap over accounts shows how stable they are. Weights are proposed
only where enough accounts churned in the training period and the bootstrap agrees.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
import typing as t
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.optimize import minimize

from accounthealth.errors import AccountHealthError
from accounthealth.metrics.definitions import DEFAULT_SEGMENT, ScoringModel
from accounthealth.validation.backtest import BacktestOptions, measure, observe, tier_names
from accounthealth.validation.measures import weighted_auc

if t.TYPE_CHECKING:
    from accounthealth.project import Project

# Fewer churned accounts in the training period than this: no weights are proposed.
MIN_CHURNED_ACCOUNTS = 30
# A weight whose 90% bootstrap interval is wider than this (points of 100) is not stable.
MAX_INTERVAL = 30.0
PENALTY = 1e-3
STABILITY_REPS = 40


def fit_weights(x: np.ndarray, y: np.ndarray, penalty: float = PENALTY) -> np.ndarray:
    """Non-negative coefficients b of P(churn) = logistic(a - x @ b), by penalised maximum
    likelihood; ``x`` holds component scores scaled to 0..1."""
    n, k = x.shape

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = params[0] - x @ params[1:]
        p = 1 / (1 + np.exp(-z))
        value = np.mean(np.logaddexp(0, z) - y * z) + penalty * params[1:] @ params[1:]
        residual = (p - y) / n
        grad = np.concatenate([[residual.sum()], -x.T @ residual + 2 * penalty * params[1:]])
        return value, grad

    start = np.concatenate([[0.0], np.ones(k)])
    bounds = [(None, None)] + [(0, None)] * k
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return result.x[1:]


def to_weights(coefficients: np.ndarray) -> np.ndarray:
    """Coefficients as whole-number weights summing to 100, each at least 1 (a model weight
    must be positive): largest remainders get the rounding."""
    total = coefficients.sum()
    if total <= 0:
        return np.full(len(coefficients), np.nan)
    raw = np.maximum(coefficients / total * 100, 1.0)
    raw = raw / raw.sum() * 100
    weights = np.floor(raw)
    order = np.argsort(-(raw - weights))
    weights[order[: int(np.rint(100 - weights.sum()))]] += 1
    return weights


def fit_segment(train: pd.DataFrame, seg: ScoringModel, reps: int, seed: int = 0) -> dict:
    """Current and proposed weights of one segment's components, with bootstrap intervals,
    or the reason none are proposed."""
    components = [c.name for c in seg.components]
    total = sum(c.weight for c in seg.components)
    current = {c.name: round(c.weight / total * 100, 2) for c in seg.components}
    rows = train[train["segment_model"] == seg.segment]
    churned = int(rows.loc[rows["churned"], "account_id"].nunique())
    out = {
        "segment": seg.segment,
        "observations": len(rows),
        "churned_accounts": churned,
        "current": current,
        "proposed": None,
        "intervals": {},
        "reason": None,
    }
    if churned < MIN_CHURNED_ACCOUNTS:
        out["reason"] = (
            f"only {churned} account(s) churned in the training period; at least "
            f"{MIN_CHURNED_ACCOUNTS} are needed to fit weights that will hold"
        )
        return out
    x_frame = rows[[f"cs__{c}" for c in components]].astype(float) / 100
    # A component without data on a date takes its training mean (0.5 if it never has data).
    x = x_frame.fillna(x_frame.mean().fillna(0.5)).to_numpy()
    y = rows["churned"].to_numpy(dtype=float)
    weights = to_weights(fit_weights(x, y))
    if np.isnan(weights).any():
        out["reason"] = "no component score lowers churn in the training period"
        return out
    accounts = rows["account_id"].to_numpy()
    ids, index = np.unique(accounts, return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(reps):
        counts = rng.multinomial(len(ids), np.full(len(ids), 1 / len(ids)))
        take = np.repeat(np.arange(len(rows)), counts[index])
        draws.append(to_weights(fit_weights(x[take], y[take])))
    samples = np.array(draws)
    low, high = np.nanpercentile(samples, [5, 95], axis=0) if reps else (weights, weights)
    out["intervals"] = {
        c: [float(lo), float(hi)] for c, lo, hi in zip(components, low, high, strict=True)
    }
    widest = float(np.max(high - low)) if reps else 0.0
    if widest > MAX_INTERVAL:
        name = components[int(np.argmax(high - low))]
        out["reason"] = (
            f"the weights are not stable under resampling (the weight of {name} moves over "
            f"{widest:.0f} points): more outcomes are needed"
        )
        return out
    out["proposed"] = {c: float(w) for c, w in zip(components, weights, strict=True)}
    return out


def base_scores(frame: pd.DataFrame, fits: list[dict]) -> pd.Series:
    """Each observation's weighted component score under the proposed weights (current ones
    where none are proposed); a component without data gives its weight to the others."""
    out = pd.Series(np.nan, index=frame.index)
    for fit in fits:
        weights = fit["proposed"] or fit["current"]
        rows = frame["segment_model"] == fit["segment"]
        cs = frame.loc[rows, [f"cs__{c}" for c in weights]].astype(float).to_numpy()
        w = np.array(list(weights.values()), dtype=float)
        present = ~np.isnan(cs)
        total = (present * w).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[rows] = np.where(total > 0, np.nansum(cs * w, axis=1) / total, np.nan)
    return out


def with_renewal(base: pd.Series, days: pd.Series, within: int, amplify: float) -> pd.Series:
    """The score after renewal proximity: risk (100 - base) grows up to 1 + amplify times."""
    d = days.astype(float)
    closeness = np.clip(1 - d / within, 0, 1).where(d.notna() & (d >= 0), 0.0)
    return np.clip(100 - (100 - base) * (1 + amplify * closeness), 0, 100)


# The renewal settings tried; the best on the training period is proposed when it ranks churn
# clearly better than the live one there.
RENEWAL_DAYS = (30, 60, 90, 120, 180)
RENEWAL_AMPLIFY = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
MIN_GAIN = 0.01
# A setting that pushes more than this share of scores to 0 is not proposed: a floor of zeros
# ranks nothing among them and tells a CSM nothing but "renewal is near".
MAX_FLOORED = 0.02


def fit_renewal(train: pd.DataFrame, fits: list[dict], current: t.Any) -> dict:
    """The renewal proximity (within_days, amplify) that ranks churn best on the training
    period, with the proposed weights; proposed only if it gains MIN_GAIN AUC or more."""
    base = base_scores(train, fits)
    y = train["churned"].to_numpy(dtype=float)

    def auc(within: int, amplify: float) -> float:
        score = with_renewal(base, train["days_to_renewal"], within, amplify)
        keep = score.notna().to_numpy()
        floored = ((score <= 0) & (base > 0)).mean()
        if floored > MAX_FLOORED:
            return math.nan
        return weighted_auc(y[keep], -score.to_numpy()[keep])

    now = (current.within_days, current.amplify) if current else (90, 0.0)
    tried = {(w, a): auc(w, a) for w in RENEWAL_DAYS for a in RENEWAL_AMPLIFY}
    tried = {k: v for k, v in tried.items() if not math.isnan(v)}
    best = max(tried, key=lambda k: tried[k])
    baseline = auc(*now)
    baseline = baseline if not math.isnan(baseline) else 0.0
    out = {
        "current": {"within_days": now[0], "amplify": now[1], "train_auc": round(baseline, 4)},
        "proposed": None,
        "reason": None,
    }
    if tried[best] - baseline >= MIN_GAIN:
        out["proposed"] = {
            "within_days": best[0],
            "amplify": best[1],
            "train_auc": round(tried[best], 4),
        }
    else:
        out["reason"] = "no renewal setting ranks churn clearly better in the training period"
    return out


# Tier bounds move only when the proposed score would shift them by at least this many points.
MIN_BOUND_SHIFT = 3


def fit_tiers(trained: pd.Series, live_tiers: pd.Series, tiers: t.Sequence[t.Any]) -> dict:
    """Tier bounds for the proposed score that keep each tier's share of the training
    observations as the live model had it, so Red holds as many accounts as the team works
    today. Proposed when a bound moves by MIN_BOUND_SHIFT points or more."""
    current = [{"name": tier.name, "min": float(tier.min)} for tier in tiers]
    out: dict = {"current": current, "proposed": None, "reason": None}
    score = trained.dropna()
    shares = live_tiers.value_counts(normalize=True)
    proposed, above = [], 0.0
    for tier in current[:-1]:
        above += float(shares.get(tier["name"], 0.0))
        bound = float(np.clip(np.round(np.quantile(score, 1 - above)), 1, 99)) if len(score) else 0
        proposed.append({"name": tier["name"], "min": bound})
    proposed.append({"name": current[-1]["name"], "min": 0.0})
    bounds = [tier["min"] for tier in proposed]
    if len(set(bounds)) < len(bounds) or bounds != sorted(bounds, reverse=True):
        out["reason"] = "the proposed scores cannot keep the tiers' shares apart"
    elif max(abs(a["min"] - b["min"]) for a, b in zip(current, proposed, strict=True)) < (
        MIN_BOUND_SHIFT
    ):
        out["reason"] = f"no bound would move by {MIN_BOUND_SHIFT} points or more"
    else:
        out["proposed"] = proposed
    return out


def proposed_document(
    model_file: Path | None,
    inline: dict | None,
    fits: list[dict],
    renewal: dict | None = None,
    probability: dict | None = None,
    tiers: dict | None = None,
) -> dict:
    """The live model's YAML with the proposed weights in place (default components and
    segment `weights:`) and, when proposed, tier bounds, renewal proximity and churn
    probability."""
    data = yaml.safe_load(model_file.read_text()) if model_file else inline or {}
    if tiers and tiers["proposed"]:
        data["tiers"] = [{"name": t["name"], "min": t["min"]} for t in tiers["proposed"]]
    if renewal and renewal["proposed"]:
        data["renewal"] = {k: renewal["proposed"][k] for k in ("within_days", "amplify")}
    if probability:
        data["churn_probability"] = probability
    for fit in fits:
        if not fit["proposed"]:
            continue
        weights = {c: int(w) for c, w in fit["proposed"].items()}
        if fit["segment"] == DEFAULT_SEGMENT:
            for name, weight in weights.items():
                data["components"][name]["weight"] = weight
        else:
            data["segments"][fit["segment"]]["weights"] = weights
    return data


def reference_scores(train: pd.DataFrame, test: pd.DataFrame, metrics: list[str]) -> np.ndarray:
    """A gradient-boosted model on the same metric values and days to renewal (the inputs of
    the health model), fitted on the training period: its test-period scores (100 = least
    likely to churn), as a yardstick of what the data can predict."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    columns = [f"v__{m}" for m in metrics] + ["days_to_renewal"]
    # A metric never present in training teaches nothing (and the binning refuses it).
    columns = [c for c in columns if train[c].notna().any()]
    model = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.05, max_depth=3, min_samples_leaf=200, random_state=0
    )
    model.fit(train[columns].astype(float), train["churned"].astype(int))
    return 100 * (1 - model.predict_proba(test[columns].astype(float))[:, 1])


def rank_matched_tiers(score: np.ndarray, like: pd.Series, order: list[str]) -> np.ndarray:
    """Tiers for ``score`` in the same shares as the tiers in ``like``: the best-scored share
    gets the first tier of ``order`` (healthiest first), and so on."""
    shares = like.value_counts(normalize=True)
    names = [n for n in order if n in shares] + [n for n in shares.index if n not in order]
    ranks = pd.Series(score).rank(method="first", ascending=False, pct=True).to_numpy()
    tiers = np.full(len(score), names[-1] if names else None, dtype=object)
    bound = 0.0
    for name in names:
        tiers[(ranks > bound) & (ranks <= bound + shares[name] + 1e-12)] = name
        bound += shares[name]
    return tiers


def fit_probability(score: pd.Series, churned: pd.Series) -> tuple[float, float]:
    """Intercept and slope of P(churn) = logistic(intercept + slope x score)."""
    from sklearn.linear_model import LogisticRegression

    keep = score.notna()
    model = LogisticRegression(C=1e6).fit(score[keep].to_frame(), churned[keep].astype(int))
    return float(model.intercept_[0]), float(model.coef_[0][0])


def assess_probability(probability: pd.Series, churned: pd.Series) -> dict:
    """Brier score (against the base rate's) and reliability: mean predicted vs observed churn
    per tenth of probability."""
    keep = probability.notna()
    p, y = probability[keep].to_numpy(), churned[keep].to_numpy(dtype=float)
    bins = np.minimum((p * 10).astype(int), 9)
    base = float(y.mean()) if len(y) else math.nan
    return {
        "brier": round(float(np.mean((p - y) ** 2)), 6),
        "brier_of_base_rate": round(float(np.mean((base - y) ** 2)), 6),
        "reliability": [
            {
                "predicted": round(float(p[bins == b].mean()), 4),
                "observed": round(float(y[bins == b].mean()), 4),
                "observations": int((bins == b).sum()),
            }
            for b in range(10)
            if (bins == b).any()
        ],
    }


def _headline(figures: dict) -> dict:
    everyone = figures["segments"]["all"]
    tiers = {r["tier"]: r for r in everyone["by_tier"]}
    bottom = everyone["tiers"][-1]
    return {
        "auc": everyone["ranking"]["auc"],
        "top_decile_lift": everyone["ranking"]["top_decile_lift"],
        "churned_in_top_tier_30d": everyone["before_outcome"]["churned_in_top_tier"].get("30"),
        "bottom_tier_churn_rate": tiers[bottom]["churn_rate"],
    }


def calibrate(project: Project, train_until: dt.date, options: BacktestOptions) -> dict:
    """Fit weights on outcomes up to ``train_until``, write the proposed model file next to
    the live one, and compare live, proposed and a gradient-boosted reference after it."""
    live = project.model
    seen = observe(project, options, live)
    frame = seen.frame
    horizon = dt.timedelta(days=options.horizon)
    # Only observations whose whole horizon ended by train_until: their outcome was known then.
    train = frame[pd.to_datetime(frame["as_of"]) + horizon <= pd.Timestamp(train_until)]
    if train.empty:
        raise AccountHealthError(
            f"no observation before {train_until} has its {options.horizon}-day outcome known",
            where="--train-until",
            fix=f"train until a later date, at least {options.horizon} days after the first "
            f"observation ({seen.dates[0]})",
        )
    held_out = seen.after(train_until)
    held_out.frame = held_out.frame[held_out.frame["known"]].reset_index(drop=True)
    fits = [fit_segment(train, seg, STABILITY_REPS, options.seed) for seg in live.segments]
    renewal = fit_renewal(train, fits, live.model.renewal)
    result: dict = {
        "train_until": train_until,
        "train": {
            "first": min(train["as_of"]),
            "last": max(train["as_of"]),
            "observations": len(train),
            "churned_accounts": int(train.loc[train["churned"], "account_id"].nunique()),
        },
        "fits": fits,
        "renewal": renewal,
        "proposed_file": None,
    }
    test_options = dataclasses.replace(options, start=held_out.dates[0])
    compared = {"current": _headline(measure(held_out, live, test_options))}
    # The probability is fitted on the proposed score (weights and renewal) of the training
    # observations; it is judged on the held-out period as the proposed model scores it.
    settings = renewal["proposed"] or renewal["current"]
    trained = with_renewal(
        base_scores(train, fits),
        train["days_to_renewal"],
        settings["within_days"],
        settings["amplify"],
    )
    intercept, slope = fit_probability(trained, train["churned"])
    # Tier bounds for the segments that use the model's own tiers (not a segment's override).
    shared = [seg.segment for seg in live.segments if seg.tiers == live.model.tiers]
    rows = train["segment_model"].isin(shared)
    tiers = fit_tiers(trained[rows], train.loc[rows, "tier"], live.model.tiers)
    result["tiers"] = tiers
    probability = None
    if slope < 0:
        probability = {
            "horizon": f"{options.horizon}d",
            "intercept": round(intercept, 6),
            "slope": round(slope, 6),
            "fitted_until": str(train_until),
        }
    result["probability"] = {"model": probability}
    if any(f["proposed"] for f in fits) or renewal["proposed"] or probability or tiers["proposed"]:
        folder = project.folder
        model_setting = project.loaded.config.model
        model_file = folder / model_setting if isinstance(model_setting, str) else None
        inline = None if model_file else copy.deepcopy(dict(model_setting))
        document = proposed_document(model_file, inline, fits, renewal, probability, tiers)
        target = (model_file or folder / "model.yaml").with_suffix(".proposed.yaml")
        header = (
            f"# Proposed by 'accounthealth calibrate --train-until {train_until}' from outcomes "
            f"up to that date.\n# Review with 'accounthealth plan'; the live model is unchanged.\n"
        )
        target.write_text(header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
        result["proposed_file"] = str(target)
        proposed = project.load_model(target)
        result["proposed_version"] = proposed.version
        again = observe(project, test_options, proposed)
        again.frame = again.frame[again.frame["known"]].reset_index(drop=True)
        compared["proposed"] = _headline(measure(again, proposed, test_options))
        if probability:
            result["probability"].update(
                assess_probability(again.frame["churn_probability"], again.frame["churned"])
            )
    test = held_out.frame
    gbm = test.copy()
    gbm["score"] = reference_scores(train, test, list(live.metrics))
    order = tier_names(live, live.segments[-1].tiers)
    gbm["tier"] = rank_matched_tiers(gbm["score"].to_numpy(), test["tier"], order)
    reference = dataclasses.replace(held_out, frame=gbm)
    compared["gradient_boosting"] = _headline(measure(reference, live, test_options))
    result["held_out"] = {
        "first": held_out.dates[0],
        "last": held_out.dates[-1],
        "observations": len(test),
        "churned_accounts": int(test.loc[test["churned"], "account_id"].nunique()),
    }
    result["compared"] = compared
    # The live score's AUC on the training period: far above the held-out one hints at a leak
    # or a period unlike the present.
    result["current_auc_in_training"] = weighted_auc(
        train["churned"].to_numpy(dtype=float), -train["score"].to_numpy(dtype=float)
    )
    return result
