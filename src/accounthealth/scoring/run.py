"""Score every account as of a batch of dates: metric values, per-segment models, then the
steps that need the whole book (parent rollups, the 4-tier trend split)."""

from __future__ import annotations

import datetime as dt
import typing as t

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from accounthealth.config.model import HealthModel
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
    key = cache.key(engine, resolved) + ("-running" if running is not None else "")
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


def rollup(
    frame: pd.DataFrame, model: HealthModel, tiers_of: t.Callable[[str, float], str]
) -> pd.DataFrame:
    """Parent accounts take the mean (or ARR-weighted mean) of their children's scores, with
    their own score counted as one more child when ``include_parent`` is set."""
    # In place: a batch can be a million rows wide with ~90 columns, and copies add up.
    frame["score"] = frame["own_score"]
    frame["rollup_children"] = 0
    if model.rollup is None or frame.empty:
        return frame
    children = frame.loc[
        frame["parent_account_id"].notna() & frame["own_score"].notna(),
        ["account_id", "as_of", "parent_account_id", "own_score", "arr"],
    ]
    if children.empty:
        return frame
    rows = children.assign(_key=children["parent_account_id"])
    if model.rollup.include_parent:
        is_parent = frame["account_id"].isin(children["parent_account_id"])
        parents = frame.loc[is_parent & frame["own_score"].notna(), list(children.columns)]
        rows = pd.concat([rows, parents.assign(_key=parents["account_id"])])
    if model.rollup.method == "arr_weighted":
        weight = rows["arr"].fillna(0).clip(lower=0)
        # An account without ARR still counts, a little: otherwise all-zero ARR divides by zero.
        rows = rows.assign(_w=np.where(weight > 0, weight, 1e-9))
    else:
        rows = rows.assign(_w=1.0)
    rows = rows.assign(_ws=rows["own_score"] * rows["_w"])
    agg = rows.groupby(["_key", "as_of"]).agg(_ws=("_ws", "sum"), _w=("_w", "sum"))
    n_children = children.groupby(["parent_account_id", "as_of"]).size()
    # Only parents' rows are looked up: an index over the whole batch cost more than the rest.
    at = np.flatnonzero(frame["account_id"].isin(children["parent_account_id"]).to_numpy())
    keys = pd.MultiIndex.from_arrays(
        [frame["account_id"].to_numpy()[at], frame["as_of"].to_numpy()[at]]
    )
    rolled = (agg["_ws"] / agg["_w"]).reindex(keys).to_numpy()
    count = n_children.rename_axis(["_key", "as_of"]).reindex(keys).fillna(0).to_numpy()
    # A parent rolls up only on dates when at least one of its children is scored.
    found = ~np.isnan(rolled) & (count > 0)
    has = np.zeros(len(frame), dtype=bool)
    has[at[found]] = True
    frame.loc[has, "score"] = rolled[found]
    frame.loc[has, "rollup_children"] = count[found].astype(int)
    frame.loc[has, "tier"] = [
        tiers_of(s, v)
        for s, v in zip(frame.loc[has, "segment_model"], frame.loc[has, "score"], strict=True)
    ]
    return frame


def split_by_trend(frame: pd.DataFrame, history: pd.DataFrame, model: HealthModel) -> pd.DataFrame:
    """The 4-tier model: the middle tier becomes Declining when the score fell by ``drop``
    points or more over ``days``, Stable otherwise (also when there is no earlier score)."""
    spec = model.trend_tiers
    if spec is None or frame.empty:
        return frame
    known = pd.concat(
        [history[["account_id", "as_of", "score"]], frame[["account_id", "as_of", "score"]]]
    )
    known = known.drop_duplicates(["account_id", "as_of"], keep="last")
    earlier = known.assign(as_of=known["as_of"] + dt.timedelta(days=spec.days)).rename(
        columns={"score": "_then"}
    )
    merged = frame.merge(earlier, on=["account_id", "as_of"], how="left")
    middle = merged["tier"] == spec.split
    declining = middle & ((merged["score"] - merged["_then"]) <= -spec.drop)
    merged.loc[middle, "tier"] = spec.stable
    merged.loc[declining, "tier"] = spec.declining
    return merged.drop(columns=["_then"])


def churn_probability(frame: pd.DataFrame, model: HealthModel) -> pd.Series:
    """P(churn within the model's horizon) from each final score, when the model has one."""
    spec = model.churn_probability
    if spec is None:
        return pd.Series(np.nan, index=frame.index, dtype="float64")
    z = spec.intercept + spec.slope * frame["score"].astype("float64")
    return 1 / (1 + np.exp(-z))
