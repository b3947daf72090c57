"""Score every account as of a batch of dates: metric values, per-segment models, then the
steps that need the whole book (parent rollups, the 4-tier trend split)."""

from __future__ import annotations

import datetime as dt
import typing as t
from concurrent.futures import ThreadPoolExecutor

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa

from accounthealth.config.model import HealthModel
from accounthealth.engine.base import Engine
from accounthealth.engine.parameters import PreparedQuery
from accounthealth.metrics.compute import AsOf, metric_values
from accounthealth.metrics.definitions import ResolvedModel
from accounthealth.metrics.sliding import RUNNING_TABLE, RunningAggregates
from accounthealth.scoring.combine import score_segment
from accounthealth.scoring.querycache import QueryCache

# The temporary table the metric grid of a prepared scoring pass is written to.
GRID_TABLE = "_accounthealth_grid"
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
    ``cache``, one date on an engine that binds parameters runs queries compiled once; with
    ``running``, the aggregates it keeps over a run of days come from it."""
    if cache is not None and engine.prepares and len(dates) == 1:
        return _prepared_scores(engine, resolved, dates[0], cache, running)
    values = running.table(dates) if running is not None else None
    grid, value_columns = metric_values(engine, resolved, dates, running=values)
    # Materialise the metric grid once: each segment's model reads it. Through Arrow: Ibis's
    # own conversion to pandas costs more than the query here.
    with engine.cache(grid) as cached:
        return engine.to_arrow(_scored(cached, resolved, value_columns))


def _prepared_scores(
    engine: Engine,
    resolved: ResolvedModel,
    day: dt.date,
    cache: QueryCache,
    running: RunningAggregates | None,
) -> pa.Table:
    """The scored rows for ``day`` from the cached queries (compiled and stored first when the
    cache has none for this model, data layout and code): the metric grid into a temporary
    table, then the scores read from it. With ``running``, the grid joins the day's running
    values, attached to the query as a table."""
    key = cache.key(engine, resolved) + ("-running" if running is not None else "")
    queries = cache.get(key)
    values = running.values([day]) if running is not None else None
    try:
        with engine.attached(RUNNING_TABLE, values):
            if queries is None:
                queries = _compile_filling_grid(engine, resolved, day, running)
                cache.put(key, queries)
            else:
                grid = queries["grid"]
                engine.run_prepared(grid, AsOf.parameter_values(day, grid.parameters))
        result = engine.run_prepared(queries["scored"], {})
    finally:
        engine.drop_temporary(GRID_TABLE)
    assert result is not None  # the scored query returns rows
    return result


def _compile_filling_grid(
    engine: Engine, resolved: ResolvedModel, day: dt.date, running: RunningAggregates | None
) -> dict[str, PreparedQuery]:
    """Compile the metric grid and the scoring query. The grid's query fills its table for
    ``day`` in a second thread while the scoring query compiles: compiling it is most of a
    first run's extra second, Python work that DuckDB's query, running outside the GIL, does
    not wait for."""
    placeholder = running.placeholder() if running is not None else None
    grid, value_columns = metric_values(
        engine, resolved, [day], parameters=True, running=placeholder
    )
    grid_query = engine.prepare(grid, into=GRID_TABLE)
    with ThreadPoolExecutor(1, thread_name_prefix="accounthealth-grid") as pool:
        parameters = AsOf.parameter_values(day, grid_query.parameters)
        filled = pool.submit(engine.run_prepared, grid_query, parameters)
        scored = _scored(ibis.table(grid.schema(), name=GRID_TABLE), resolved, value_columns)
        queries = {"grid": grid_query, "scored": engine.prepare(scored)}
        filled.result()
    return queries


def _scored(grid: ir.Table, resolved: ResolvedModel, value_columns: dict[str, str]) -> ir.Table:
    columns: dict[str, str] = {c: str(grid[c].type()) for c in ACCOUNT_COLUMNS}
    columns.update(SCORE_COLUMNS)
    for name in resolved.metrics:
        columns.update(
            {
                f"v__{name}": "float64",
                f"s__{name}": "float64",
                f"p__{name}": "boolean",
                f"w__{name}": "float64",
            }
        )
    for seg in resolved.segments:
        for c in seg.components:
            columns.update({f"cs__{c.name}": "float64", f"cw__{c.name}": "float64"})
    parts = []
    claimed = ibis.literal(False)
    for seg in resolved.segments:
        if seg.when is None:
            rows = grid.filter(~claimed)
        else:
            matches = seg.when.apply(grid).fill_null(False)
            rows = grid.filter(matches & ~claimed)
            claimed = claimed | matches
        parts.append(score_segment(rows, seg, value_columns, columns))
    return ibis.union(*parts) if len(parts) > 1 else parts[0]


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
