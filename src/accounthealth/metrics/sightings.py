"""The sightings of a distinct count over a window (metrics/sliding.py): each (account, value,
day) a value was seen, and the days it enters and leaves the account's count.

A value seen on day d enters on d + offset and leaves when the window has passed it or when
the value is seen again (plus the offset), whichever is first: it then counts once however
often it recurs. A run chains the sightings it reads (``chain``) and counts them
(``counted``); a run carrying on from the day before counts its own after those that run kept
(``carried_on``): the latest kept sighting of a value seen again now leaves when the new one
enters. What a run keeps for the next is ``to_keep``'s. Days here are a run's day indexes;
kept, days since the epoch (and so the kept rows a run carries on, until ``to_keep``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from accounthealth.metrics.series import Series, Sightings, marked, stable_order


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


@dataclass(frozen=True, eq=False)
class Seen:
    """A run's sightings, for ``to_keep``: the rows it carried on (``carried``, at the
    accounts' positions now, days since the epoch as kept, each leaving and latest as the
    run leaves it) and then its own (``new``, day indexes; with those that left during the
    run), apart. Joined, they were a copy of every kept row made on the way to the run's
    first scores, and ``to_keep`` copies the rows it keeps anyway. Codes of both index
    ``values``."""

    carried: Sightings
    new: Sightings
    values: pa.Array


def counted(chained: Sightings, values: pa.Array, o: int, last: int) -> tuple[Seen, Series, Series]:
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
    none = np.zeros(0, np.int32)
    nothing_carried = Sightings(none, none, none, none, np.zeros(0, bool), values)
    return Seen(nothing_carried, kept, values), enters, leaves


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
) -> tuple[Seen, Series, Series]:
    """The ``carried`` sightings (the rows ``kept``, of accounts that still are, at their
    positions ``now``; ``shift`` moves their days to the run's indexes) and then the run's
    own (``new``, ``chain``ed, codes of ``values``: the carried values and any new ones,
    ``coded``): all of them (``Seen``), and the rows entering and leaving the counts of its
    days up to ``last``. Those that entered before the run are in the carried counts already.
    ``accounts``: how many there are now."""
    old = Sightings(
        now,
        carried.codes[kept],
        carried.days[kept],
        carried.leaves[kept],
        carried.latest[kept],
        values,
    )
    # Rows are taken unchecked (``_taken``): the columns must be of one length.
    assert len(now) == len(old.codes), "the carried rows' positions are theirs"
    # The first sighting now of each account and value (``new`` is in that order).
    keys = pair_keys(new.accounts, new.codes)
    first = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, bool)
    firsts, first_days = keys[first], new.days[first]
    # The kept latest sightings of values seen again: only accounts seen now can have one,
    # so only their rows are looked up (on the benchmark's book a quarter of the kept
    # rows: 14 ms against 49 ms for all 1.35 million).
    rows = np.flatnonzero(old.latest & marked(accounts, new.accounts)[now])
    old_keys = pair_keys(now[rows], old.codes[rows])
    i = np.minimum(np.searchsorted(firsts, old_keys), max(len(firsts) - 1, 0))
    hit = firsts[i] == old_keys if len(firsts) else np.zeros(0, bool)
    again, i = rows[hit], i[hit]
    # Those leave when the new sighting enters, if sooner, and are no longer latest: their
    # columns copied to change (the rows as read are the kept state's file).
    leaves, latest = old.leaves.copy(), old.latest.copy()
    leaves[again] = np.minimum(leaves[again], first_days[i] + np.int32(o - shift))
    latest[again] = False
    old = dataclasses.replace(old, leaves=leaves, latest=latest)
    # Only what enters or leaves on the run's days: the rest is for later runs. The carried
    # rows are of days before the run's: unshifted (no offset), none enters now, so only
    # this run's are looked at (1.35 million fewer on the benchmark's book).
    enter_new = new.days + np.int32(o)
    entering_new = np.flatnonzero((enter_new >= 0) & (enter_new <= last))
    if o > 0:
        enter_old = old.days + np.int32(shift + o)
        entering_old = np.flatnonzero((enter_old >= 0) & (enter_old <= last))
    else:
        enter_old = entering_old = np.zeros(0, np.int32)
    enters = _by_day(
        (old.accounts[entering_old], enter_old[entering_old]),
        (new.accounts[entering_new], enter_new[entering_new]),
    )
    leaving_old = np.flatnonzero(old.leaves <= last - shift)
    leaving_new = np.flatnonzero(new.leaves <= last)
    leaving = _by_day(
        (old.accounts[leaving_old], old.leaves[leaving_old] + np.int32(shift)),
        (new.accounts[leaving_new], new.leaves[leaving_new]),
    )
    return Seen(old, new, values), enters, leaving


def _by_day(*parts: tuple[np.ndarray, np.ndarray]) -> Series:
    """Rows of (account positions, day indexes) ``parts``, one after another, in day order."""
    accounts = np.concatenate([a for a, _ in parts])
    days = np.concatenate([d for _, d in parts]).astype(np.int32, copy=False)
    order = stable_order(days)
    return Series(accounts[order], days[order])


def to_keep(seen: Seen, last: int, base: int) -> Sightings:
    """The sightings a run ends with (``seen``) that a run carrying on from its ``last`` day
    keeps: those counting or yet to after it, days since the epoch (``base``: the run's
    first day's), the values none uses any more dropped and the codes renumbered in order
    (by marks: no sort)."""
    old, new = seen.carried, seen.new
    # The rows kept, found once and taken by position into the columns kept: a boolean mask
    # per column found them again in each, and the days were copied twice (a daily run of
    # the benchmark's book: 1.9 million sightings kept in 13 ms against 54 ms).
    still_old = np.flatnonzero(old.leaves > last + base)
    still_new = np.flatnonzero(new.leaves > last)
    accounts = _taken(old.accounts, still_old, new.accounts, still_new)
    codes = _taken(old.codes, still_old, new.codes, still_new)
    days = _taken(old.days, still_old, new.days, still_new, base)
    leaves = _taken(old.leaves, still_old, new.leaves, still_new, base)
    latest = _taken(old.latest, still_old, new.latest, still_new)
    # The values still used. Where all still are, the codes are kept as they are (the
    # benchmark's book seldom drops one: 40 and 7 values, each seen by many accounts).
    in_use = marked(len(seen.values), codes)
    if in_use.all():
        return Sightings(accounts, codes, days, leaves, latest, seen.values)
    used = np.flatnonzero(in_use)
    renumbered = np.zeros(len(seen.values), np.int32)
    renumbered[used] = np.arange(len(used), dtype=np.int32)
    return Sightings(
        accounts, renumbered[codes], days, leaves, latest, seen.values.take(pa.array(used))
    )


def _taken(
    old: np.ndarray, old_rows: np.ndarray, new: np.ndarray, new_rows: np.ndarray, shift: int = 0
) -> np.ndarray:
    """``old`` at ``old_rows`` and then ``new`` at ``new_rows`` moved by ``shift``, as one new
    array of their type (both of one), each taken straight into its part."""
    out = np.empty(len(old_rows) + len(new_rows), old.dtype)
    # Rows found in the arrays themselves: no bounds to check. Checking them, NumPy takes
    # into a buffer of its own first (a daily run of the benchmark's book: 165 ms for its
    # 1.9 million kept sightings, with 6,700 more page faults, against 20 ms).
    np.take(old, old_rows, out=out[: len(old_rows)], mode="clip")
    part = out[len(old_rows) :]
    np.take(new, new_rows, out=part, mode="clip")
    if shift:
        part += shift
    return out
