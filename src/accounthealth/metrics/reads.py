"""What a run of running values (metrics/sliding.py) reads from the engine. Each read is a
query of the run's first and last days (literal dates, or parameters of a query compiled
once), with a name a run carrying on compiles it under:

- per group of aggregates over a table, its rows summarised per account and day
  (``day_rows``), or, for rows open on a date, those opening and closing (``open_rows``);
- per distinct aggregate, the values each account saw and on which days (``values_seen``),
  when each was first seen (``first_seen``, over all history), or only on the run's own days
  (``seen_on_run_days``, a run carrying on).

A read's rows carry an ``account_id``: the run joins its accounts' positions to them.
"""

from __future__ import annotations

import datetime as dt
import typing as t

import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir

from accounthealth.engine.base import Engine
from accounthealth.metrics.definitions import Aggregate

# An aggregate's own filter on its table's rows (its ``where``), as the run compiles it.
Filter = t.Callable[[Aggregate, ir.Table], ir.BooleanValue]
# A read of the run's days: its name, and the query of the run's first and last day it makes.
Read = tuple[str, t.Callable[[ir.DateValue, ir.DateValue], ir.Table]]


def day_rows(
    engine: Engine, group: list[Aggregate], where_of: Filter, resumed: bool, name: str
) -> Read:
    """Per account and day: the row count, each summed column's count and sum, the last day
    and for latest the last time and its value, of the aggregates ``group`` (``name``: their
    series'). Days before any window of the group begins are folded into one row per account,
    so all history counts once; ``resumed``: only the run's own days are read, the rest being
    carried."""
    floor = min(-a.offset - (a.window or 0) for a in group)

    def grouped(first: ir.DateValue, last: ir.DateValue) -> ir.Table:
        rows = _rows(engine, group[0], where_of)
        u = _day(rows[group[0].time])
        index = _index(u, first)
        rows = rows.filter(u <= last)
        if resumed:
            rows = rows.filter(_from(rows[group[0].time], first))
        rows = rows.mutate(_d=ibis.greatest(index, floor), _u=index)
        measures: dict[str, ir.Value] = {"cnt": rows.count(), "last_u": rows._u.max()}
        for agg in group:
            if agg.kind in ("sum", "avg"):
                measures |= _sum_measures(rows, t.cast(str, agg.column))
            elif agg.kind == "latest":
                # The time itself orders the rows (as the per-date argmax does); a timestamp
                # comes back as microseconds.
                measures["last_t"] = rows[agg.time].cast("timestamp").max()
                measures[f"v_{agg.column}"] = (
                    rows[t.cast(str, agg.column)].cast("float64").argmax(rows[agg.time])
                )
        return rows.group_by(["account_id", "_d"]).aggregate(**measures)

    return f"rows {resumed} {name}", grouped


def open_rows(
    engine: Engine, group: list[Aggregate], where_of: Filter, resumed: bool, name: str
) -> tuple[Read, Read]:
    """Rows open on some day of the run, counted per account on the day they open (days
    before the run folded into one) and on the day they close, for the aggregates ``group``
    (``name``: their series'); ``resumed``: only the rows opened on the run's own days."""
    agg = group[0]
    o = agg.offset
    columns = {c for a in group if a.kind in ("sum", "avg") for c in [t.cast(str, a.column)]}

    def measures(table: ir.Table) -> dict[str, ir.Value]:
        out: dict[str, ir.Value] = {"cnt": table.count()}
        for c in columns:
            out |= _sum_measures(table, c)
        return out

    def read(first: ir.DateValue, last: ir.DateValue) -> ir.Table:
        rows = _rows(engine, agg, where_of)
        u, end = _day(rows[agg.time]), _day(rows[agg.until])
        # Rows closed before the first day read nothing; a row closed on or before the day
        # it opened is never open.
        rows = rows.filter(
            u <= _before(last, o),
            end.isnull() | ((end > _before(first, o)) & (end > u)),
        )
        if resumed:
            rows = rows.filter(_from(rows[agg.time], first))
        return rows

    def opens(first: ir.DateValue, last: ir.DateValue) -> ir.Table:
        rows = read(first, last)
        rows = rows.mutate(_d=ibis.greatest(_index(_day(rows[agg.time]), first), -o))
        return rows.group_by(["account_id", "_d"]).aggregate(**measures(rows))

    def closes(first: ir.DateValue, last: ir.DateValue) -> ir.Table:
        rows = read(first, last)
        rows = rows.filter(rows[agg.until].notnull())
        rows = rows.mutate(_d=_index(_day(rows[agg.until]), first))
        return rows.group_by(["account_id", "_d"]).aggregate(**measures(rows))

    named = f"{resumed} {name}"
    return (f"opens {named}", opens), (f"closes {named}", closes)


def values_seen(engine: Engine, agg: Aggregate, where_of: Filter, col: str) -> Read:
    """The distinct aggregate ``agg``'s (column ``col``) sightings up to the run's last day
    that its window can still hold on the first: each account, value and day index once."""

    def query(first: ir.DateValue, last: ir.DateValue) -> ir.Table:
        rows = _seen(engine, agg, where_of, first, last)
        return rows.select("account_id", "_v", _d=rows._u)

    return f"values seen {col}", query


def first_seen(engine: Engine, agg: Aggregate, where_of: Filter, col: str) -> Read:
    """The day index each account first saw each value of the distinct aggregate ``agg``
    (column ``col``), one without a window (over all history), up to the run's last day."""

    def query(first: ir.DateValue, last: ir.DateValue) -> ir.Table:
        rows = _seen(engine, agg, where_of, first, last)
        return rows.group_by(["account_id", "_v"]).aggregate(_d=rows._u.min()).drop("_v")

    return f"firsts {col}", query


def seen_on_run_days(engine: Engine, agg: Aggregate, where_of: Filter, col: str) -> Read:
    """A distinct aggregate's sightings on the run's own days (a run carrying on)."""
    column = t.cast(str, agg.column)

    def query(first: ir.DateValue, last: ir.DateValue) -> ir.Table:
        rows = _rows(engine, agg, where_of)
        time = rows[agg.time]
        rows = rows.filter(rows[column].notnull(), _from(time, first), _day(time) <= last)
        return rows.select(
            account_id=rows.account_id, _v=rows[column], _d=_index(_day(time), first)
        ).distinct()

    return f"seen {col}", query


def _seen(
    engine: Engine, agg: Aggregate, where_of: Filter, first: ir.DateValue, last: ir.DateValue
) -> ir.Table:
    """Each account, value and day index (``_u``) the distinct aggregate ``agg`` saw up to
    ``last``, from where its window can hold on ``first`` (all history without one)."""
    column = t.cast(str, agg.column)
    rows = _rows(engine, agg, where_of)
    u = _day(rows[agg.time])
    rows = rows.filter(rows[column].notnull(), u <= last)
    if agg.window is not None:
        rows = rows.filter(u > _before(first, agg.offset + agg.window))
    return rows.select(account_id=rows.account_id, _v=rows[column], _u=_index(u, first)).distinct()


def _rows(engine: Engine, agg: Aggregate, where_of: Filter) -> ir.Table:
    """The table's rows the aggregate can read: an account, a time, its own filter."""
    rows = engine.table(agg.table)
    rows = rows.filter(rows.account_id.notnull(), rows[agg.time].notnull())
    if agg.where is not None:
        rows = rows.filter(where_of(agg, rows))
    return rows


def _sum_measures(rows: ir.Table, column: str) -> dict[str, ir.Value]:
    """A summed column per group: its values' count, the sum of its finite values, and how many
    are NaN, +inf and -inf. Kept apart, a NaN or an infinity leaves the running sum when its
    row leaves the window, as it leaves a sum over the window's rows."""
    value = rows[column].cast("float64")
    finite = value.notnull() & ~value.isnan() & ~value.isinf()

    def how_many(condition: ir.BooleanValue) -> ir.Value:
        return condition.fill_null(False).cast("int64").sum().fill_null(0)

    return {
        f"n_{column}": value.count(),
        f"s_{column}": ibis.ifelse(finite, value, 0.0).sum().fill_null(0.0),
        f"nan_{column}": how_many(value.isnan()),
        f"pinf_{column}": how_many(value.isinf() & (value > 0)),
        f"ninf_{column}": how_many(value.isinf() & (value < 0)),
    }


def _day(value: ir.Value) -> ir.DateValue:
    return value.cast("date") if value.type().is_timestamp() else value


def _index(day: ir.DateValue, first: ir.DateValue) -> ir.IntegerValue:
    """``day``'s index among the run's days (0: ``first``), as an int32: the reads group by it,
    and the benchmark's 90-day backfill read its events per account and day in 1.9 s with it
    against 2.2-2.4 s with the int64 a day difference is (DuckDB, 20 million rows)."""
    return day.delta(first, unit="day").cast("int32")


def _before(day: ir.DateValue, days: int) -> ir.DateValue:
    """The date ``days`` before ``day``: a literal date of a literal (the engine then compares
    dates with a date, where a date less an interval is a timestamp each row is cast to)."""
    op = day.op()
    if isinstance(op, ops.Literal):
        return ibis.literal(op.value - dt.timedelta(days=days), "date")
    return (day - ibis.interval(days=days)).cast("date")


def _from(column: ir.Value, day: ir.DateValue) -> ir.BooleanValue:
    """The column's day is ``day`` or later, against the column itself (which an engine prunes
    by, ``day`` being a constant once bound): the day's midnight for a timestamp."""
    return column >= (day.cast("timestamp") if column.type().is_timestamp() else day)
