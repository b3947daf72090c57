"""Scoring functions: map a metric's raw value to 0-100 as Ibis expressions."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from accounthealth.config.model import BooleanScore, Linear, Percentile, ScoreSpec

# Extra columns a percentile cohort is partitioned by, besides the as-of date.
COHORT_COLUMNS = {"all": None, "segment": "segment", "plan": "plan", "owner": "owner"}


def bounded(
    value: ir.FloatingValue, lower: float | None = None, upper: float | None = None
) -> ir.FloatingValue:
    """``value`` limited to [lower, upper]. The caller handles NULL: GREATEST and LEAST skip it.
    Ibis's own clip repeats ``value`` three times per bound, so nested clips grow the SQL
    exponentially and compiling it dominated a scoring pass."""
    if upper is not None:
        value = ibis.least(value, upper)
    if lower is not None:
        value = ibis.greatest(value, lower)
    return value


def linear(value: ir.Value, spec: Linear) -> ir.FloatingValue:
    """0 at bad, 100 at good, clipped; works in either direction (NULL handled by score)."""
    fraction = (value.cast("float64") - spec.bad) / (spec.good - spec.bad)
    return bounded(fraction, 0.0, 1.0) * 100.0


def bands(value: ir.Value, spec: dict[float, float]) -> ir.FloatingValue:
    """The score of the highest threshold the value reaches; below every threshold, the lowest
    threshold's score."""
    thresholds = sorted(spec.items())
    value = value.cast("float64")
    cases = [(value >= t, float(s)) for t, s in reversed(thresholds[1:])]
    lowest = float(thresholds[0][1])
    if not cases:
        return ibis.ifelse(value.isnull(), ibis.null("float64"), lowest)
    return ibis.cases(*cases, (value.isnull(), ibis.null("float64")), else_=lowest)


def boolean(value: ir.Value, spec: BooleanScore) -> ir.FloatingValue:
    """Score for yes and no; numbers count as yes when not zero."""
    truth = value if value.type().is_boolean() else value.cast("float64") != 0
    return ibis.ifelse(truth, float(spec.true), float(spec.false))


def tenure_bucket(tenure_days: ir.IntegerValue, buckets: tuple[int, ...]) -> ir.IntegerValue:
    """Index of the tenure bucket (0 = newest accounts) used as a percentile cohort."""
    cases = [(tenure_days < limit, i) for i, limit in enumerate(sorted(buckets))]
    return ibis.cases(*cases, else_=len(buckets))


def percentile(value: ir.Value, spec: Percentile, table: ir.Table) -> ir.FloatingValue:
    """Mid-rank percentile among accounts of the same cohort on the same date (ties share the
    middle of their ranks; a cohort of one scores 50)."""
    value = value.cast("float64")
    keys: list[ir.Value] = [table.as_of, value.isnull()]
    if spec.within == "tenure":
        keys.append(tenure_bucket(table.tenure_days, spec.tenure_buckets))
    elif COHORT_COLUMNS[spec.within]:
        keys.append(table[COHORT_COLUMNS[spec.within]])
    ordered = value if spec.higher_is_better else -value
    window = ibis.window(group_by=keys, order_by=ordered)
    n = ibis.window(group_by=keys)
    size = value.count().over(n)
    low = ibis.rank().over(window)  # 0-based rank of the first tie
    high = ibis.cume_dist().over(window) * size - 1  # 0-based rank of the last tie
    mid = (low.cast("float64") + high) / 2
    pct = ibis.ifelse(size <= 1, 50.0, mid / (size - 1) * 100.0)
    return ibis.ifelse(value.isnull(), ibis.null("float64"), pct)


def score(spec: ScoreSpec, value: ir.Value, table: ir.Table) -> ir.FloatingValue:
    """Apply a metric's scoring function; a missing value scores missing."""
    if spec.linear is not None:
        out = linear(value, spec.linear)
    elif spec.bands is not None:
        out = bands(value, spec.bands)
    elif spec.boolean is not None:
        out = boolean(value, spec.boolean)
    else:
        assert spec.percentile is not None
        return percentile(value, spec.percentile, table)
    return ibis.ifelse(value.isnull(), ibis.null("float64"), out)
