"""The raw values read from running arrays (metrics/running.py): of some accounts, in a given
order, they are those of every account taken at those positions, and never the running state
itself."""

from __future__ import annotations

import numpy as np
import pytest

from accounthealth.metrics.definitions import Aggregate
from accounthealth.metrics.running import SUM_PARTS, Running, value

N = 8
AT = np.array([5, 0, 7, 2, 3])  # some accounts, out of order


def _running(kind: str, col: str, finite: bool) -> Running:
    """Running arrays of ``kind`` with a value of each sort somewhere: none yet, whole
    counts, marks inside and outside a 3-day window, and (unless ``finite``) NaN and infinite
    sums."""
    if kind in ("sum", "avg"):
        parts = {part: np.zeros(N) for part in SUM_PARTS}
        parts["n"][:] = [0, 1, 2, 3, 1, 2, 0, 4]
        parts["s"][:] = [0, 1.5, -2.0, 9.25, 0.1, 3.0, 0, 7.0]
        if not finite:
            parts["nan"][3] = 1
            parts["pinf"][4] = 1
            parts["ninf"][4] = 1
            parts["pinf"][5] = 1
        return {f"{col}_{part}": values for part, values in parts.items()}
    if kind in ("days_since", "latest"):
        marks = np.array([-np.inf, 1, 2, 5, 6, -np.inf, 3, 6])
        running = {col: marks}
        if kind == "latest":
            running[f"{col}_value"] = np.array([np.nan, 1.0, 2.0, np.nan, 4.5, 0.0, 7.0, 8.0])
            running[f"{col}_day"] = marks.copy()
        return running
    return {col: np.array([0, 1.0000000001, 2, 0.9999999, 3, 0, 1, 5])}


@pytest.mark.parametrize("finite", [True, False], ids=["finite", "with NaN and infinities"])
@pytest.mark.parametrize(
    "kind", ["count", "distinct", "exists", "sum", "avg", "days_since", "latest"]
)
def test_the_values_of_some_accounts_are_those_of_all_taken_at_them(
    kind: str, finite: bool
) -> None:
    agg = Aggregate(kind, "events", "quantity", "event_time", window=3)
    running = _running(kind, "c", finite)
    before = {name: array.copy() for name, array in running.items()}
    every = value(running, agg, "c", 6, 20_000)
    some = value(running, agg, "c", 6, 20_000, AT)
    np.testing.assert_array_equal(some.data, every.data[AT])
    if every.null is None:
        assert some.null is None
    else:
        np.testing.assert_array_equal(some.null, every.null[AT])
    # Arrow may share a raw value's memory: it is never the running state's.
    for raw in (every, some):
        assert not any(np.shares_memory(raw.data, array) for array in running.values())
        raw.data[...] = 0
    for name, array in running.items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)
