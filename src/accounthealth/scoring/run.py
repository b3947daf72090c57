"""Score every account as of a batch of dates: metric values, then per-segment models (the
steps that need the whole book come after, in scoring/finish.py)."""

from __future__ import annotations

import datetime as dt
import typing as t

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from accounthealth.engine.base import Engine
from accounthealth.metrics.compute import AsOf, metric_values, value_column
from accounthealth.metrics.definitions import ResolvedModel
from accounthealth.metrics.sliding import RUNNING_TABLE, RunningAggregates, RunningValues
from accounthealth.scoring.combine import score_segment
from accounthealth.scoring.functions import COHORT_COLUMNS, Grid, Values
from accounthealth.scoring.querycache import QueryCache

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
# The score columns every segment's model produces, with their types.
SCORE_COLUMNS = {
    "segment_model": "string",
    "base_score": "float64",
    "renewal_adjustment": "float64",
    "own_score": "float64",
    "coverage": "float64",
    "tier": "string",
}


def score_table(
    engine: Engine,
    resolved: ResolvedModel,
    dates: t.Sequence[dt.date],
    cache: QueryCache | None = None,
    running: RunningAggregates | None = None,
) -> pa.Table:
    """One row per account and date with every metric, component and overall score. With a
    ``cache``, one date on an engine that binds parameters runs a query compiled once; with
    ``running``, the aggregates it keeps over a run of days come from it.

    The engine computes the metric values (the work that reads the data, where the data is);
    the scores are then computed here, on those values: a few arithmetic steps per account,
    for which a query of its own cost more than the steps (three windows and a union of
    segments, run and compiled each pass) and NumPy costs a fraction."""
    if cache is not None and engine.prepares and len(dates) == 1:
        grid = _prepared_grid(engine, resolved, dates[0], cache, running)
    else:
        values = running.table(dates) if running is not None else None
        grid = engine.to_arrow(_grid(engine, resolved, dates, running=values))
    return scored_rows(grid, resolved)


def _prepared_grid(
    engine: Engine,
    resolved: ResolvedModel,
    day: dt.date,
    cache: QueryCache,
    running: RunningAggregates | None,
) -> pa.Table:
    """The metric grid of ``day`` from the cached query (compiled and stored first when the
    cache has none for this model, data layout and code). With ``running``, the grid joins
    the day's running values, attached to the query as a table."""
    key = cache.key(engine, resolved)
    if running is not None:
        # The aggregates joined from running values are left out of the query: one query per
        # set of them (a run carrying on keeps fewer than a fresh one).
        key += "-running-" + "-".join(sorted(running.aggregates.values()))
    query = cache.get(key)
    values = running.values([day]) if running is not None else None
    with engine.attached(RUNNING_TABLE, values):
        if query is None:
            placeholder = running.placeholder() if running is not None else None
            query = engine.prepare(
                _grid(engine, resolved, [day], parameters=True, running=placeholder)
            )
            cache.put(key, query)
        return engine.run_prepared(query, AsOf.parameter_values(day, query.parameters))


def _grid(
    engine: Engine,
    resolved: ResolvedModel,
    dates: t.Sequence[dt.date],
    parameters: bool = False,
    running: RunningValues | None = None,
) -> ir.Table:
    """The metric values of every account on ``dates``, the columns scoring reads beside them,
    and the segment model that scores each row: its position in the model's segments, the
    first whose condition the row meets, else the default model's (the last)."""
    grid, value_columns = metric_values(
        engine, resolved, dates, parameters=parameters, running=running
    )
    *segments, default = resolved.segments
    assert default.when is None, "the default model comes last"
    cases = [(seg.when.apply(grid).fill_null(False), i) for i, seg in enumerate(segments)]
    last = len(segments)
    label = ibis.cases(*cases, else_=last) if cases else ibis.literal(last)
    cohorts = {
        column
        for seg in resolved.segments
        for m in seg.metrics
        if m.score.percentile is not None
        for column in [COHORT_COLUMNS.get(m.score.percentile.within)]
        if column is not None
    }
    keep = dict.fromkeys([*ACCOUNT_COLUMNS, "tenure_days", *sorted(cohorts)])
    return grid.select(*keep, *value_columns.values(), **{SEGMENT_MODEL: label})


def scored_rows(grid: pa.Table, resolved: ResolvedModel) -> pa.Table:
    """The scored rows of a metric grid, one segment's after another: the account columns,
    each segment model's scores, and per metric and component the detail (typed NULLs where a
    row's model lacks it)."""
    segments = resolved.segments
    which = grid.column(SEGMENT_MODEL).to_numpy()
    if np.any(np.diff(which) < 0):
        # Each segment's rows together: its scores are then slices, stacked without copying.
        order = np.argsort(which, kind="stable")
        grid, which = grid.take(order), which[order]
    bounds = np.searchsorted(which, np.arange(len(segments) + 1))
    types = {c: pa.type_for_alias(type_) for c, type_ in SCORE_COLUMNS.items()}
    for name in resolved.metrics:
        types |= {f"s__{name}": pa.float64(), f"p__{name}": pa.bool_(), f"w__{name}": pa.float64()}
    for name in dict.fromkeys(c.name for seg in segments for c in seg.components):
        types |= {f"cs__{name}": pa.float64(), f"cw__{name}": pa.float64()}
    chunks: dict[str, list[pa.Array]] = {column: [] for column in types}
    source = Grid(grid)
    for i, seg in enumerate(segments):
        rows = slice(int(bounds[i]), int(bounds[i + 1]))
        size = rows.stop - rows.start
        scored: dict[str, Values | np.ndarray | pa.Array] = {}
        if size:
            scored |= score_segment(source, rows, seg)
        scored["segment_model"] = pa.nulls(size, pa.string()).fill_null(seg.segment)
        if "tier" in scored:
            tiers = t.cast(np.ndarray, scored["tier"])
            tier_names = pa.array([tier.name for tier in seg.tiers])
            scored["tier"] = tier_names.take(pa.array(tiers, mask=tiers < 0))
        for column, type_ in types.items():
            chunks[column].append(_arrow(scored.get(column), size, type_))
    columns: dict[str, pa.Array | pa.ChunkedArray] = {c: grid.column(c) for c in ACCOUNT_COLUMNS}
    stacked = {column: pa.chunked_array(parts, types[column]) for column, parts in chunks.items()}
    columns |= {column: stacked[column] for column in SCORE_COLUMNS}
    for name in resolved.metrics:
        column = value_column(name)
        columns[column] = pc.cast(grid.column(column), pa.float64())
        columns |= {f"{kind}__{name}": stacked[f"{kind}__{name}"] for kind in ("s", "p", "w")}
    columns |= {c: part for c, part in stacked.items() if c.startswith(("cs__", "cw__"))}
    return pa.table(columns)


def _arrow(
    scored: Values | np.ndarray | pa.Array | None, size: int, type_: pa.DataType
) -> pa.Array:
    """One segment's values of a column as Arrow; NULLs where its model has no such column."""
    if scored is None:
        return pa.nulls(size, type_)
    if isinstance(scored, Values):
        return scored.to_arrow()
    if isinstance(scored, pa.Array):
        return scored
    return pa.array(scored, type_)
