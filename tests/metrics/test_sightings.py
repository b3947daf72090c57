"""A distinct count over a window from its sightings (metrics/sightings.py): chained in order,
and counted, against the distinct values in each account's window worked out from the
sightings themselves, for a run of days and for four runs after it, each carrying on from what
the run before kept (one of two days, one with no sightings of its own, the last after an
account is no longer one)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from accounthealth.metrics.series import Series
from accounthealth.metrics.sightings import Seen, carried_on, chain, coded, counted, to_keep

ACCOUNTS, VALUES = 7, 12
GONE = 3  # the account that is no longer one on the last day carried on


def _sightings(rng: np.random.Generator, first: int, last: int, n: int) -> np.ndarray:
    """``n`` random (account, value, day) sightings on days ``first`` to ``last``."""
    return np.column_stack(
        [
            rng.integers(0, ACCOUNTS, n),
            rng.integers(0, VALUES, n),
            rng.integers(first, last + 1, n),
        ]
    ).astype(np.int32)


def _expected(seen: np.ndarray, day: int, o: int, w: int, accounts: int) -> list[int]:
    """Each account's distinct values seen in the window of ``day``: days ``day - o - w + 1``
    to ``day - o``."""
    inside = (seen[:, 2] > day - o - w) & (seen[:, 2] <= day - o)
    return [len(set(seen[inside & (seen[:, 0] == a), 1].tolist())) for a in range(accounts)]


def _rows(seen: Seen, base: int) -> list[tuple[int, str, int, int, bool]]:
    """Every sighting of a run's ``seen`` as (account, value, day, leaves, latest), days since
    the epoch (``base``: the run's day 0), worked out row by row: the carried rows, then the
    run's own."""
    values = seen.values.to_pylist()
    old, new = seen.carried, seen.new
    rows = [
        (
            int(old.accounts[r]),
            values[old.codes[r]],
            int(old.days[r]),
            int(old.leaves[r]),
            bool(old.latest[r]),
        )
        for r in range(len(old.accounts))
    ]
    return rows + [
        (
            int(new.accounts[r]),
            values[new.codes[r]],
            int(new.days[r]) + base,
            int(new.leaves[r]) + base,
            bool(new.latest[r]),
        )
        for r in range(len(new.accounts))
    ]


def _applied(counts: np.ndarray, enters: Series, leaves: Series, days: range) -> np.ndarray:
    """``counts`` after each of ``days`` (day indexes) in turn, as a run applies them: the
    rows entering that day added, those leaving taken away (``Series.on``: rows in day
    order)."""
    for series in (enters, leaves):
        assert (np.diff(series.days) >= 0).all()
    counts = counts.copy()
    for day in days:
        np.add.at(counts, enters.accounts[enters.on(day)], 1)
        np.add.at(counts, leaves.accounts[leaves.on(day)], -1)
    return counts


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("o", "w"), [(0, 3), (2, 4), (0, 1)])
def test_counts_of_a_run_and_of_the_days_after_carrying_on(seed: int, o: int, w: int) -> None:
    rng = np.random.default_rng(seed)
    days = 6  # the first run's days are 0-5
    history = _sightings(rng, -8, days - 1, 120)
    # The first run, its sightings coded by a dictionary of their values.
    dictionary = pa.array([f"v{c}" for c in range(VALUES)], pa.string())
    chained = chain(history[:, 0], history[:, 1], history[:, 2], o, w)
    seen, enters, leaves = counted(chained, dictionary, o, days - 1)
    counts = np.zeros(ACCOUNTS, np.int64)
    for day in range(days):
        counts = _applied(counts, enters, leaves, range(day, day + 1))
        assert counts.tolist() == _expected(history, day, o, w, ACCOUNTS), day
    # Each next run carries on from what the run before kept (days since an epoch 1000 days
    # before the first run), with sightings of its own on its days (indexes from 0 there):
    # day 6, days 7-8, day 9 with no sightings, then day 10 with account GONE no longer one.
    first, last, accounts = 1000, 1000 + days - 1, ACCOUNTS
    again = 0  # kept latest sightings seen again
    for start, span, n in ((days, 1, 15), (days + 1, 2, 30), (days + 3, 1, 0), (days + 4, 1, 15)):
        kept = to_keep(seen, last - first, first)
        # The sightings still counting or yet to, in order, each with its value (renumbered).
        got = zip(
            kept.accounts.tolist(),
            kept.values.take(pa.array(kept.codes)).to_pylist(),
            kept.days.tolist(),
            kept.leaves.tolist(),
            kept.latest.tolist(),
            strict=True,
        )
        assert list(got) == [row for row in _rows(seen, first) if row[3] > last]
        assert len(kept.values) == len(np.unique(kept.codes))  # no value kept unused
        for column in (kept.accounts, kept.codes, kept.days, kept.leaves, kept.latest):
            column.setflags(write=False)  # as mapped from the kept state's file
        moved = np.arange(accounts, dtype=np.int32)
        if start == days + 4:
            # Account GONE is no longer one: its rows are dropped, the later ones move down.
            moved = np.where(moved == GONE, -1, moved - (moved > GONE)).astype(np.int32)
            history = history[history[:, 0] != GONE]
            history[:, 0] = moved[history[:, 0]]
            counts, accounts = np.delete(counts, GONE), accounts - 1
        at = moved[kept.accounts]
        new = _sightings(rng, 0, span - 1, n)
        new[:, 0] %= accounts
        codes, values = coded(
            pa.array([f"v{c}" for c in new[:, 1].tolist()], pa.string()), kept.values
        )
        assert values.to_pylist()[: len(kept.values)] == kept.values.to_pylist()
        first, last = last + 1, last + span
        seen, entering, leaving = carried_on(
            kept,
            chain(new[:, 0], codes, new[:, 2], o, w),
            values,
            # While the accounts are the same, their rows as they are (as a run carries them).
            now=at[at >= 0] if start == days + 4 else kept.accounts,
            kept=at >= 0 if start == days + 4 else slice(None),
            shift=-first,
            o=o,
            last=span - 1,
            accounts=accounts,
        )
        again += int(np.count_nonzero(kept.latest[at >= 0] & ~seen.carried.latest))
        history = np.vstack([history, new + np.array([0, 0, start], np.int32)])
        for i in range(span):
            counts = _applied(counts, entering, leaving, range(i, i + 1))
            assert counts.tolist() == _expected(history, start + i, o, w, accounts), start + i
    assert again, "some value kept as latest is seen again"


# Positions and codes that fit in one int64 sort key with the days, and that do not.
@pytest.mark.parametrize("top", [5, 2**31 - 2])
def test_sightings_chain_by_account_value_and_day(top: int) -> None:
    # Two accounts seeing values over days, in no order: each (account, value)'s sightings
    # in day order, each leaving when the window passes it or the value is seen next.
    accounts = np.array([top, 0, top, 0, top, 0], np.int32)
    codes = np.array([3, 2, 3, top, 0, 2], np.int32)
    days = np.array([9, 4, -2, 7, 5, 1], np.int32)
    seen = chain(accounts, codes, days, o=0, w=5)
    assert list(zip(seen.accounts, seen.codes, seen.days, strict=True)) == [
        (0, 2, 1), (0, 2, 4), (0, top, 7), (top, 0, 5), (top, 3, -2), (top, 3, 9),
    ]  # fmt: skip
    assert seen.leaves.tolist() == [4, 9, 12, 10, 3, 14]
    assert seen.latest.tolist() == [False, True, True, True, False, True]


# Sightings whose keys pack into one int64 with no bits for the code or the day (one value,
# one day), with a few bits each, and with all 63 bits; and ones that need 64 bits or more.
@pytest.mark.parametrize(
    ("accounts", "codes", "days"),
    [
        (50, 1, 1),
        (50, 3, 20),
        (2**21, 2**21, 2**21),
        (2**22, 2**22, 2**20),
        (2**31 - 1, 2**31 - 1, 9),
    ],
)
def test_sightings_chain_as_worked_out_one_by_one(accounts: int, codes: int, days: int) -> None:
    rng = np.random.default_rng(accounts + codes + days)
    rows = {
        (int(rng.integers(accounts)), int(rng.integers(codes)), int(rng.integers(days)) - 7)
        for _ in range(300)
    }
    a, c, d = (np.array(column, np.int32) for column in zip(*rows, strict=True))
    seen = chain(a, c, d, o=2, w=5)
    expected = sorted(rows)
    leaves, latest = [], []
    for i, (position, code, day) in enumerate(expected):
        after = expected[i + 1] if i + 1 < len(expected) else None
        again = after is not None and after[:2] == (position, code)
        leaves.append(min(day + 7, after[2] + 2) if again else day + 7)
        latest.append(not again)
    got = list(zip(seen.accounts.tolist(), seen.codes.tolist(), seen.days.tolist(), strict=True))
    assert got == expected
    assert seen.leaves.tolist() == leaves
    assert seen.latest.tolist() == latest
    assert {seen.accounts.dtype, seen.codes.dtype, seen.days.dtype} == {np.dtype(np.int32)}


@pytest.mark.parametrize(
    ("last", "kept_values", "kept_days"),
    [(2, ["a", "b", "c"], [100, 104, 104]), (5, ["b", "c"], [104, 104])],
)
def test_kept_values_are_those_still_seen(
    last: int, kept_values: list[str], kept_days: list[int]
) -> None:
    # Value "a", seen on day 0 only, leaves the window (3 days) on day 3: kept on day 2 as the
    # others are, and dropped by day 5, the codes of the rest then renumbered in order.
    dictionary = pa.array(["a", "b", "c"], pa.string())
    accounts, codes, days = (np.array(c, np.int32) for c in ([0, 0, 1], [0, 1, 2], [0, 4, 4]))
    seen, _, _ = counted(chain(accounts, codes, days, o=0, w=3), dictionary, 0, last)
    kept = to_keep(seen, last, 100)
    # Every value still seen: the codes and their dictionary kept as they are.
    assert (kept.values is dictionary) == (last == 2)
    assert kept.values.to_pylist() == kept_values
    assert kept.codes.tolist() == list(range(len(kept_values)))
    assert kept.days.tolist() == kept_days
