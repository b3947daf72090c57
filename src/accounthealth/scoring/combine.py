"""Weighted combination of metric scores into component scores, the 0-100 health score, its
data coverage, renewal proximity and the tier, for one segment's scoring model."""

from __future__ import annotations

import functools
import operator

import ibis
import ibis.expr.types as ir

from accounthealth.config.model import TIER_TOLERANCE, DefaultScore, Renewal, Tier
from accounthealth.metrics.definitions import ScoringModel
from accounthealth.scoring.functions import bounded, score


def _sum(values: list[ir.Value]) -> ir.Value:
    return functools.reduce(operator.add, values)


def tier_expr(value: ir.FloatingValue, tiers: tuple[Tier, ...]) -> ir.StringValue:
    """The tier whose lower bound the score reaches (tiers are ordered best first)."""
    cases = [(value >= tier.min - TIER_TOLERANCE, tier.name) for tier in tiers[:-1]]
    return ibis.cases(*cases, (value.isnull(), ibis.null("string")), else_=tiers[-1].name)


def renewal_adjustment(
    base: ir.FloatingValue, days: ir.IntegerValue, renewal: Renewal | None
) -> ir.FloatingValue:
    """Points taken off because renewal is near: the risk (100 - score) grows linearly up to
    (1 + amplify) times on the renewal date."""
    if renewal is None or renewal.amplify == 0:
        return ibis.literal(0.0)
    closeness = bounded(1 - days.cast("float64") / renewal.within_days, 0.0, 1.0)
    factor = 1 + renewal.amplify * ibis.ifelse(days.isnull() | (days < 0), 0.0, closeness)
    risk = (100.0 - base) * factor
    # A NULL base gives NULL whatever bounded() makes of the NULL risk.
    return (100.0 - bounded(risk, upper=100.0)) - base


def score_segment(
    table: ir.Table, model: ScoringModel, value_columns: dict[str, str], columns: dict[str, str]
) -> ir.Table:
    """Score ``table`` (rows of one segment) and select ``columns`` (name: type; the ones this
    segment lacks are typed nulls, so every segment's rows stack in one union).

    Scores are: per metric ``s__`` (effective score), ``p__`` (had data), ``w__`` (share of the
    overall score); per component ``cs__`` (score) and ``cw__`` (share); and base_score,
    renewal_adjustment, own_score, coverage, tier.
    """
    # Each stage reads the previous one's columns rather than repeating its expressions, which
    # keeps the SQL linear in the number of metrics. The stages are few on purpose: Ibis
    # compiles every stage with every column it carries, and a stage per step made compiling
    # the scoring query cost more than running it.
    raw = {m.name: score(m.score, table[value_columns[m.name]], table) for m in model.metrics}
    table = table.mutate(
        segment_model=ibis.literal(model.segment),
        **{f"r__{name}": expr for name, expr in raw.items()},
    )
    present = {}
    effective = {}
    for m in model.metrics:
        r = table[f"r__{m.name}"]
        present[m.name] = r.notnull()
        if isinstance(m.missing, DefaultScore):
            effective[m.name] = r.fill_null(float(m.missing.default))
        else:
            effective[m.name] = r
    total_weight = sum(c.weight for c in model.components)
    comp_scores = {}
    coverage_terms = []
    for c in model.components:
        metric_weight = sum(m.weight for m in c.metrics)
        num = _sum([(effective[m.name] * m.weight).fill_null(0.0) for m in c.metrics])
        den = _sum([ibis.ifelse(effective[m.name].isnull(), 0.0, m.weight) for m in c.metrics])
        comp_scores[c.name] = ibis.ifelse(den == 0, ibis.null("float64"), num / den)
        coverage_terms += [
            ibis.ifelse(present[m.name], c.weight / total_weight * m.weight / metric_weight, 0.0)
            for m in c.metrics
        ]
    table = table.mutate(
        **{f"s__{name}": expr for name, expr in effective.items()},
        **{f"p__{name}": expr for name, expr in present.items()},
        **{f"cs__{name}": expr for name, expr in comp_scores.items()},
        coverage=_sum(coverage_terms),
    )
    table = table.mutate(
        _cws=_sum(
            [ibis.ifelse(table[f"cs__{c.name}"].isnull(), 0.0, c.weight) for c in model.components]
        ),
        **{
            f"_md__{c.name}": _sum(
                [ibis.ifelse(table[f"s__{m.name}"].isnull(), 0.0, m.weight) for m in c.metrics]
            )
            for c in model.components
        },
    )
    shares = {
        c.name: ibis.ifelse(
            table[f"cs__{c.name}"].isnull() | (table._cws == 0), 0.0, c.weight / table._cws
        )
        for c in model.components
    }
    table = table.mutate(**{f"cw__{name}": expr for name, expr in shares.items()})
    unknown = [~table[f"p__{m.name}"] for m in model.metrics if m.missing == "unknown"]
    base = _sum(
        [(table[f"cs__{c.name}"] * table[f"cw__{c.name}"]).fill_null(0.0) for c in model.components]
    )
    base = ibis.ifelse(table._cws == 0, ibis.null("float64"), base)
    if unknown:
        base = ibis.ifelse(functools.reduce(operator.or_, unknown), ibis.null("float64"), base)
    table = table.mutate(
        base_score=base,
        **{
            f"w__{m.name}": ibis.ifelse(
                table[f"s__{m.name}"].isnull() | (table[f"_md__{c.name}"] == 0),
                0.0,
                table[f"cw__{c.name}"] * m.weight / table[f"_md__{c.name}"],
            )
            for c in model.components
            for m in c.metrics
        },
    )
    adjustment = renewal_adjustment(table.base_score, table.days_to_renewal, model.renewal)
    table = table.mutate(renewal_adjustment=adjustment)
    table = table.mutate(own_score=table.base_score + table.renewal_adjustment)
    table = table.mutate(tier=tier_expr(table.own_score, model.tiers))
    return table.select(
        **{
            name: table[name].cast(type_) if name in table.columns else ibis.null(type_)
            for name, type_ in columns.items()
        }
    )
