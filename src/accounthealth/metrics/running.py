"""The arithmetic of running values (metrics/sliding.py): each aggregate kept per account in
arrays by name, which a day's rows are added to, taken from or raised by, and from which the
aggregate's value on a day is read. Accounts are positions in the arrays; days are a run's
day indexes."""

from __future__ import annotations

import typing as t

import numpy as np

from accounthealth.metrics.definitions import Aggregate
from accounthealth.metrics.series import Raw, Series

# What a running sum keeps besides its count: the sum of finite values and how many values are
# NaN, +inf and -inf (see reads._sum_measures).
SUM_PARTS = ("n", "s", "nan", "pinf", "ninf")
# The running arrays of a run, by name (an aggregate's column, or its column and a part).
Running = t.MutableMapping[str, np.ndarray]


def starting(agg: Aggregate, col: str, n: int) -> dict[str, np.ndarray]:
    """An aggregate's running values before any row, by name, for ``n`` accounts."""
    if agg.kind in ("days_since", "latest"):
        marks = {col: np.full(n, -np.inf)}
        if agg.kind == "latest":
            marks |= {f"{col}_value": np.full(n, np.nan), f"{col}_day": np.full(n, -np.inf)}
        return marks
    if agg.kind in ("sum", "avg"):
        return {f"{col}_{part}": np.zeros(n) for part in SUM_PARTS}
    return {col: np.zeros(n)}


def add(running: Running, agg: Aggregate, col: str, rows: Series, sign: float = 1.0) -> None:
    """Add (``sign`` -1: take away) the series ``rows`` to a count, sum or avg."""
    at = rows.accounts
    if not len(at):
        return
    # np.add.at: the first day's rows hold an account once per day, and each must count.
    if agg.kind in ("sum", "avg"):
        for part in SUM_PARTS:
            values = rows.columns.get(f"{part}_{agg.column}")
            if values is not None:
                np.add.at(running[f"{col}_{part}"], at, sign * values)
    else:
        np.add.at(running[col], at, sign * rows.columns["cnt"])


def raise_to(running: Running, agg: Aggregate, col: str, rows: Series) -> None:
    """Keep the later day (time, with its value, for latest) of the series ``rows``."""
    at = rows.accounts
    if not len(at):
        return
    marks = running[col]
    # Rows are in day order: each account's last row holds its latest day (or time). The
    # highest row number per account, scattered: a quarter of the cost of sorting them.
    last_row = np.full(len(marks), -1, np.int64)
    np.maximum.at(last_row, at, np.arange(len(at)))
    at = np.flatnonzero(last_row >= 0)
    last = last_row[at]
    mark = rows.columns["last_t" if agg.kind == "latest" else "last_u"][last]
    later = mark >= marks[at]
    marks[at[later]] = mark[later]
    if agg.kind == "latest":
        value = rows.columns[f"v_{agg.column}"][last]
        running[f"{col}_value"][at[later]] = value[later]
        running[f"{col}_day"][at[later]] = rows.columns["last_u"][last][later]


def value(
    running: Running, agg: Aggregate, col: str, k: int, base: int, at: np.ndarray | None = None
) -> Raw:
    """The aggregate's raw value on day index ``k`` (after its changes) of the accounts at
    positions ``at``, in that order (None: every account); ``base``: day index 0's days since
    the epoch. Every array given is a new one, not the running state itself (Arrow may share
    its memory)."""
    oldest = k - agg.offset - (agg.window or 0)  # the last day index out of the window
    if agg.kind in ("sum", "avg"):
        return _sum_value(running, agg, col, at)
    mark = _taken(running, col, at)
    if agg.kind == "days_since":
        valid = np.isfinite(mark) & ((agg.window is None) | (mark > oldest))
        days = np.where(valid, mark, 0).astype(np.int64) + base
        return Raw(days.astype(np.int32), ~valid)
    if agg.kind == "latest":
        on = _taken(running, f"{col}_day", at)
        latest = running[f"{col}_value"].copy() if at is None else running[f"{col}_value"][at]
        valid = np.isfinite(mark) & ((agg.window is None) | (on > oldest))
        return Raw(latest, ~valid | np.isnan(latest))
    if agg.kind in ("count", "distinct"):
        # Whole numbers as float64, as the day grid computes with them (it made them floats
        # again); a column of integers (``RunningAggregates.values``) converts them.
        return Raw(np.rint(mark) if at is None else np.rint(mark, out=mark), None)
    return Raw(mark > 0.5, None)  # exists


def _taken(running: Running, name: str, at: np.ndarray | None) -> np.ndarray:
    """A running array at positions ``at`` (a new array), or itself (None)."""
    return running[name] if at is None else running[name][at]


def _sum_value(running: Running, agg: Aggregate, col: str, at: np.ndarray | None) -> Raw:
    """A running sum or average (of the accounts at ``at``, None: all): NULL without values,
    NaN or an infinity while one is in the window (as SQL's sum gives them), else the sum of
    the finite values."""
    count = _taken(running, f"{col}_n", at)
    flags = [running[f"{col}_{part}"] > 0.5 for part in ("nan", "pinf", "ninf")]
    sums = _taken(running, f"{col}_s", at)
    if any(flag.any() for flag in flags):
        nan, pinf, ninf = flags if at is None else (flag[at] for flag in flags)
        total = np.where(
            nan | (pinf & ninf), np.nan, np.where(pinf, np.inf, np.where(ninf, -np.inf, sums))
        )
    else:
        # The usual case: no NaN or infinity in the window. A sum is a copy, not the running
        # state itself (Arrow may share its memory); an average's division makes one.
        total = sums.copy() if agg.kind == "sum" and at is None else sums
    none = count < 0.5
    if agg.kind == "sum":
        return Raw(total, none)
    return Raw(total / np.where(none, 1.0, count), none)
