"""A distinct count over a window from its sightings (metrics/sightings.py), against the count
of distinct values in each account's window worked out from the sightings themselves: for a
run of days, and for the next day carrying on from what that run kept."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from accounthealth.metrics.series import Series
from accounthealth.metrics.sightings import carried_on, chain, coded, counted, to_keep

ACCOUNTS, VALUES = 7, 5


def _sightings(rng: np.random.Generator, first: int, last: int, n: int) -> np.ndarray:
    """``n`` random (account, value, day) sightings on days ``first`` to ``last``."""
    return np.column_stack(
        [
            rng.integers(0, ACCOUNTS, n),
            rng.integers(0, VALUES, n),
            rng.integers(first, last + 1, n),
        ]
    ).astype(np.int32)


def _expected(seen: np.ndarray, day: int, o: int, w: int) -> list[int]:
    """Each account's distinct values seen in the window of ``day``: days ``day - o - w + 1``
    to ``day - o``."""
    inside = (seen[:, 2] > day - o - w) & (seen[:, 2] <= day - o)
    return [len(set(seen[inside & (seen[:, 0] == a), 1].tolist())) for a in range(ACCOUNTS)]


def _net(enters: Series, leaves: Series, day: int) -> np.ndarray:
    """Per account, the rows entering on the run's days up to ``day`` (day indexes from 0)
    less those leaving then, as a run applies them day by day."""
    on = (enters.days >= 0) & (enters.days <= day)
    off = (leaves.days >= 0) & (leaves.days <= day)
    came = np.bincount(enters.accounts[on], minlength=ACCOUNTS)
    return came - np.bincount(leaves.accounts[off], minlength=ACCOUNTS)


def _values(codes: np.ndarray) -> pa.Array:
    return pa.array([f"v{c}" for c in codes.tolist()], pa.string())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("o", "w"), [(0, 3), (2, 4), (0, 1)])
def test_counts_of_a_run_and_of_the_days_after_carrying_on(seed: int, o: int, w: int) -> None:
    rng = np.random.default_rng(seed)
    days = 6  # the first run's days are 0-5; each next run's, one day, 6 and 7
    history = _sightings(rng, -8, days - 1, 120)
    # The first run, its sightings coded by a dictionary of their values.
    dictionary = pa.array([f"v{c}" for c in range(VALUES)], pa.string())
    chained = chain(history[:, 0], history[:, 1], history[:, 2], o, w)
    seen, enters, leaves = counted(chained, dictionary, o, days - 1)
    for day in range(days):
        assert _net(enters, leaves, day).tolist() == _expected(history, day, o, w), day
    counts = _net(enters, leaves, days - 1)
    # Each next day's run carries on from what the run before kept (days since an epoch
    # 1000 days before the first run), with sightings of its own on its day (index 0 there).
    first, last = 1000, 1000 + days - 1
    for day in (days, days + 1):
        kept = to_keep(seen, last - first, first)
        assert (kept.leaves > last).all()  # only what still counts or is yet to
        new = _sightings(rng, 0, 0, 15)
        codes, values = coded(_values(new[:, 1]), kept.values)
        assert values.to_pylist()[: len(kept.values)] == kept.values.to_pylist()
        first = last = last + 1
        seen, entering, leaving = carried_on(
            kept,
            chain(new[:, 0], codes, new[:, 2], o, w),
            values,
            now=kept.accounts,
            kept=slice(None),
            shift=-first,
            o=o,
            last=0,
            accounts=ACCOUNTS,
        )
        history = np.vstack([history, new + np.array([0, 0, day], np.int32)])
        counts = counts + _net(entering, leaving, 0)
        assert counts.tolist() == _expected(history, day, o, w), day
