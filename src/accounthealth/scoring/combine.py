"""Weighted combination of metric scores into component scores, the 0-100 health score, its
data coverage, renewal proximity and the tier, for one segment's scoring model."""

from __future__ import annotations

import functools

import numpy as np

from accounthealth.config.model import TIER_TOLERANCE, DefaultScore, Renewal, Tier
from accounthealth.metrics.compute import value_column
from accounthealth.metrics.definitions import ScoringModel
from accounthealth.scoring.functions import Grid, Values, bounded, reaches, score

# The columns ``score_segment`` gives only with ``shares``, by their prefixes: whether each
# metric had data and its share of the score, and each component's share.
SHARES = ("p__", "w__", "cw__")


def tiers_of(value: Values, tiers: tuple[Tier, ...]) -> np.ndarray:
    """The position in ``tiers`` (ordered best first) of the tier whose lower bound each score
    reaches; -1 for no score."""
    out = np.full(len(value.data), len(tiers) - 1)
    for i in reversed(range(len(tiers) - 1)):
        out = np.where(reaches(value.data, tiers[i].min - TIER_TOLERANCE), i, out)
    return np.where(value.null, -1, out)


def renewal_adjustment(base: Values, days: Values, renewal: Renewal | None) -> Values:
    """Points taken off because renewal is near: the risk (100 - score) grows linearly up to
    (1 + amplify) times on the renewal date."""
    if renewal is None or renewal.amplify == 0:
        return Values(np.zeros(len(base.data)), np.zeros(len(base.data), dtype=bool))
    closeness = bounded(1 - days.data / renewal.within_days, 0.0, 1.0)
    factor = 1 + renewal.amplify * np.where(days.null | (days.data < 0), 0.0, closeness)
    risk = (100.0 - base.data) * factor
    return Values((100.0 - bounded(risk, upper=100.0)) - base.data, base.null)


def score_segment(
    grid: Grid, rows: slice, model: ScoringModel, shares: bool = True
) -> dict[str, Values | np.ndarray]:
    """Score the ``rows`` of ``grid`` that are one segment's with its model.

    Returns, by column: per metric ``s__`` (effective score), ``p__`` (had data, an array of
    booleans), ``w__`` (share of the overall score); per component ``cs__`` (score) and ``cw__``
    (share); and base_score, renewal_adjustment, own_score, coverage, and tier (an array of
    positions in the model's tiers, -1 for none). Without ``shares``, no ``p__``, ``w__`` or
    ``cw__``: where they are worked out as history is read (``SHARES``), they are not here.
    """
    n = rows.stop - rows.start
    zero, no = np.zeros(n), np.zeros(n, dtype=bool)
    cohort = functools.cache(lambda spec: grid.cohorts(spec, rows))
    out: dict[str, Values | np.ndarray] = {}
    effective: dict[str, Values] = {}
    present: dict[str, np.ndarray] = {}
    for m in model.metrics:
        raw = score(m.score, grid.values(value_column(m.name), rows), cohort)
        present[m.name] = ~raw.null
        effective[m.name] = (
            raw.fill_null(float(m.missing.default)) if isinstance(m.missing, DefaultScore) else raw
        )
    total_weight = sum(c.weight for c in model.components)
    component: dict[str, Values] = {}
    # Per component, the weight of its metrics that have a score.
    scored_weight: dict[str, np.ndarray] = {}
    # A metric with rows without a score adds its score with 0 there, and its weight times
    # 1.0 where it has one (0 where not); one with a score on every row (most: a missing value
    # scores a default) adds its score and its weight as they are, in the same order, so the
    # sums are the same to the last bit (27 of the benchmark's 45 metrics of a segment: 10 ms
    # a day).
    gaps = {name: bool(s.null.any()) for name, s in effective.items()}
    coverage = zero.copy()
    for c in model.components:
        metric_weight = sum(m.weight for m in c.metrics)
        num, den = zero.copy(), zero.copy()
        for m in c.metrics:
            s, part = effective[m.name], c.weight / total_weight * m.weight / metric_weight
            if gaps[m.name]:
                num += np.where(s.null, 0.0, s.data) * m.weight
                den += (~s.null).astype(np.float64) * m.weight
            else:
                num += s.data * m.weight
                den += m.weight
            coverage += part if present[m.name].all() else present[m.name] * part
        with np.errstate(divide="ignore", invalid="ignore"):
            component[c.name] = Values(num / den, den == 0)
        scored_weight[c.name] = den
    weights = zero.copy()
    for c in model.components:
        weights += np.where(component[c.name].null, 0.0, c.weight)
    base = zero.copy()
    for c in model.components:
        cs = component[c.name]
        md = scored_weight[c.name]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(cs.null | (weights == 0), 0.0, c.weight / weights)
        out[f"cs__{c.name}"] = cs
        base += np.where(cs.null, 0.0, cs.data * share)
        unweighted = md == 0
        for m in c.metrics:
            out[f"s__{m.name}"] = s = effective[m.name]
            if not shares:
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                w = np.where(s.null | unweighted, 0.0, share * m.weight / md)
            # p__, w__ and cw__ are worked out again in SQL by a DuckDB store's view of its
            # lean detail files (store/derived.py); tests/store/test_lean_detail.py keeps them
            # equal.
            out[f"p__{m.name}"], out[f"w__{m.name}"] = present[m.name], Values(w, no)
        if shares:
            out[f"cw__{c.name}"] = Values(share, no)
    unknown = no.copy()
    for m in model.metrics:
        if m.missing == "unknown":
            unknown |= ~present[m.name]
    base_score = Values(base, (weights == 0) | unknown)
    days = grid.values("days_to_renewal", rows)
    adjustment = renewal_adjustment(base_score, days, model.renewal)
    own = Values(base_score.data + adjustment.data, base_score.null | adjustment.null)
    out |= {
        "base_score": base_score,
        "renewal_adjustment": adjustment,
        "own_score": own,
        "coverage": Values(coverage, no),
        "tier": tiers_of(own, model.tiers),
    }
    return out
