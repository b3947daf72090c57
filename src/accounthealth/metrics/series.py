"""What a run of running values is made of (metrics/sliding.py), and what it carries to the
next day's run (metrics/carryover.py): rows summarised per account and day, each aggregate's
raw value, the sightings of distinct values, and the state a run ends with."""

from __future__ import annotations

import datetime as dt
import functools
import typing as t
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

if t.TYPE_CHECKING:
    from accounthealth.metrics.hashed import HashedPositions

EPOCH = dt.date(1970, 1, 1)
# The column of a run's reads that holds each row's account's position among its accounts.
POSITION = "_position"
# Series columns that hold a day index, as the series' days do (moved with them when carried).
DAY_COLUMNS = ("last_u",)


@dataclass
class Series:
    """Rows summarised per account and day: the account's position, the day as an index from
    the run's first day (sorted; may be negative), and named columns."""

    accounts: np.ndarray
    days: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @functools.cached_property
    def _starts(self) -> tuple[int, np.ndarray]:
        """The first day, and where each day's rows start from it on. Made at the first ``on``,
        once the days are final: a run asks for a few days a day, and a search of millions of
        days for each was 0.05 s of every day of a backfill."""
        first, last = (int(self.days[0]), int(self.days[-1])) if len(self.days) else (0, -1)
        return first, np.searchsorted(self.days, np.arange(first, last + 2, dtype=self.days.dtype))

    def on(self, day: int) -> slice:
        """The rows of one day."""
        first, starts = self._starts
        i = day - first
        if not 0 <= i < len(starts) - 1:
            return slice(0, 0)
        return slice(int(starts[i]), int(starts[i + 1]))

    def take(self, rows: slice | np.ndarray, shift: int = 0) -> Series:
        """Some rows (a slice, a mask or an order), their days and day columns moved by
        ``shift`` (between day indexes and days since the epoch). Of a slice, the columns not
        moved are views of this series' (not to be written to)."""
        # Views, not copies: a run's state kept for the next day is millions of rows, written
        # out as they are.
        return Series(
            self.accounts[rows],
            _shifted(self.days[rows], shift),
            {
                name: _shifted(values[rows], shift if name in DAY_COLUMNS else 0)
                for name, values in self.columns.items()
            },
        )

    def day(self, day: int) -> Series:
        """The rows of one day, as views of this series'."""
        return self.take(self.on(day))

    def kept(self, after: int, upto: int, base: int) -> list[Series]:
        """The rows of the days in (after, upto], their days since the epoch (``base`` is day
        index 0's), as the pieces a kept state holds: one."""
        return [self.take(self.between(after, upto), base)]

    def between(self, after: int | None, upto: int | None) -> slice:
        """The rows of the days in (after, upto] (None: all earlier, or later, days too)."""
        lo = 0 if after is None else self._first_after(after)
        return slice(lo, len(self.days) if upto is None else self._first_after(upto))

    def _first_after(self, day: int) -> int:
        # The day in the days' own type: NumPy would search a Python int in a copy of the
        # days made int64 (1.5 ms for 3 million int32 days, at every call).
        return int(np.searchsorted(self.days, self.days.dtype.type(day + 1)))


@dataclass
class Pieces:
    """A series a run carries on with: the pieces of it the kept state held (``pieces``, in day
    order, their days and DAY_COLUMNS since the epoch, as read from its files) and then the
    run's own rows (``new``, day indexes from ``base``, the run's first day since the epoch).

    The kept pieces are used where they lie, not joined into one series with the new rows:
    that copied the 41 MB of the benchmark's events series every day. Those still in reach are
    kept as they are, so that the next state links their files instead of writing them again;
    the run writes only its own rows as a new piece. Pieces are merged as a binary counter
    does (``_merged``): a state holds a few, and each row is written again a few times over
    the days it is kept."""

    pieces: list[Series]
    base: int
    new: Series

    def day(self, day: int) -> Series:
        """The rows of one day, in day indexes."""
        rows = self.new.on(day)
        if rows.stop > rows.start:
            return self.new.take(rows)
        for piece in self.pieces:
            rows = piece.on(day + self.base)
            if rows.stop > rows.start:
                return piece.take(rows, -self.base)
        return no_rows()

    def kept(self, after: int, upto: int, base: int) -> list[Series]:
        """``Series.kept``: the kept pieces still holding a day after ``after``, as they are,
        and the run's own rows up to ``upto``, merged where due."""
        assert base == self.base, "kept by the run that made them"
        cut = after + base
        pieces = [piece for piece in self.pieces if len(piece.days) and piece.days[-1] > cut]
        own = self.new.take(self.new.between(after, upto), base)
        if len(own.days):
            pieces.append(own)
        return _merged(pieces, cut)


# Pieces a kept series holds at most (``_merged``).
MOST_PIECES = 12


def _merged(pieces: list[Series], cut: int) -> list[Series]:
    """``pieces`` with the newest merged into the one before while it holds as many rows or
    more (or while there are more than ``MOST_PIECES``), dropping days up to ``cut``: as a
    binary counter adds, so that a state holds about log2(days) pieces and a row is written
    again about as often, not every day."""
    pieces = list(pieces)
    while len(pieces) > 1 and (
        len(pieces) > MOST_PIECES or len(pieces[-1].days) >= len(pieces[-2].days)
    ):
        older, newer = pieces[-2], pieces[-1]
        pieces[-2:] = [stacked(older.take(older.between(cut, None)), newer)]
    return pieces


def stacked(first: Series, second: Series, shift: int = 0) -> Series:
    """``first``'s rows, their days (and DAY_COLUMNS) moved by ``shift``, then ``second``'s,
    as one new series; a column only one has is zero in the other's rows."""
    columns = {}
    for name in dict.fromkeys([*first.columns, *second.columns]):
        columns[name] = joined(
            first.columns.get(name, np.zeros(len(first.days))),
            second.columns.get(name, np.zeros(len(second.days))),
            shift if name in DAY_COLUMNS else 0,
        )
    return Series(
        accounts=joined(first.accounts, second.accounts).astype(np.int32, copy=False),
        days=joined(first.days, second.days, shift).astype(np.int32, copy=False),
        columns=columns,
    )


def _shifted(values: np.ndarray, shift: int) -> np.ndarray:
    return values + shift if shift else values


def joined(old: np.ndarray, new: np.ndarray, shift: int = 0) -> np.ndarray:
    """``old`` moved by ``shift``, then ``new``, as one new array (of the type both fit): the
    shift is written into it, not made a copy of its own first (a day carrying on joins
    millions of kept rows, each new page of memory a page fault)."""
    out = np.empty(len(old) + len(new), np.result_type(old, new))
    if shift:
        np.add(old, shift, out=out[: len(old)])
    else:
        out[: len(old)] = old
    out[len(old) :] = new
    return out


@dataclass(frozen=True)
class Raw:
    """An aggregate's raw value for every account (or those asked for, in the order asked):
    exists as booleans, days_since as days since the epoch (int32), others float64 (a count's
    whole numbers); and where it is NULL (None: nowhere)."""

    data: np.ndarray
    null: np.ndarray | None


@dataclass
class Sightings:
    """Per distinct aggregate, the (account, value, day) sightings that still count or are yet
    to: account positions, each value's code in ``values``, the day seen and the day it leaves
    the window (day indexes in a run, days since the epoch when carried), and whether it is its
    account and value's latest."""

    accounts: np.ndarray
    codes: np.ndarray
    days: np.ndarray
    leaves: np.ndarray
    latest: np.ndarray
    values: pa.Array


@dataclass
class Carried:
    """Where a run of running values ended, for the next run to start from: its last day, its
    accounts, the aggregate columns it carries, each of their running values (day marks as days
    since the epoch), per series (named by its aggregates' columns) the rows a later day still
    reads (days, and DAY_COLUMNS, since the epoch) in pieces of consecutive days, in order
    (see ``Pieces``), and per distinct aggregate its sightings."""

    day: dt.date
    ids: pa.Array
    columns: tuple[str, ...]
    running: dict[str, dict[str, np.ndarray]]
    series: dict[str, list[Series]]
    sightings: dict[str, Sightings]
    # Tables known to hold no rows after ``day``: a run carrying on reads nothing of them.
    quiet: frozenset[str] = frozenset()
    # The day grid's inputs as that run read them (scoring/day_grid.py: the accounts and their
    # contracts, each row with its account's position; the contracts worked out as the grid
    # uses them), by table: carried only while their tables hold what they held then.
    inputs: dict[str, pa.Table] = field(default_factory=dict)
    # What the day grid worked out of its accounts input on that run's last day (its
    # ``DayGrid.kept``), by name: good while that input is carried on.
    grid: dict[str, pa.Table] = field(default_factory=dict)
    # The accounts' positions by their ids' hashes (metrics/hashed.py), if that run had them.
    index: HashedPositions | None = None


def compact(values: np.ndarray) -> np.ndarray:
    """Counts and day indexes as int32 when they fit (an events series has millions of rows);
    everything else as float64."""
    if np.issubdtype(values.dtype, np.integer) and len(values):
        info = np.iinfo(np.int32)
        if info.min <= values.min() and values.max() <= info.max:
            return values.astype(np.int32)
    return values.astype(np.float64)


def no_rows() -> Series:
    """A series without rows."""
    return Series(np.zeros(0, np.int32), np.zeros(0, np.int32))


def marked(n: int, at: np.ndarray, mark: bool = True) -> np.ndarray:
    """``n`` booleans, ``mark`` at positions ``at`` and the other elsewhere: where a mark is
    all it takes, not a count per position (``bincount`` first copies int32 positions as
    int64)."""
    out = np.full(n, not mark)
    out[at] = mark
    return out


def stable_order(values: np.ndarray) -> np.ndarray:
    """The stable sort order of ``values``. Integers that fit in 16 bits (day indexes, codes)
    NumPy sorts by radix (6.4 million leaving days in 0.09-0.16 s against 0.8-0.9 s for its
    merge sort of them as float64); anything else by merge sort."""
    small = np.iinfo(np.int16)
    if (
        values.dtype.kind in "iu"
        and len(values)
        and small.min <= values.min()
        and values.max() <= small.max
    ):
        return np.argsort(values.astype(np.int16), kind="stable")
    return np.argsort(values, kind="stable")
