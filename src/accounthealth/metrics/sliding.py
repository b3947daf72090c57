"""Aggregates over a run of consecutive days, each row read once.

Pairing every row with every date of a batch (metrics/compute.py) costs rows x dates, so a
90-day backfill would read the history 90 times. Over consecutive days an aggregate instead
changes only by what enters and leaves its window: a row read on the dates
[day + offset, day + offset + window - 1] adds itself on the first and takes itself away the day
after the last. The engine summarises each table once for the whole run, per account and day
("series"); the running value of every aggregate is then moved day by day in memory, one NumPy
array per running value, by the series rows whose day enters or leaves its window.

- count, sum, avg and exists: +x on entry, -x on exit (avg is the running sum over the running
  count of values, so it is NULL while no value is in the window).
- distinct: each (account, value, day) enters as above and leaves when the window has passed it
  or the value is seen again, whichever is first, so a value counts once however often it recurs.
- days_since and latest: the running maximum of the day (of the time, with its value, for
  latest); in a window it counts only while that day is still inside the window.
- active (rows open on the date): +x on the day a row opens, -x on the day it closes.

Rows from before the first window are summed into one series row per account: the running
values start from all history. Aggregates this does not cover (distinct, days_since or latest
over open rows; latest of a non-numeric column) are left to pairing rows with dates.

A run can also start where an earlier one ended (``Carried``, kept by metrics/carryover.py):
its running values, the series rows still to enter or leave a window and, per distinct
aggregate, the sightings still in (or yet to enter) their window, with their values. The run
then reads only the rows of its own days. What a run reads is queried by metrics/reads.py
and its rows placed at their accounts' positions by metrics/placing.py; the series, raw
values and carried state are shaped in metrics/series.py; a distinct count's sightings are
chained, counted, carried on and kept by metrics/sightings.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import threading
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from accounthealth.engine.base import Engine
from accounthealth.engine.readers import once_read
from accounthealth.metrics import reads
from accounthealth.metrics.definitions import Aggregate
from accounthealth.metrics.placing import Compiled, Placing
from accounthealth.metrics.running import add, raise_to, starting
from accounthealth.metrics.running import value as running_value
from accounthealth.metrics.series import (
    EPOCH,
    POSITION,
    Carried,
    Pieces,
    Raw,
    Series,
    Sightings,
    compact,
    no_rows,
    stable_order,
    stacked,
)
from accounthealth.metrics.sightings import Seen, carried_on, chain, coded, counted, to_keep

# Series columns that are only ever added to running values: left out when all zero.
ADDED_ONLY = ("nan_", "pinf_", "ninf_")
# The name the running values of one day take in a compiled metric query.
RUNNING_TABLE = "_accounthealth_running"


@dataclass(frozen=True)
class RunningValues:
    """Running values as a table a query joins (account_id, as_of, one column per aggregate),
    and the aggregates it holds."""

    table: ir.Table
    covered: t.Collection[Aggregate]


def covers(agg: Aggregate) -> bool:
    """Whether the aggregate can be kept as a running value over days."""
    return not (agg.active and agg.kind in ("distinct", "days_since", "latest"))


def carries(agg: Aggregate) -> bool:
    """Whether a run can carry the aggregate's running values on to the next day's run: not a
    distinct count of all history (every value ever seen would be kept), nor rows open on a
    shifted date (the rows opened on the days between would be missing)."""
    return not (agg.kind == "distinct" and agg.window is None) and not (agg.active and agg.offset)


def consecutive(dates: t.Sequence[dt.date]) -> bool:
    """Two or more dates, one day apart, in order."""
    return len(dates) > 1 and all((b - a).days == 1 for a, b in itertools.pairwise(dates))


class RunningAggregates:
    """The raw value of each aggregate for every account on each of a run of consecutive
    ``dates``, from series computed once; ``values`` gives them some dates at a time, in order."""

    def __init__(
        self,
        engine: Engine,
        aggregates: t.Mapping[Aggregate, str],
        dates: t.Sequence[dt.date],
        where_of: reads.Filter,
        carried: Carried | None = None,
        compiled: Compiled | None = None,
    ) -> None:
        self.aggregates = {
            agg: col for agg, col in aggregates.items() if covers(agg) and _numeric(engine, agg)
        }
        self.first, self.last = dates[0], dates[-1]
        self.engine, self.where_of = engine, where_of
        self._carried = carried
        # The aggregates that carry on from ``carried`` (the day before's); the others start
        # from all history.
        self._resumes: set[str] = set()
        if carried is not None:
            assert (self.first - carried.day).days == 1, "a run carries on from the day before"
            # What is never carried is left to the day's query, as a one-day pass computes it:
            # kept running, it would read all history every day.
            self.aggregates = {a: c for a, c in self.aggregates.items() if carries(a)}
            self._resumes = set(carried.columns) & set(self.aggregates.values())
        self._base = (self.first - EPOCH).days  # day indexes to days since the epoch
        # In order: DuckDB lists distinct values in an order that varies with its threads (three
        # orders in ten runs of the benchmark's accounts), and a carried state whose accounts
        # come in the same order is used as it is (below); sorting costs 15 ms.
        if carried is not None and "accounts" in carried.inputs:
            # The accounts table holds what it held (metrics/carryover.py): so do its ids.
            self.ids = carried.ids
        else:
            accounts = engine.table("accounts").select("account_id").distinct()
            ids = engine.to_arrow(accounts.order_by("account_id"))
            self.ids = ids.column("account_id").combine_chunks()
        n = len(self.ids)
        # Where the rows it reads go: its accounts' positions (metrics/placing.py).
        self._placing = Placing(engine, self.ids, self.first, self.last, carried, compiled)
        # The day grid's inputs read (or carried) in this run, by table (``placed_input``).
        self.inputs: dict[str, pa.Table] = {}
        self._groups: dict[tuple[t.Any, ...], list[Aggregate]] = {}
        self._series: dict[tuple[t.Any, ...], Series | Pieces] = {}
        # Per group of aggregates over open rows: rows by the day they open, and they close.
        self._open: dict[tuple[t.Any, ...], tuple[Series, Series]] = {}
        self._running: dict[str, np.ndarray] = {}
        # Per distinct aggregate: (accounts, day) of values entering and of values leaving.
        self._distinct: dict[str, tuple[Series, Series]] = {}
        # Per distinct aggregate: its sightings, to carry on (metrics/sightings.py).
        self._seen: dict[str, Seen] = {}
        # What each read gives is worked out (made series, its sightings chained and sorted) in
        # a thread while the next read runs, in the order the reads finish (``once_read``):
        # the engine's reads keep both cores busy, the NumPy work after each only one (a 90-day
        # backfill of the benchmark's book spent 3 of its 8 s of reads so).
        working = ThreadPoolExecutor(1, thread_name_prefix="accounthealth-series")
        self._working: ThreadPoolExecutor | None = working
        self._ready = threading.Lock()
        self._failed: BaseException | None = None
        self._next = 0  # the index of the next day to apply
        try:
            distinct = {}
            for agg, col in self.aggregates.items():
                if agg.kind == "distinct":
                    distinct[col] = once_read(*self._sightings(agg, col), working)
                self._running |= starting(agg, col, n)
            built = self._build_series(working)
            # While a run carrying on reads its day.
            if carried is not None:
                self._restore(carried)
        except BaseException:
            self._reads_done()
            raise
        self._pending = (distinct, built)

    @property
    def _same(self) -> bool:
        """Whether the carried accounts are this run's, in order (``Placing.same``)."""
        return self._placing.same

    def ready(self) -> None:
        """Wait until the run's reads are in and worked out; raises what failed there. They
        run from when it is made, so its caller can set up the rest of its run meanwhile (the
        day grid took 43 ms of a daily run of the benchmark's book, while a core would have
        waited for the reads); what needs them calls this first."""
        with self._ready:
            if self._failed is not None:
                raise self._failed
            if self._working is None:
                return
            distinct, built = self._pending
            try:
                self._distinct = {col: future.result() for col, future in distinct.items()}
                for future in built:
                    future.result()
            except BaseException as exc:
                self._failed = exc
                raise
            finally:
                self._reads_done()

    def abandon(self) -> None:
        """Stop the run's reads without waiting for what they give (its caller failed)."""
        with self._ready:
            if self._working is not None:
                self._failed = RuntimeError("the running values' reads were abandoned")
                self._reads_done()

    def _reads_done(self) -> None:
        """Stop the run's reading threads and close its read connections."""
        t.cast(ThreadPoolExecutor, self._working).shutdown(cancel_futures=True)
        self._working = None
        self._placing.close()

    def _restore(self, carried: Carried) -> None:
        """Start the carried aggregates' running values where ``carried`` left them."""
        now = self._placing.now
        moved, marks = now >= 0, self._day_marks()
        for name, values in (
            (n, v)
            for col, arrays in carried.running.items()
            if col in self._resumes
            for n, v in arrays.items()
        ):
            shift = self._base if name in marks else 0
            if self._same:  # no scatter
                self._running[name] = np.asarray(values, np.float64) - shift
            else:
                self._running[name][now[moved]] = values[moved] - shift

    def _day_marks(self) -> set[str]:
        """The running values that are day indexes (carried as days since the epoch)."""
        marks = {col for agg, col in self.aggregates.items() if agg.kind == "days_since"}
        return marks | {
            f"{col}_day" for agg, col in self.aggregates.items() if agg.kind == "latest"
        }

    # -- what the engine computes, once ---------------------------------------------------------
    def _series_key(self, agg: Aggregate) -> tuple[t.Any, ...]:
        """Aggregates with the same key share one series (active ones open and close by their
        own offset)."""
        if agg.active:
            return (agg.table, agg.time, agg.where, "active", agg.until, agg.offset)
        return (agg.table, agg.time, agg.where)

    def _build_series(self, working: ThreadPoolExecutor) -> list[Future[None]]:
        """Read each group's series, made in ``working`` (what it returns is done once they
        are)."""
        groups: dict[tuple[t.Any, ...], list[Aggregate]] = {}
        for agg in self.aggregates:
            if agg.kind != "distinct":
                groups.setdefault(self._series_key(agg), []).append(agg)
        made = []
        for key, group in groups.items():
            self._groups[key] = group
            resumed = self._carried is not None and self.aggregates[group[0]] in self._resumes
            # A quiet table has no rows after the carried day: nothing to read.
            quiet = resumed and group[0].table in t.cast(Carried, self._carried).quiet
            reading = self._reads(group, resumed)
            read = [None if quiet else self._placing.reading(one, "_d") for one in reading]
            made.append(
                once_read(read, functools.partial(self._make_series, key, resumed, read), working)
            )
        return made

    def _make_series(
        self, key: tuple[t.Any, ...], resumed: bool, read: list[Future[pa.Table] | None]
    ) -> None:
        """A group's series from its ``read`` rows (None: nothing read), after those carried
        where ``resumed``: of rows open on the date, the rows opening and closing."""
        name = self._name(self._groups[key])
        made = [no_rows() if rows is None else _series_of(rows.result()) for rows in read]
        kept = t.cast(Carried, self._carried).series if resumed else {}
        if len(made) == 2:
            opens, closes = made
            if resumed:
                opens = self._after_carried(kept[f"{name}|opens"], opens)
                closes = self._after_carried(kept[f"{name}|closes"], closes)
            self._open[key] = (opens, closes)
        elif resumed:
            self._series[key] = Pieces([self._placed(p) for p in kept[name]], self._base, made[0])
        else:
            self._series[key] = made[0]

    def _name(self, group: list[Aggregate]) -> str:
        """A series' name in a ``Carried``: its aggregates' columns."""
        return ",".join(sorted(self.aggregates[agg] for agg in group))

    def _after_carried(self, pieces: list[Series], new: Series) -> Series:
        """The carried rows (of accounts that still are) and then this run's, as one series:
        for rows open on the date, whose carried closes may fall on the run's days."""
        series = new
        for piece in reversed(pieces):
            series = stacked(self._placed(piece), series, -self._base)
        # Each part is in day order: the whole is unless the carried closes of later days
        # meet this run's.
        if len(series.days) and np.any(np.diff(series.days) < 0):
            series = series.take(stable_order(series.days))
        return series

    def _placed(self, piece: Series) -> Series:
        """A carried ``piece``'s rows of accounts that still are, at their positions now: the
        piece itself while the accounts are the same."""
        if self._same:
            return piece
        accounts, kept = self._placing.still(piece.accounts)
        columns = {name: values[kept] for name, values in piece.columns.items()}
        return Series(accounts, piece.days[kept], columns)

    def placed_input(
        self,
        table: str,
        rows: ir.Table,
        *order: str,
        worked: t.Callable[[pa.Table], pa.Table | None] | None = None,
    ) -> pa.Table | None:
        """``rows`` of the day grid's input ``table``, ``placed`` and then ``worked`` out (as
        the grid uses them; None where ``worked`` finds them unfit, and nothing is kept); or
        as the day before's run kept them, worked out already, where it carried them on (its
        table holds what it held). Either way they are carried to the next day's run."""
        # Its rows hold the carried accounts' positions: good while the accounts are those.
        data = None
        if self._carried is not None and self._same:
            data = self._carried.inputs.get(table)
        if data is None:
            data = self._placing.placed(rows, *order)
            if worked is not None:
                data = worked(data)
        if data is not None:
            self.inputs[table] = data
        return data

    def carried_grid(self) -> dict[str, pa.Table]:
        """What the day before's day grid worked out of the accounts (``Carried.grid``), where
        this run carries its accounts input on (``placed_input``); else nothing."""
        carried = self._carried
        if carried is None or not self._same or "accounts" not in carried.inputs:
            return {}
        return carried.grid

    def _reads(self, group: list[Aggregate], resumed: bool) -> tuple[reads.Read, ...]:
        """The reads of a group's series: of rows open on a date, those opening and closing;
        else its rows per account and day (``resumed``: of the run's own days only)."""
        name = self._name(group)
        if group[0].active:
            return reads.open_rows(self.engine, group, self.where_of, resumed, name)
        return (reads.day_rows(self.engine, group, self.where_of, resumed, name),)

    def _sightings(
        self, agg: Aggregate, col: str
    ) -> tuple[list[Future[pa.Table] | None], t.Callable[[], tuple[Series, Series]]]:
        """The days a distinct value enters and leaves the window of each account: it enters
        on day + offset (the first day for earlier ones) and leaves when the window has passed
        it or when it is seen next, whichever is first; over all history it enters when first
        seen and never leaves. Read now (or, carrying on, in flight on the run's readers),
        worked out by the function returned, once the reads returned with it are in."""
        if col in self._resumes:
            return self._sightings_after(agg, col, t.cast(Carried, self._carried).sightings[col])
        o, w = agg.offset, agg.window
        if w is None:
            first_seen = self._placing.read(
                reads.first_seen(self.engine, agg, self.where_of, col), "_d"
            )

            def entering() -> tuple[Series, Series]:
                enters = _series_of(first_seen)
                enters.days = np.maximum(enters.days + o, 0)
                return enters, no_rows()

            return [], entering

        # Each value's next sighting is found here, by ``chain``'s sort of the sightings with
        # their values, not by a window in the query: that took as long as the sort and the
        # values' fetch, and the sightings still seen after the last day are then at hand for
        # carrying on (reading them again at the end took 1.3-2.3 s for the benchmark's two).
        seen = reads.values_seen(self.engine, agg, self.where_of, col)
        accounts, days, values = _seen_columns(self._placing.read(seen))

        def chained() -> tuple[Series, Series]:
            nonlocal accounts, days, values
            encoded = pc.dictionary_encode(values)
            codes = encoded.indices.to_numpy().astype(np.int32, copy=False)
            dictionary = encoded.dictionary
            del values, encoded  # a 90-day backfill's 6.4 million values, freed before the sort
            sightings = chain(accounts, codes, days, o, t.cast(int, w))
            del accounts, codes, days
            last = (self.last - self.first).days
            self._seen[col], enters, leaves = counted(sightings, dictionary, o, last)
            return enters, leaves

        return [], chained

    def _sightings_after(
        self, agg: Aggregate, col: str, carried: Sightings
    ) -> tuple[list[Future[pa.Table] | None], t.Callable[[], tuple[Series, Series]]]:
        """``_sightings`` of a run that carries on: the carried sightings, the latest of a
        value seen again now leaving when that one enters, and this run's own. Those that
        entered before the run are in the carried counts already. Returns the read of this
        run's sightings (none where its table is quiet) and the function that works them out."""
        if agg.table in t.cast(Carried, self._carried).quiet:
            none = np.zeros(0, np.int32)
            return [], functools.partial(
                self._carried_on, agg, col, carried, none, none, carried.values.slice(0, 0)
            )
        read = self._placing.reading(reads.seen_on_run_days(self.engine, agg, self.where_of, col))
        return [read], lambda: self._carried_on(agg, col, carried, *_seen_columns(read.result()))

    def _carried_on(
        self,
        agg: Aggregate,
        col: str,
        carried: Sightings,
        accounts: np.ndarray,
        days: np.ndarray,
        values: pa.Array,
    ) -> tuple[Series, Series]:
        """``_sightings_after`` of the run's sightings read."""
        o, w = agg.offset, t.cast(int, agg.window)
        codes, dictionary = coded(values, carried.values)
        now, kept = self._placing.still(carried.accounts)
        self._seen[col], enters, leaves = carried_on(
            carried,
            chain(accounts, codes, days, o, w),
            dictionary,
            now=now,
            kept=kept,
            shift=-self._base,
            o=o,
            last=(self.last - self.first).days,
            accounts=len(self.ids),
        )
        return enters, leaves

    def compile_carrying_on(self, columns: t.Collection[str]) -> None:
        """Compile the reads of a run carrying the aggregates in ``columns`` on from this one
        (each kept series' and distinct value's rows of its own days), so that the day after
        a backfill does not compile them (0.15-0.2 s of a daily run of the benchmark's book).
        Where this run has compiled queries."""
        if not self._placing.compiles:
            return
        kept = self.kept(columns)
        for group in self._kept_groups(kept).values():
            for read in self._reads(group, resumed=True):
                self._placing.compiled_read(read, ["_d"])
        for agg, col in kept.items():
            if agg.kind == "distinct":
                seen = reads.seen_on_run_days(self.engine, agg, self.where_of, col)
                self._placing.compiled_read(seen, [])

    # -- the running values, day by day ---------------------------------------------------------
    def _advance(self) -> None:
        """Apply the next day's entries and exits to every running value."""
        self.ready()
        k = self._next
        for agg, col in self.aggregates.items():
            if agg.kind == "distinct":
                enters, leaves = self._distinct[col]
                np.add.at(self._running[col], enters.accounts[enters.on(k)], 1.0)
                np.add.at(self._running[col], leaves.accounts[leaves.on(k)], -1.0)
                continue
            key = self._series_key(agg)
            o, w = agg.offset, agg.window
            # A fresh run's first day takes in all history at once; a carried one's has it.
            fold = k == 0 and col not in self._resumes
            if agg.active:
                opens, closes = self._open[key]
                add(
                    self._running,
                    agg,
                    col,
                    opens.take(opens.between(None, -o)) if fold else opens.day(k - o),
                )
                add(self._running, agg, col, closes.day(k - o), sign=-1.0)
                continue
            series = self._series[key]
            if fold:
                # A fresh run's (a carried one's series is in pieces, and never folds).
                whole = t.cast(Series, series)
                entering = whole.take(whole.between(None if w is None else -o - w, -o))
            else:
                entering = series.day(k - o)
            if agg.kind in ("days_since", "latest"):
                raise_to(self._running, agg, col, entering)
                continue
            add(self._running, agg, col, entering)
            if w is not None and not fold:
                add(self._running, agg, col, series.day(k - o - w), sign=-1.0)
        self._next += 1

    # -- what a later run carries on from -------------------------------------------------------
    def kept(self, columns: t.Collection[str]) -> dict[Aggregate, str]:
        """The aggregates of ``columns`` a run carrying on keeps (``carries``), with their
        columns."""
        return {agg: col for agg, col in self.aggregates.items() if col in columns and carries(agg)}

    def _kept_groups(
        self, kept: t.Collection[Aggregate]
    ) -> dict[tuple[t.Any, ...], list[Aggregate]]:
        """The series groups whose aggregates are all ``kept`` (a table's are kept or not
        together), as the next day's run groups them."""
        return {key: group for key, group in self._groups.items() if all(a in kept for a in group)}

    def carry(self, columns: t.Collection[str], inputs: t.Collection[str] = ()) -> Carried:
        """The state after the last day applied, of the aggregates in ``columns`` that can be
        carried on (``carries``), with the day grid's inputs of the tables in ``inputs``. It
        queries nothing (another thread may be using the engine): each distinct aggregate's
        sightings are those its run read (``_sightings``, ``_sightings_after``)."""
        rows = self.carry_rows(columns, inputs)
        return dataclasses.replace(rows, running=self.carry_running(columns))

    def carry_running(self, columns: t.Collection[str]) -> dict[str, dict[str, np.ndarray]]:
        """``carry``'s running values: once the last day is applied."""
        self.ready()
        assert self._next == (self.last - self.first).days + 1, "the run's last day applied"
        marks = self._day_marks()
        # The accounts' values as carried in, where they are the same accounts.
        before = self._carried.running if self._carried is not None and self._same else {}
        running: dict[str, dict[str, np.ndarray]] = {}
        for agg, col in self.kept(columns).items():
            running[col] = {}
            for name, start in starting(agg, col, 1).items():
                values = self._running[name]
                if name in marks:
                    running[col][name] = values + self._base
                elif start[0] != 0 or values.any():
                    # Not a copy: the last day's values change no more. One still as it
                    # starts (a count of NaN or infinite values, mostly) is left out.
                    running[col][name] = values
            if col in before and _same_values(running[col], before[col]):
                # Those carried in themselves: the state keeps their file under a new name
                # (metrics/carryover.py), not a copy (on the benchmark's book, four of
                # fifteen aggregates' values, 9.6 MB, were the day before's).
                running[col] = before[col]
        return running

    def carry_rows(self, columns: t.Collection[str], inputs: t.Collection[str] = ()) -> Carried:
        """``carry`` but for the running values (none): the rows it keeps are the run's own,
        read and chained as the run began, so they can be taken before its days are applied
        (metrics/carryover.py writes them meanwhile)."""
        self.ready()
        last = (self.last - self.first).days
        kept = self.kept(columns)
        series = {}
        for key, group in self._kept_groups(kept).items():
            name = self._name(group)
            if key in self._open:
                # Offset 0: rows opened so far have entered; of their closes, the later ones.
                opens, closes = self._open[key]
                series[f"{name}|opens"] = [opens.take(slice(0, 0), self._base)]
                series[f"{name}|closes"] = [closes.take(closes.between(last, None), self._base)]
            else:
                reach = max(agg.offset + (agg.window or 0) for agg in group)
                series[name] = self._series[key].kept(last - reach, last, self._base)
        sightings = {
            col: to_keep(self._seen[col], last, self._base)
            for agg, col in kept.items()
            if agg.kind == "distinct"
        }
        carried = {table: data for table, data in self.inputs.items() if table in inputs}
        return Carried(
            self.last,
            self.ids,
            tuple(kept.values()),
            {},
            series,
            sightings,
            inputs=carried,
            index=self._placing.hashed,
        )

    # -- what scoring reads ---------------------------------------------------------------------
    def schema(self) -> ibis.Schema:
        """The columns of ``values``."""
        types = {"count": "int64", "distinct": "int64", "exists": "boolean", "days_since": "date"}
        return ibis.schema(
            {"account_id": "string", "as_of": "date"}
            | {col: types.get(agg.kind, "float64") for agg, col in self.aggregates.items()}
        )

    def placeholder(self) -> RunningValues:
        """The values as the table ``RUNNING_TABLE``, for a query compiled once and run each
        day with that day's ``values`` attached under that name."""
        return RunningValues(ibis.table(self.schema(), name=RUNNING_TABLE), self.aggregates)

    def table(self, dates: t.Sequence[dt.date]) -> RunningValues:
        """The values of ``dates`` (see ``values``) as an in-memory table."""
        values = ibis.memtable(self.values(dates), schema=self.schema())
        return RunningValues(values, self.aggregates)

    def values(self, dates: t.Sequence[dt.date]) -> pa.Table:
        """account_id, as_of and one raw value per aggregate for every account on ``dates``
        (consecutive, following the previous call's)."""
        parts, schema = [], self.schema()
        for day in dates:
            as_of = np.full(len(self.ids), (day - EPOCH).days, np.int32)
            columns = {"account_id": self.ids, "as_of": pa.array(as_of, pa.date32())}
            for col, raw in self.raw(day).items():
                columns[col] = pa.array(raw.data, schema[col].to_pyarrow(), mask=raw.null)
            parts.append(pa.table(columns))
        return pa.concat_tables(parts)

    def raw(self, day: dt.date, at: np.ndarray | None = None) -> dict[str, Raw]:
        """Each aggregate's raw value on ``day`` (the day after the previous call's) for the
        accounts at positions ``at``, in that order (None: every account, in ``ids`` order), by
        its column."""
        expected = self.first + dt.timedelta(days=self._next)
        if day != expected:
            raise ValueError(f"running aggregates are at {expected}, not {day}")
        self._advance()
        k = (day - self.first).days
        return {
            col: running_value(self._running, agg, col, k, self._base, at)
            for agg, col in self.aggregates.items()
        }


def _series_of(data: pa.Table) -> Series:
    """A read grouped by account and day (``_d``), ``_read`` in day order, as a series."""
    day = "_d"
    series = Series(
        accounts=data.column(POSITION).to_numpy(),  # int32 as given
        days=data.column(day).to_numpy().astype(np.int32),
    )
    for name in data.column_names:
        if name not in (POSITION, day):
            column = data.column(name)
            if pa.types.is_timestamp(column.type):
                # Microseconds since the epoch: exact in a float64 for the next two centuries,
                # and ordered as the times are.
                column = pc.cast(column, pa.int64())
            values = column.to_numpy(zero_copy_only=False)
            if name.startswith(ADDED_ONLY) and not values.any():
                continue  # nothing to add (NaN and infinite values are rare)
            series.columns[name] = compact(values)
    return series


def _seen_columns(data: pa.Table) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Rows of sightings read as (account positions, int32 day indexes, values), in no order:
    ``chain`` sorts them."""
    return (
        data.column(POSITION).to_numpy(),
        data.column("_d").to_numpy().astype(np.int32),
        data.column("_v").combine_chunks(),
    )


def _numeric(engine: Engine, agg: Aggregate) -> bool:
    """A latest value is carried as a number: other types are left to pairing."""
    if agg.kind != "latest":
        return True
    type_ = engine.table(agg.table)[t.cast(str, agg.column)].type()
    return type_.is_numeric() or type_.is_boolean()


def _same_values(now: t.Mapping[str, np.ndarray], before: t.Mapping[str, np.ndarray]) -> bool:
    """Whether running values ``now`` are ``before``, bit for bit (a NaN too): the same
    names, each array of the same type and length with the same bytes."""
    return now.keys() == before.keys() and all(
        a.dtype == b.dtype
        and a.shape == b.shape
        and np.array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}"))
        for a, b in ((now[name], before[name]) for name in now)
    )
