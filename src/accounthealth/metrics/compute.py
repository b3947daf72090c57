"""Evaluate metrics as of a batch of dates, as Ibis expressions.

Shape: a population grid (every account that is a customer on each as-of date, with its
attributes and derived facts), left-joined with one grouped aggregate per source (table, filter,
window): conditional aggregation over rows whose time falls in the window ending on the date.
Only rows with time <= the as-of date are ever read, which is what makes scores point-in-time.
"""

from __future__ import annotations

import datetime as dt
import typing as t
from collections import defaultdict

import ibis
import ibis.expr.types as ir
from ibis import _

from accounthealth.engine.base import Engine
from accounthealth.errors import DataError
from accounthealth.metrics.definitions import (
    Aggregate,
    Attribute,
    Change,
    Definition,
    Ratio,
    ResolvedModel,
    leaves,
)


def dates_table(dates: t.Sequence[dt.date]) -> ir.Table:
    return ibis.memtable({"as_of": list(dates)}, schema={"as_of": "date"})


def population(engine: Engine, dates: ir.Table) -> ir.Table:
    """Accounts that are customers on each date: created by then and, when the account has
    contracts, with one live (start <= date < end). Adds arr, renewal_date, days_to_renewal and
    tenure_days."""
    accounts = engine.table("accounts")
    grid = accounts.cross_join(dates).filter(_.created_at.isnull() | (_.created_at <= _.as_of))
    if engine.has_table("contracts"):
        contracts = engine.table("contracts")
        live = (
            contracts.join(
                dates,
                [
                    contracts.start_date <= dates.as_of,
                    contracts.end_date.isnull() | (contracts.end_date > dates.as_of),
                ],
            )
            .group_by(["account_id", "as_of"])
            .aggregate(arr=_.arr.sum(), renewal_date=_.end_date.min(), live_contracts=_.count())
        )
        with_contracts = contracts.select("account_id").distinct().mutate(has_contracts=True)
        grid = (
            grid.left_join(live, ["account_id", "as_of"])
            .drop("account_id_right", "as_of_right")
            .left_join(with_contracts, "account_id")
            .drop("account_id_right")
            .filter(_.live_contracts.notnull() | _.has_contracts.isnull())
            .drop("live_contracts", "has_contracts")
        )
    else:
        grid = grid.mutate(arr=ibis.null("float64"), renewal_date=ibis.null("date"))
    return grid.mutate(
        arr=_.arr.cast("float64"),
        days_to_renewal=_.renewal_date.delta(_.as_of, unit="day"),
        tenure_days=_.as_of.delta(_.created_at, unit="day"),
    )


def _aggregate_expr(agg: Aggregate, rows: ir.Table) -> ir.Value:
    if agg.kind == "count":
        return rows.count()
    if agg.kind == "exists":
        return rows.count() > 0
    column = rows[agg.column] if agg.column else None
    if agg.kind == "distinct":
        return column.nunique()
    if agg.kind == "sum":
        return column.cast("float64").sum()
    if agg.kind == "avg":
        return column.cast("float64").mean()
    if agg.kind == "latest":
        return column.argmax(rows["_time"])
    if agg.kind == "days_since":
        return rows["_day"].max()
    raise AssertionError(agg.kind)


def _source_rows(engine: Engine, agg: Aggregate, dates: ir.Table) -> ir.Table:
    """Rows of the aggregate's table joined with each date whose window contains them."""
    if not engine.has_table(agg.table):
        raise DataError(
            f"the model reads table '{agg.table}', which has not been ingested",
            where="sources",
            fix=f"add a '{agg.table}:' source to accounthealth.yaml and run 'accounthealth ingest'",
        )
    table = engine.table(agg.table)
    if agg.where is not None:
        table = table.filter(agg.where.apply(table))
    table = table.filter(table.account_id.notnull(), table[agg.time].notnull()).mutate(
        _time=table[agg.time], _day=table[agg.time].cast("date")
    )
    if agg.until:
        table = table.mutate(_end=table[agg.until].cast("date"))
    shifted = dates.mutate(_ref=dates.as_of - ibis.interval(days=agg.offset))
    conditions = [table._day <= shifted._ref]
    if agg.active:
        conditions.append(table._end.isnull() | (table._end > shifted._ref))
    elif agg.window is not None:
        conditions.append(table._day > shifted._ref - ibis.interval(days=agg.window))
    return table.join(shifted, conditions)


def metric_values(
    engine: Engine, resolved: ResolvedModel, dates: t.Sequence[dt.date]
) -> tuple[ir.Table, dict[str, str]]:
    """The population grid with one value column per metric (``v__<name>``).

    Returns the table and a map from metric name to its value column.
    """
    dates_t = dates_table(dates)
    grid = population(engine, dates_t)
    metrics = resolved.metrics
    aggregates: dict[Aggregate, str] = {}
    for metric in metrics.values():
        for leaf in leaves(metric.definition):
            if isinstance(leaf, Aggregate) and leaf not in aggregates:
                aggregates[leaf] = f"a{len(aggregates)}"
    by_source: dict[tuple[t.Any, ...], list[Aggregate]] = defaultdict(list)
    for agg in aggregates:
        by_source[agg.source_key].append(agg)
    for group in by_source.values():
        rows = _source_rows(engine, group[0], dates_t)
        grouped = rows.group_by(["account_id", "as_of"]).aggregate(
            **{aggregates[agg]: _aggregate_expr(agg, rows) for agg in group}
        )
        grid = grid.left_join(grouped, ["account_id", "as_of"]).drop(
            "account_id_right", "as_of_right"
        )
    # Turn raw aggregates into values: no rows means 0 for counts, 'no' for exists, and for
    # days_since the days between the last row and the (shifted) date.
    fixes = {}
    for agg, col in aggregates.items():
        if agg.kind in ("count", "distinct"):
            fixes[col] = grid[col].fill_null(0).cast("float64")
        elif agg.kind == "exists":
            fixes[col] = grid[col].fill_null(False)
        elif agg.kind == "days_since":
            ref = grid.as_of - ibis.interval(days=agg.offset)
            fixes[col] = ref.delta(grid[col], unit="day").cast("float64")
    if fixes:
        grid = grid.mutate(**fixes)

    def value(defn: Definition) -> ir.Value:
        if isinstance(defn, Aggregate):
            return grid[aggregates[defn]]
        if isinstance(defn, Attribute):
            return grid[defn.name]
        if isinstance(defn, Ratio):
            num = _numeric(value(defn.numerator))
            den = _numeric(value(defn.denominator))
            return ibis.ifelse(den == 0, ibis.null("float64"), num / den)
        if isinstance(defn, Change):
            cur = _numeric(value(defn.current))
            prev = _numeric(value(defn.previous))
            return ibis.cases(
                ((prev == 0) & (cur == 0), 0.0),
                (prev == 0, ibis.null("float64")),
                else_=(cur - prev) / prev,
            )
        raise AssertionError(defn)

    columns = {name: f"v__{name}" for name in metrics}
    grid = grid.mutate(
        **{columns[name]: _stored(value(m.definition)) for name, m in metrics.items()}
    )
    return grid.drop(*aggregates.values()), columns


def _stored(value: ir.Value) -> ir.Value:
    """Metric values are stored as numbers: yes/no becomes 1/0 (PostgreSQL cannot cast a
    boolean to a double)."""
    if value.type().is_boolean():
        return ibis.cases((value, 1.0), (~value, 0.0), else_=ibis.null("float64"))
    return value


def _numeric(value: ir.Value) -> ir.FloatingValue:
    # Cast explicitly: integer / integer loses precision on some engines (STACK.md).
    return value.cast("float64")
