"""The metric grid: every account that is a customer on a date, with its metric values, the
columns scoring reads beside them, and the segment model that scores it."""

from __future__ import annotations

import datetime as dt
import typing as t

import ibis
import ibis.expr.types as ir

from accounthealth.engine.base import Engine
from accounthealth.metrics.compute import metric_values
from accounthealth.metrics.definitions import ResolvedModel
from accounthealth.metrics.sliding import RunningValues
from accounthealth.scoring.functions import COHORT_COLUMNS

# The grid's column with the position, in the model's segments, of the one that scores the row.
SEGMENT_MODEL = "_segment_model"
# Population columns kept beside the scores (a snapshot of the account on the date).
ACCOUNT_COLUMNS = (
    "account_id",
    "as_of",
    "name",
    "segment",
    "owner",
    "manager",
    "parent_account_id",
    "arr",
    "days_to_renewal",
)


def grid_query(
    engine: Engine,
    resolved: ResolvedModel,
    dates: t.Sequence[dt.date],
    parameters: bool = False,
    running: RunningValues | None = None,
) -> ir.Table:
    """The grid of ``dates`` as a query (see ``metric_values`` for ``parameters`` and
    ``running``)."""
    grid, value_columns = metric_values(
        engine, resolved, dates, parameters=parameters, running=running
    )
    cohorts = {
        column
        for seg in resolved.segments
        for m in seg.metrics
        if m.score.percentile is not None
        for column in [COHORT_COLUMNS.get(m.score.percentile.within)]
        if column is not None
    }
    keep = dict.fromkeys([*ACCOUNT_COLUMNS, "tenure_days", *sorted(cohorts)])
    label = segment_label(grid, resolved)
    return grid.select(*keep, *value_columns.values(), **{SEGMENT_MODEL: label})


def segment_label(rows: ir.Table, resolved: ResolvedModel) -> ir.Value:
    """The position, in the model's segments, of the one that scores each row: the first
    whose condition the row meets, else the default model's (the last)."""
    *segments, default = resolved.segments
    assert default.when is None, "the default model comes last"
    cases = [(seg.when.apply(rows).fill_null(False), i) for i, seg in enumerate(segments)]
    last = len(segments)
    return ibis.cases(*cases, else_=last) if cases else ibis.literal(last)
