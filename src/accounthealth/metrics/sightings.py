"""The sightings of a distinct count over a window (metrics/sliding.py): each (account, value,
day) a value was seen, and the days it enters and leaves the account's count.

A value seen on day d enters on d + offset and leaves when the window has passed it or when
the value is seen again (plus the offset), whichever is first: it then counts once however
often it recurs. A run chains the sightings it reads (``chain``) and counts them
(``counted``); a run carrying on from the day before joins its own to those that run kept
(``carried_on``): the latest kept sighting of a value seen again now leaves when the new one
enters. What a run keeps for the next is ``to_keep``'s. Days here are a run's day indexes;
kept, days since the epoch.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from accounthealth.metrics.series import Series, Sightings, joined, stable_order


def pair_keys(accounts: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """One int64 per (account position, value code)."""
    return (accounts.astype(np.int64) << 32) | codes.astype(np.int64)


def chain(accounts: np.ndarray, codes: np.ndarray, days: np.ndarray, o: int, w: int) -> Sightings:
    """Sightings in (account, value, day) order, each leaving when the window has passed it
    or when its value is next seen (plus the offset), whichever is first; the last of each
    account and value is its latest. Codes index no dictionary yet (``values`` empty)."""
    accounts, codes, days, pairs = _by_key_and_day(accounts, codes, days)
    again = np.r_[pairs[1:] == pairs[:-1], False] if len(pairs) else np.zeros(0, bool)
    passed = days + np.int32(o + w)
    # The next sighting's day, where it is of the same account and value (``again``).
    following = np.roll(days, -1) + np.int32(o)
    leaves = np.where(again, np.minimum(passed, following), passed)
    return Sightings(accounts, codes, days, leaves, ~again, pa.array([], pa.null()))


def _by_key_and_day(
    accounts: np.ndarray, codes: np.ndarray, days: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The sightings in (account, code, day) order, as int32 accounts, codes and days (a
    backfill carries millions of them to the next day's run), with a key per (account,
    code). Where the three fit in one int64, that is sorted itself and they are taken back
    out of it: NumPy sorts numbers several times faster than it finds their order, and the
    order then moves no column (a 90-day backfill's 6.4 million sightings of users: 0.37-0.54 s
    against 2.25-2.33 s). Rows of equal keys are the same sighting, so none is lost."""
    if not len(days):
        none = np.zeros(0, np.int32)
        return none, none, none, np.zeros(0, np.int64)
    first = int(days.min())
    day_bits = (int(days.max()) - first).bit_length()
    code_bits = int(codes.max()).bit_length()
    if int(accounts.max()).bit_length() + code_bits + day_bits > 63:
        order = np.lexsort((days, codes, accounts))
        accounts, codes = accounts[order].astype(np.int32), codes[order].astype(np.int32)
        return accounts, codes, days[order].astype(np.int32), pair_keys(accounts, codes)
    keys = accounts.astype(np.int64) << (code_bits + day_bits)
    keys |= codes.astype(np.int64) << day_bits
    keys |= days.astype(np.int64) - first
    keys.sort()
    pairs = keys >> day_bits
    return (
        (pairs >> code_bits).astype(np.int32),
        (pairs & ((1 << code_bits) - 1)).astype(np.int32),
        (keys & ((1 << day_bits) - 1)).astype(np.int32) + np.int32(first),
        pairs,
    )


def counted(
    chained: Sightings, values: pa.Array, o: int, last: int
) -> tuple[Sightings, Series, Series]:
    """A run's own ``chain``ed sightings, whose codes index ``values``, counted: those still
    counting or yet to after its ``last`` day, and the rows entering and leaving the count,
    each by its day (those after ``last`` are for no day of the run). A sighting superseded
    before the first day enters and leaves on it: it counts once."""
    still = np.flatnonzero(chained.leaves > last)  # found once, as in ``to_keep``
    kept = Sightings(
        chained.accounts[still],
        chained.codes[still],
        chained.days[still],
        chained.leaves[still],
        chained.latest[still],
        values,
    )
    enter = np.maximum(chained.days + o, 0)
    leave = np.maximum(chained.leaves, 0)
    by_enter, by_leave = stable_order(enter), stable_order(leave)
    enters = Series(chained.accounts[by_enter], enter[by_enter])
    leaves = Series(chained.accounts[by_leave], leave[by_leave])
    return kept, enters, leaves


def coded(values: pa.Array, dictionary: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """The code of each of ``values`` in ``dictionary``, those it lacks added at its end; and
    that dictionary."""
    unknown = values.filter(pc.is_null(pc.index_in(values, value_set=dictionary)))
    if len(unknown):
        dictionary = pa.concat_arrays([dictionary, pc.unique(unknown)])
    codes = pc.index_in(values, value_set=dictionary).to_numpy().astype(np.int32)
    return codes, dictionary


def carried_on(
    carried: Sightings,
    new: Sightings,
    values: pa.Array,
    *,
    now: np.ndarray,
    kept: slice | np.ndarray,
    shift: int,
    o: int,
    last: int,
    accounts: int,
) -> tuple[Sightings, Series, Series]:
    """The ``carried`` sightings (the rows ``kept``, of accounts that still are, at their
    positions ``now``, their days moved by ``shift`` to the run's indexes) joined to the
    run's own (``new``, ``chain``ed, codes of ``values``: the carried values and any new
    ones, ``coded``): the sightings after the run, and the rows entering and leaving the
    counts of its days up to ``last``. Those that entered before the run are in the carried
    counts already. ``accounts``: how many there are now."""
    old_codes, old_latest = carried.codes[kept], carried.latest[kept]
    # The first sighting now of each account and value (``new`` is in that order).
    keys = pair_keys(new.accounts, new.codes)
    first = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, bool)
    firsts, first_days = keys[first], new.days[first]
    # The kept latest sightings of values seen again: only accounts seen now can have one,
    # so only their rows are looked up (on the benchmark's book a quarter of the kept
    # rows: 14 ms against 49 ms for all 1.35 million).
    seen_now = np.zeros(accounts, bool)
    seen_now[new.accounts] = True
    rows = np.flatnonzero(old_latest & seen_now[now])
    old_keys = pair_keys(now[rows], old_codes[rows])
    i = np.minimum(np.searchsorted(firsts, old_keys), max(len(firsts) - 1, 0))
    hit = firsts[i] == old_keys if len(firsts) else np.zeros(0, bool)
    again, i = rows[hit], i[hit]
    # The kept rows, moved to this run's day indexes, then this run's.
    seen = Sightings(
        joined(now, new.accounts),
        joined(old_codes, new.codes),
        joined(carried.days[kept], new.days, shift),
        joined(carried.leaves[kept], new.leaves, shift),
        joined(old_latest, new.latest),
        values,
    )
    seen.leaves[again] = np.minimum(seen.leaves[again], first_days[i] + o)
    seen.latest[again] = False
    # Only what enters or leaves on the run's days: the rest is for later runs. The carried
    # rows are of days before the run's: unshifted (no offset), none enters now, so only
    # this run's are looked at (1.35 million fewer on the benchmark's book).
    start = len(now) if o <= 0 else 0
    enter = seen.days[start:] + o
    entering = np.flatnonzero((enter >= 0) & (enter <= last))
    entering = entering[stable_order(enter[entering])]
    enter, entering = enter[entering], entering + start
    leaving = np.flatnonzero(seen.leaves <= last)
    leaving = leaving[stable_order(seen.leaves[leaving])]
    return (
        seen,
        Series(seen.accounts[entering], enter.astype(np.int32)),
        Series(seen.accounts[leaving], seen.leaves[leaving].astype(np.int32)),
    )


def to_keep(seen: Sightings, last: int, base: int) -> Sightings:
    """The sightings a run ends with (``seen``) that a run carrying on from its ``last`` day
    keeps: those counting or yet to after it, days since the epoch (``base``: the run's
    first day's), their values renumbered in order (a count per code: no sort)."""
    # The rows kept found once and taken by position: a boolean mask per column found them
    # again in each, and the days were copied twice (a daily run of the benchmark's book: 1.9
    # million sightings kept in 13 ms against 54 ms).
    still = np.flatnonzero(seen.leaves > last)
    codes = seen.codes[still]
    used = np.flatnonzero(np.bincount(codes, minlength=len(seen.values)))
    renumbered = np.zeros(len(seen.values), np.int32)
    renumbered[used] = np.arange(len(used), dtype=np.int32)
    days, leaves = seen.days[still], seen.leaves[still]
    days += base
    leaves += base
    return Sightings(
        seen.accounts[still],
        renumbered[codes],
        days,
        leaves,
        seen.latest[still],
        seen.values.take(pa.array(used)),
    )
