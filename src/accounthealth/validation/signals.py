"""Signal analysis: does each metric and component vary, does it predict churn on its own,
which ones measure the same thing, and do the scores themselves spread out."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from accounthealth.validation.measures import weighted_auc

# Thresholds of the flags (documented in docs/validation.md).
LOW_COVERAGE = 0.5
SAME_VALUE = 0.9
NO_POWER = 0.05  # AUC within 0.5 +/- this predicts nothing
CORRELATED = 0.8
TOO_GOOD = 0.95  # AUC alone above this: suspicious of data dated before it was known
CLUSTERED = 0.5  # share of scores in one 10-point band
MIN_ROWS = 30


def _round(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def _signal(
    name: str,
    label: str,
    values: pd.Series,
    scores: pd.Series,
    present: pd.Series,
    obs: pd.DataFrame,
) -> dict:
    """Coverage, spread and power of one metric (or component) against churn."""
    have = present.to_numpy(dtype=bool)
    known = obs["known"].to_numpy(dtype=bool) & have
    churned = obs["churned"].to_numpy(dtype=float)
    v = values[have]
    modal = float(v.round(9).value_counts(normalize=True).iloc[0]) if len(v) else math.nan
    auc = weighted_auc(churned[known], -scores.to_numpy(dtype=float)[known])
    flags = []
    coverage = float(have.mean()) if len(have) else math.nan
    if coverage < LOW_COVERAGE:
        flags.append(f"present for only {coverage:.0%} of observations")
    if len(v) and (modal >= SAME_VALUE or scores[have].std() < 1e-9):
        flags.append(f"{modal:.0%} of accounts have the same value: it does not differentiate")
    if not math.isnan(auc) and known.sum() >= MIN_ROWS:
        if auc >= TOO_GOOD:
            flags.append(
                "predicts churn almost perfectly on its own: check that its data was known on "
                "the dates it carries (a leak of the outcome would look like this)"
            )
        elif auc < 0.5 - NO_POWER:
            flags.append("higher scores churn more: the scoring runs backwards")
        elif abs(auc - 0.5) <= NO_POWER:
            flags.append("predicts churn no better than chance")
    return {
        "name": name,
        "label": label,
        "coverage": _round(coverage),
        "distinct_values": int(v.round(9).nunique()),
        "same_value_share": _round(modal),
        "mean": _round(v.mean()) if len(v) else None,
        "std": _round(v.std()) if len(v) > 1 else None,
        "score_std": _round(scores[have].std()) if have.sum() > 1 else None,
        "auc": _round(auc),
        "known_observations": int(known.sum()),
        "flags": flags,
    }


def analyse(observed: pd.DataFrame, metrics: dict[str, str], components: list[str]) -> dict:
    """The signal table, correlated pairs and the score distribution of a backtest's
    observations, for ``metrics`` (name: label) and ``components`` (AUC uses the known
    observations, as the backtest does)."""
    obs = observed.reset_index(drop=True)
    metric_rows = [
        _signal(
            name,
            label,
            obs[f"v__{name}"].astype(float),
            obs[f"s__{name}"].astype(float),
            obs[f"p__{name}"].fillna(False).astype(bool),
            obs,
        )
        for name, label in metrics.items()
    ]
    component_rows = []
    for c in components:
        score = obs[f"cs__{c}"].astype(float)
        component_rows.append(_signal(c, c, score, score, score.notna(), obs))
    scores = obs[[f"s__{name}" for name in metrics]].astype(float)
    scores.columns = list(metrics)
    rho = scores.corr(method="spearman", min_periods=MIN_ROWS)
    pairs = [
        {"a": a, "b": b, "spearman": _round(rho.loc[a, b])}
        for i, a in enumerate(rho.columns)
        for b in rho.columns[i + 1 :]
        if not math.isnan(rho.loc[a, b]) and abs(rho.loc[a, b]) >= CORRELATED
    ]
    return {
        "metrics": metric_rows,
        "components": component_rows,
        "correlated": sorted(pairs, key=lambda p: -abs(p["spearman"])),
        "scores": distribution(obs["score"].astype(float)),
    }


def distribution(score: pd.Series) -> dict:
    """Shares of scores per 10-point band, their spread, and a warning when they cluster."""
    score = score.dropna()
    band = np.minimum((score // 10) * 10, 90).astype(int)
    shares = band.value_counts(normalize=True).reindex(range(0, 100, 10), fill_value=0.0)
    warnings = []
    if len(score) and shares.max() > CLUSTERED:
        top = int(shares.idxmax())
        warnings.append(
            f"{shares.max():.0%} of scores fall between {top} and {top + 10}: "
            "they cluster, so the score separates few accounts"
        )
    return {
        "bands": [{"band": f"{b}-{b + 10}", "share": _round(s)} for b, s in shares.items()],
        "mean": _round(score.mean()) if len(score) else None,
        "std": _round(score.std()) if len(score) > 1 else None,
        "warnings": warnings,
    }
