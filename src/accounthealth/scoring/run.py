"""Score every account as of a batch of dates: metric values, then per-segment models (the
steps that need the whole book come after, in scoring/finish.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import typing as t

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from accounthealth.engine.base import Engine
from accounthealth.engine.parameters import PreparedQuery
from accounthealth.metrics.compute import AsOf, value_column
from accounthealth.metrics.definitions import ResolvedModel
from accounthealth.metrics.series import stable_order
from accounthealth.metrics.sliding import RUNNING_TABLE, Compiled, RunningAggregates
from accounthealth.scoring.combine import SHARES, score_segment
from accounthealth.scoring.day_grid import DayGrid
from accounthealth.scoring.functions import Grid, Values
from accounthealth.scoring.grid import ACCOUNT_COLUMNS, SEGMENT_MODEL, grid_query
from accounthealth.scoring.querycache import QueryCache

# The score columns every segment's model produces, with their types. The tier as positions
# in its segment model's tiers, each segment's rows with their own names (final_scores reads
# the positions: finding them again in 184,000 names took 4 ms of a daily run).
SCORE_COLUMNS = {
    "segment_model": pa.string(),
    "base_score": pa.float64(),
    "renewal_adjustment": pa.float64(),
    "own_score": pa.float64(),
    "coverage": pa.float64(),
    "tier": pa.dictionary(pa.int32(), pa.string()),
}


def score_table(
    engine: Engine,
    resolved: ResolvedModel,
    dates: t.Sequence[dt.date],
    cache: QueryCache | None = None,
    running: RunningAggregates | None = None,
    days: DayGrid | None = None,
    at_last_day: t.Callable[[], None] | None = None,
    segment_scored: t.Callable[[pa.Table], None] | None = None,
    shares: bool = True,
) -> pa.Table:
    """One row per account and date with every metric, component and overall score. With a
    ``cache``, one date on an engine that binds parameters runs a query compiled once; with
    ``running``, the aggregates it keeps over a run of days come from it; with ``days``
    (``day_grid``), one date's grid is worked out in memory from them. ``at_last_day`` is
    called once ``running`` has reached the last of ``dates``, before the dates are scored
    (the run starts keeping its state for the next day then); ``segment_scored`` with each
    segment's rows once scored (``scored_rows``). Without ``shares``, the rows have no
    columns of the metrics' and components' shares, nor of which metrics had data
    (``combine.SHARES``).

    The engine computes the metric values (the work that reads the data, where the data is);
    the scores are then computed here, on those values: a few arithmetic steps per account,
    for which a query of its own cost more than the steps (three windows and a union of
    segments, run and compiled each pass) and NumPy costs a fraction."""
    at_last_day = at_last_day or _nothing
    numbers = None
    if days is not None and len(dates) == 1:
        grid, numbers = days.numbered(dates[0])
        at_last_day()
    elif cache is not None and engine.prepares and len(dates) == 1:
        grid = _prepared_grid(engine, resolved, dates[0], cache, running, at_last_day)
    else:
        values = running.table(dates) if running is not None else None
        at_last_day()
        grid = engine.to_arrow(grid_query(engine, resolved, dates, running=values))
    return scored_rows(grid, resolved, numbers, segment_scored, shares)


def _nothing() -> None:
    pass


def day_grid(
    engine: Engine, resolved: ResolvedModel, running: RunningAggregates, cache: QueryCache | None
) -> DayGrid | None:
    """The grid of each day of ``running``'s run worked out in memory (scoring/day_grid.py),
    where it gives the day's query's results; else None. The day's query is compiled and
    stored all the same (a run the grid cannot serve runs it), and its columns are the
    grid's."""
    if cache is not None and engine.prepares:
        types = _compiled_grid(engine, resolved, cache, running).types()
    else:
        query = grid_query(engine, resolved, [running.first], running=running.placeholder())
        types = query.schema()
    compiled = compiled_queries(engine, resolved, cache)
    return DayGrid.serving(engine, resolved, running, types.to_pyarrow(), compiled)


def _prepared_grid(
    engine: Engine,
    resolved: ResolvedModel,
    day: dt.date,
    cache: QueryCache,
    running: RunningAggregates | None,
    at_day: t.Callable[[], None],
) -> pa.Table:
    """The metric grid of ``day`` from the cached query. With ``running``, the grid joins the
    day's running values, attached to the query as a table (``at_day`` called once taken)."""
    query = _compiled_grid(engine, resolved, cache, running)
    values = running.values([day]) if running is not None else None
    at_day()
    parameters = AsOf.parameter_values(day, query.parameters)
    return engine.run_attached(query, parameters, {RUNNING_TABLE: values})


def _compiled_grid(
    engine: Engine, resolved: ResolvedModel, cache: QueryCache, running: RunningAggregates | None
) -> PreparedQuery:
    """The grid's query for one date, from the cache (compiled and stored first when it has
    none for this model, data layout and code)."""
    key = cache.key(engine, resolved)
    if running is not None:
        # The aggregates joined from running values are left out of the query: one query per
        # set of them (a run carrying on keeps fewer than a fresh one).
        key += "-running-" + "-".join(sorted(running.aggregates.values()))
    # Compiled with a date that stands for any (a parameter): the first is as good as any.
    first = running.first if running is not None else dt.date.today()

    def compile_grid() -> PreparedQuery:
        # The running values' placeholder made only to compile: typing its columns through
        # Ibis took 6 ms of a daily run that found the query compiled.
        placeholder = running.placeholder() if running is not None else None
        return engine.prepare(
            grid_query(engine, resolved, [first], parameters=True, running=placeholder)
        )

    return cache.prepared(key, compile_grid)


def compiled_queries(
    engine: Engine, resolved: ResolvedModel, cache: QueryCache | None
) -> Compiled | None:
    """The queries of running values compiled once (``RunningAggregates``), kept in ``cache``
    beside the grid's; None where the engine runs no compiled queries."""
    if cache is None or not engine.prepares:
        return None

    def compiled(name: str, build: t.Callable[[], ibis.Table]) -> PreparedQuery:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        key = f"{cache.key(engine, resolved)}-read-{digest}"
        return cache.prepared(key, lambda: engine.prepare(build()))

    return compiled


def scored_rows(
    grid: pa.Table,
    resolved: ResolvedModel,
    numbers: dict[str, Values] | None = None,
    segment_scored: t.Callable[[pa.Table], None] | None = None,
    shares: bool = True,
) -> pa.Table:
    """The scored rows of a metric grid, one segment's after another, the largest segment's
    first: the account columns, each segment model's scores, and per metric and component the
    detail (typed NULLs where a row's model lacks it). ``numbers``: columns of the grid as
    NumPy already (``Grid``); ``segment_scored`` is called with each segment's rows as soon as
    they are scored (the history writer writes their detail while the next is scored: the
    largest first, since it takes longest to write); ``shares``: as ``score_table``'s."""
    segments = resolved.segments
    which = grid.column(SEGMENT_MODEL).to_numpy()
    if np.any(np.diff(which) < 0):
        # Each segment's rows together: its scores are then slices, stacked without copying.
        order = stable_order(which)
        grid, which, numbers = grid.take(order), which[order], None
    bounds = np.searchsorted(which, np.arange(len(segments) + 1))
    sizes = np.diff(bounds)
    types = dict(SCORE_COLUMNS)
    for name in resolved.metrics:
        types |= {f"s__{name}": pa.float64(), f"p__{name}": pa.bool_(), f"w__{name}": pa.float64()}
    for name in dict.fromkeys(c.name for seg in segments for c in seg.components):
        types |= {f"cs__{name}": pa.float64(), f"cw__{name}": pa.float64()}
    if not shares:
        types = {c: type_ for c, type_ in types.items() if not c.startswith(SHARES)}
    source = Grid(grid, numbers)
    parts = []
    for i in np.argsort(-sizes, kind="stable"):
        if not sizes[i]:
            break
        seg, start, size = segments[i], int(bounds[i]), int(sizes[i])
        rows = slice(start, start + size)
        scored: dict[str, Values | np.ndarray | pa.Array] = {
            **score_segment(source, rows, seg, shares)
        }
        scored["segment_model"] = pa.nulls(size, pa.string()).fill_null(seg.segment)
        if "tier" in scored:
            tiers = t.cast(np.ndarray, scored["tier"]).astype(np.int32)
            names = pa.array([tier.name for tier in seg.tiers], pa.string())
            scored["tier"] = pa.DictionaryArray.from_arrays(pa.array(tiers, mask=tiers < 0), names)
        parts.append(_segment_rows(grid.slice(start, size), scored, types, resolved))
        if segment_scored is not None:
            segment_scored(parts[-1])
    if not parts:
        return _segment_rows(grid.slice(0, 0), {}, types, resolved)
    return pa.concat_tables(parts)


def _segment_rows(
    grid: pa.Table,
    scored: t.Mapping[str, Values | np.ndarray | pa.Array],
    types: dict[str, pa.DataType],
    resolved: ResolvedModel,
) -> pa.Table:
    """One segment's scored rows: its ``grid`` rows' account columns and values, and its
    ``scored`` columns (``score_segment``) of the ``types`` every segment's rows have."""
    typed = {c: _arrow(scored.get(c), grid.num_rows, type_) for c, type_ in types.items()}
    columns: dict[str, pa.Array | pa.ChunkedArray] = {c: grid.column(c) for c in ACCOUNT_COLUMNS}
    columns |= {c: typed[c] for c in SCORE_COLUMNS}
    for name in resolved.metrics:
        columns[value_column(name)] = pc.cast(grid.column(value_column(name)), pa.float64())
        columns |= {c: typed[c] for c in (f"{kind}__{name}" for kind in "spw") if c in typed}
    columns |= {c: part for c, part in typed.items() if c.startswith(("cs__", "cw__"))}
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
