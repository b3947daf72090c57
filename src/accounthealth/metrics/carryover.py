"""Running values carried from one scoring run to the next, so that the daily run reads one
day's rows instead of all history.

A run of consecutive days keeps each aggregate's value running (metrics/sliding.py). When it
ends, what a run of the next day needs to go on is kept in the project's cache folder, one
folder per day under the fingerprint of the model, the data's layout and accounthealth's code
(the compiled queries' key): the running values, the rows still to leave a window, and the
distinct values still counted; and the day grid's inputs (the accounts and contracts as
scoring/day_grid.py uses them) where their tables are ingested, carried on while each
table's last ingest is the one recorded. The next day's run starts from it and reads only that
day's rows. The state is written in a thread while the run scores its days (its rows from the
start, its running values once they reach the last day), and put in place once the tables it
counts are counted, while the last day is written to history (a run that fails before then
drops it; one whose history write fails keeps it, as it is the data's).

It is kept only for what cannot have changed under it unseen: aggregates of tables that
`accounthealth ingest` loads, and of tables read in place whose source says `append_only`. A
table read in place can otherwise be changed in ways no cheap check sees; an ingested one
changes only by an ingest, which records the files it read. Before carrying on, a run checks
each of those tables: its last ingest read the files the kept state saw, as they were, and
perhaps more after them (a ticket closed since comes in a changed or a new file, never by a
row changing in place), against the same account ids; and it holds as many rows up to the
kept day as it did. An append-only table read in place is held to the same account ids and
the same rows up to the kept day; that its rows never change in place is its source's word.
A table that fails (a file changed or replaced, a row arriving for a day already counted,
accounts added or removed) is read from all history again within the run, and the run says
why; another model or code starts afresh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import os
import shutil
import tempfile
import threading
import time
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from accounthealth.engine.base import Engine
from accounthealth.metrics import state_files
from accounthealth.metrics.census import Counting, census, counting
from accounthealth.metrics.series import Carried
from accounthealth.metrics.sliding import Compiled, RunningAggregates
from accounthealth.sources.incremental import Fingerprint, account_ids, last_fingerprints
from accounthealth.store.archive import ORPHAN_AGE_SECONDS

if t.TYPE_CHECKING:
    from accounthealth.scoring.day_grid import DayGrid

# Days kept per fingerprint: the latest, and two before it for a day scored again.
KEEP = 3
# What a kept state records as the settings of an append-only table read in place (it has
# no ingest's): its source and columns are in the state's key (the queries' fingerprint).
IN_PLACE = "read in place, append-only"


@dataclass(frozen=True)
class Resumed:
    """What a run starts from: the state carried on, of the tables that still hold what it
    counted (None: none do, or nothing was kept of the day before), and which tables do not,
    and why (None: nothing to say)."""

    carried: Carried | None
    why_not: str | None = None


class CensusOf(t.NamedTuple):
    """What marks a kept state's tables (``CarryOver._counting``): the census of those not
    known already, made ready to count, the marks of those known, and the table of each
    carried column."""

    census: Counting
    known: dict[str, t.Any]
    tables_of: dict[str, str]


class Staged(t.NamedTuple):
    """A state written by the keeping thread: what it carries, the folder it is in, what
    marks its tables, and the census's counts where the thread counted them."""

    carried: Carried
    work: Path
    census_of: CensusOf
    counts: dict[str, dict[str, t.Any]] | None


class CarryOver:
    """The kept states of one fingerprint (``key``) under ``root``: one folder per day."""

    def __init__(
        self,
        root: Path,
        key: str,
        store: Engine,
        compute: Engine,
        in_place: t.Mapping[str, bool] | None = None,
        compiled: Compiled | None = None,
        inputs: t.Collection[str] = (),
    ) -> None:
        self.root, self.folder = root, root / key
        self.store, self.compute = store, compute
        # The tables' counts (``census``) compiled once, as the day's reads are: one query
        # for the tables any run of the state counts, those of its aggregates and ``inputs``
        # (the day grid's, which a run carries on or not).
        self.compiled = compiled
        self._inputs_counted = tuple(inputs)
        # The tables read in place, and of those the ones whose sources say their rows are
        # only ever added (the others are never carried on).
        in_place = in_place or {}
        self.in_place = frozenset(in_place)
        self.appended = frozenset(table for table, append_only in in_place.items() if append_only)
        # The marks of the tables a resumed state found quiet (see ``resume``).
        self._known: dict[str, dict[str, t.Any]] = {}
        # What a resumed state carried as it was read (``state_files.read_from``), by id, with
        # the file each was read from: kept on as they are, they are linked there, not
        # written again.
        self._read_from: dict[int, tuple[object, Path]] = {}
        # Each table's last ingest (or, read in place, its account ids), read once: a run
        # ingests nothing between resume and keep.
        self._prints: dict[str, Fingerprint | None] = {}
        # The state being kept (``start_keeping``): of which running values, and written by a
        # thread, or why not.
        self._kept_from: RunningAggregates | None = None
        self._staged: Future[Staged] | None = None
        self._why_unkept: str | None = None
        # Set once the running values reach the run's last day (``last_day_reached``), or
        # when the state is dropped (``abandon_keeping``; then ``_dropped`` too).
        self._reached = threading.Event()
        self._dropped = False

    def in_use(self, before: dt.date) -> bool:
        """Whether a state of a day before ``before`` is kept, of any model: the project's
        runs carry on, so a run of that day that cannot makes a state of its own, for the days
        after it to carry on from."""
        return any(day < before for folder in self._keys() for day in _days(folder))

    def _keys(self) -> list[Path]:
        return [entry for entry in self.root.glob("*") if entry.is_dir()]

    def resume(self, first: dt.date) -> Resumed:
        """The state of the day before ``first``, if every table it counts is as it left it."""
        day = first - dt.timedelta(days=1)
        folder = self.folder / day.isoformat()
        try:
            meta = json.loads((folder / "state.json").read_text())
        except (OSError, ValueError):
            return Resumed(None)
        good, quiet, why = set(), set(), []
        reading = ThreadPoolExecutor(1, thread_name_prefix="accounthealth-state")
        try:
            inputs = meta.get("inputs", {})
            every, all_inputs = set(meta["tables"]), set(inputs)
            # The whole state is read while its tables are counted, as most days it is all
            # good (on the benchmark's book the two took 15 and 17 ms, one after the other).
            whole = reading.submit(
                state_files.read_state, folder, meta, day, every, frozenset(), all_inputs
            )
            prints = self._fingerprints([*meta["tables"], *inputs])
            # Rows by day are counted only where rows may have been added (files ingested
            # since, or read in place): a table ingested from the same files is checked by its
            # count of rows alone (no scan).
            times = {
                table: list(mark["until"]) if self._added_to(table, prints[table], mark) else []
                for table, mark in meta["tables"].items()
            }
            for table in inputs:
                times.setdefault(table, [])
            kept = {table: list(mark["until"]) for table, mark in meta["tables"].items()}
            counts = census(self.compute, times, day, self.compiled, self._every(kept))
            for table, mark in meta["tables"].items():
                changed, still = _changed(
                    prints[table], mark, counts.get(table), table in self.appended
                )
                if changed:
                    why.append(f"{table}: {changed}")
                    continue
                good.add(table)
                if still:
                    quiet.add(table)
            unchanged = {
                table
                for table, mark in inputs.items()
                if _as_kept(prints[table], mark, counts.get(table))
            }
            if good and good == every and unchanged == all_inputs:
                carried = dataclasses.replace(whole.result(), quiet=frozenset(quiet))
            elif good:
                carried = state_files.read_state(
                    folder, meta, day, good, frozenset(quiet), unchanged
                )
            else:
                carried = None
        except (
            OSError,
            AttributeError,
            KeyError,
            TypeError,
            ValueError,
            pa.ArrowException,
            duckdb.Error,
        ) as exc:
            return Resumed(None, f"the running values kept of {day} could not be read ({exc!r})")
        finally:
            reading.shutdown(cancel_futures=True)
        # A quiet table's counts hold for any later day too.
        self._known = {table: meta["tables"][table] for table in quiet}
        if carried is not None:
            self._read_from = {
                id(kept): (kept, path)
                for kept, path in state_files.read_from(carried, folder, meta)
            }
        return Resumed(carried, "; ".join(why) or None)

    def start_keeping(self, running: RunningAggregates, grid: DayGrid | None = None) -> None:
        """Start keeping the state ``running`` reaches at its last day, for the aggregates of
        ingested tables and of append-only ones read in place, once its reads are done (and
        the day grid's inputs read): a thread takes and writes the rows it carries while the
        caller scores the run's days, then, once ``last_day_reached``, its running values,
        then counts the tables on a connection of its own (``finish_keeping`` counts them where
        the count is not compiled) and ``finish_keeping`` puts the state in place. The run's
        scores do not depend on it: this failing only costs the next run a read of all
        history."""
        self.abandon_keeping()  # one state at a time
        self._kept_from, self._why_unkept = running, None
        self._reached, self._dropped = threading.Event(), False
        try:
            prints = self._fingerprints([agg.table for agg in running.aggregates])
            columns = [
                col for agg, col in running.aggregates.items() if prints[agg.table] is not None
            ]
            if columns:
                # The next day's reads compiled now, here (the thread queries only on its own
                # connection, and the caller's queries have the engine to themselves): its run
                # is the one to keep short.
                running.compile_carrying_on(columns)
        except (OSError, pa.ArrowException, duckdb.Error) as exc:
            self._why_unkept = _unkept(exc)
            return
        # The day grid's inputs are carried where their tables are ingested: only an ingest
        # changes those, and it records what it read.
        inputs = {
            table
            for table in running.inputs
            if table not in self.in_place and self._fingerprint(table) is not None
        }
        if columns:
            try:
                # A compiled census is counted by the thread, on a connection of its own, once
                # it has written the state: on the benchmark's book a daily run counted after
                # scoring, 15 ms while its history was written on both cores.
                census_of = self._counting(running, columns)
                counter = self.compute.reader() if census_of.census.compiled else None
            except (OSError, pa.ArrowException, duckdb.Error) as exc:
                self._why_unkept = _unkept(exc)
                return
            try:
                thread = ThreadPoolExecutor(1, thread_name_prefix="accounthealth-carry")
                self._staged = thread.submit(
                    self._stage, running, columns, inputs, census_of, counter, grid
                )
            except BaseException:
                if counter is not None:
                    counter.close()  # the thread that would have closed it never started
                raise
            thread.shutdown(wait=False)  # its one task still runs

    def last_day_reached(self) -> None:
        """The running values have reached the run's last day and change no more: the thread
        keeping the state takes them."""
        self._reached.set()

    def finish_keeping(self) -> str | None:
        """Once the caller is done with the engine: put the state started in place; why it
        could not, if so."""
        staged, running = self._staged, self._kept_from
        if staged is None or running is None:
            return self._why_unkept
        if not self._reached.is_set():
            self.abandon_keeping()
            return "the running values could not be kept: the run's last day was not reached"
        try:
            # Memory too: the thread holds what it copied (the sightings still counted, the
            # days of the rows it writes) while the days are scored.
            done = staged.result()
        except (OSError, MemoryError, pa.ArrowException, duckdb.Error) as exc:
            self._staged = None
            return _unkept(exc)
        # Not before: interrupted while waiting, ``abandon_keeping`` drops what it wrote.
        self._staged = None
        try:
            self._put_in_place(done)
        except (OSError, pa.ArrowException, duckdb.Error) as exc:
            return _unkept(exc)
        finally:
            shutil.rmtree(done.work, ignore_errors=True)  # gone once in place
        return None

    def abandon_keeping(self) -> None:
        """After the run failed (or was interrupted while finishing): wait for the thread and
        drop what it wrote."""
        self._dropped = True
        self._reached.set()  # a thread still waiting for the last day stops
        staged, self._staged = self._staged, None
        if staged is not None:
            with contextlib.suppress(Exception):
                shutil.rmtree(staged.result().work, ignore_errors=True)

    def _stage(
        self,
        running: RunningAggregates,
        columns: list[str],
        inputs: set[str],
        census_of: CensusOf,
        counter: Engine | None,
        grid: DayGrid | None,
    ) -> Staged:
        """The carried state (with the day grid's ``inputs`` of those tables), written to a
        folder of its own beside the kept days': its rows first, then, once the run's last
        day is reached, its running values and what ``grid`` worked out of its accounts
        input (``DayGrid.kept``, with that input); then its census counted by ``counter``
        (closed once done), if given."""
        try:
            carried = running.carry_rows(columns, inputs)
            self.folder.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(dir=self.folder, prefix=".writing-"))
            try:
                state_files.write_rows(carried, work, self._linked)
                self._reached.wait()
                if self._dropped:
                    raise _Dropped
                kept = grid.kept() if grid is not None and "accounts" in carried.inputs else {}
                carried = dataclasses.replace(
                    carried, running=running.carry_running(columns), grid=kept
                )
                state_files.write_running(carried, work, self._linked)
                counts = census_of.census.count(counter) if counter is not None else None
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
        finally:
            if counter is not None:
                counter.close()
        return Staged(carried, work, census_of, counts)

    def _linked(self, kept: object, target: Path) -> bool:
        """Whether ``kept``, carried on as it was read, is now at ``target`` as a second name
        of the file it was read from: the accounts the day grid read (22 MB of strings on the
        benchmark's book, the same every day they are carried on) and their ids, a series'
        piece (its events series was 41 MB, written every day, of which one day's rows were
        new), an aggregate's running values the day left as they were."""
        read, source = self._read_from.get(id(kept), (None, None))
        if kept is not read or source is None:
            return False
        try:
            os.link(source, target)
        except OSError:
            return False  # a file system without hard links: written again
        return True

    def _counting(self, running: RunningAggregates, columns: t.Collection[str]) -> CensusOf:
        """The census of the tables of the carried ``columns`` on the run's last day, made
        ready to count; the marks of those whose counts are known already; the table of each
        carried column."""
        times: dict[str, set[str]] = {}
        tables_of = {}
        for agg, col in running.kept(columns).items():
            times.setdefault(agg.table, set()).add(agg.time)
            tables_of[col] = agg.table
        known = {table: self._known[table] for table in times if table in self._known}
        every = {table: sorted(read) for table, read in times.items()}
        count = counting(
            self.compute,
            {table: read for table, read in every.items() if table not in known},
            running.last,
            self.compiled,
            self._every(every),
        )
        return CensusOf(count, known, tables_of)

    def _marks(
        self, known: dict[str, t.Any], counts: dict[str, dict[str, t.Any]]
    ) -> dict[str, t.Any]:
        """Each carried table's mark: as known, or its fingerprint and its ``counts``."""
        tables = dict(known)
        for table, counted in counts.items():
            fingerprint = t.cast(Fingerprint, self._prints[table])
            tables[table] = {
                "settings": fingerprint.settings,
                "accounts": fingerprint.accounts,
                "columns": fingerprint.columns,
                "files": fingerprint.files,
                **counted,
            }
        return tables

    def _put_in_place(self, staged: Staged) -> None:
        """Put the state written in ``staged.work`` in place, with its tables' marks (counted
        now where the keeping thread could not count them)."""
        carried, work, (ready, known, tables_of), counts = staged
        if counts is None:
            counts = ready.count(self.compute)
        tables = self._marks(known, counts)
        meta = {
            "day": carried.day.isoformat(),
            "columns": tables_of,
            "series": state_files.piece_files(carried),
            "sightings": list(carried.sightings),
            "tables": tables,
            # What the run's ingest recorded of each input's table (``_as_kept``).
            "inputs": {
                table: json.loads(t.cast(Fingerprint, self._prints[table]).to_json())
                for table in carried.inputs
            },
            # What the day grid worked out of the accounts input (``DayGrid.kept``).
            "grid": sorted(carried.grid),
        }
        (work / "state.json").write_text(json.dumps(meta))
        target = self.folder / carried.day.isoformat()
        # A day scored again replaces its state: the old one is moved aside first, as a
        # folder cannot be renamed over another.
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=self.folder, prefix=".old-"))
            os.replace(target, old / "state")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(work, target)
        for day in _days(self.folder)[:-KEEP]:
            shutil.rmtree(self.folder / day.isoformat(), ignore_errors=True)
        # What a killed run left, once as old as the history files left unlisted are when
        # they are swept (a folder being written by a run now is younger).
        cutoff = time.time() - ORPHAN_AGE_SECONDS
        for left in [*self.folder.glob(".writing-*"), *self.folder.glob(".old-*")]:
            with contextlib.suppress(OSError):
                if left.stat().st_mtime < cutoff:
                    shutil.rmtree(left, ignore_errors=True)
        # Another model's or code's states are never read again once this one's are kept.
        for other in self._keys():
            if other != self.folder:
                shutil.rmtree(other, ignore_errors=True)

    def _every(self, times: t.Mapping[str, t.Sequence[str]]) -> dict[str, list[str]]:
        """Every table and time column a census of this state may count (``census``'s
        ``every``): the aggregates' ``times`` and the day grid's inputs."""
        every = {table: [] for table in self._inputs_counted}
        return every | {table: list(columns) for table, columns in times.items()}

    def _fingerprint(self, table: str) -> Fingerprint | None:
        return self._fingerprints([table])[table]

    def _fingerprints(self, tables: t.Iterable[str]) -> dict[str, Fingerprint | None]:
        """Each table's fingerprint, those of ingested tables looked up in one query (one
        each took 9 ms of a daily run's start on the benchmark's book)."""
        wanted = [table for table in dict.fromkeys(tables) if table not in self._prints]
        for table in wanted:
            if table in self.appended:
                self._prints[table] = self._in_place
            elif table in self.in_place:
                # Never carried on, whatever an ingest recorded while it was a file: source.
                self._prints[table] = None
        self._prints |= last_fingerprints(
            self.store, [table for table in wanted if table not in self._prints]
        )
        return {table: self._prints[table] for table in tables}

    def _added_to(self, table: str, now: Fingerprint | None, mark: dict[str, t.Any]) -> bool:
        return _added_to(now, mark, table in self.appended)

    @functools.cached_property
    def _in_place(self) -> Fingerprint:
        """An append-only table read in place has no files to compare: the account ids its
        rows are joined with, then its counts of rows by day, tell whether what was counted
        still holds (the same for every such table, read once)."""
        return Fingerprint(IN_PLACE, account_ids(self.compute), ())


class _Dropped(Exception):
    """The state being kept was dropped before the run's last day."""


def _unkept(exc: BaseException) -> str:
    return f"the running values could not be kept for the next day ({exc!r})"


def _added_to(now: Fingerprint | None, mark: dict[str, t.Any], in_place: bool) -> bool:
    """Whether rows may have been added to the table since its ``mark`` was kept: it is read
    in place, or its last ingest read other files than those the mark saw."""
    return in_place or now is None or list(now.files) != [tuple(f) for f in mark["files"]]


def _changed(
    now: Fingerprint | None,
    mark: dict[str, t.Any],
    counted: dict[str, t.Any] | None,
    in_place: bool,
) -> tuple[str | None, bool]:
    """How a table changed since its state was kept (None: at most rows after the kept day
    were added), and whether it surely holds no rows after that day (no ingest since, and
    none then). ``now``: its last ingest's fingerprint (of a table read ``in_place``, only
    its account ids); ``counted``: its ``census`` now, of the kept day (counts by day only
    where rows may have been added)."""
    if now is None or counted is None:
        return "it is neither ingested nor read in place with append_only", False
    files = [tuple(f) for f in mark["files"]]
    if now.settings != mark["settings"] or [list(c) for c in now.columns] != mark["columns"]:
        return "its source's settings or columns changed", False
    if now.accounts != mark["accounts"]:
        # Read again against other account ids: rows kept out before may be in now.
        return "accounts were added or removed since", False
    if list(now.files[: len(files)]) != files:
        return "a file read before was changed, moved or removed", False
    if not _added_to(now, mark, in_place):
        if now.rows == mark["rows"] == counted["rows"]:
            return None, not any(mark["later"].values())
        return (
            f"it holds {counted['rows']:,} rows, not {mark['rows']:,} as when its running "
            "values were kept, from the same files: it was changed other than by an ingest"
        ), False
    for column, rows in mark["until"].items():
        found = counted["until"][column]
        if found != rows:
            how = "came for" if found > rows else "were removed from"
            return (
                f"it holds {found:,} rows up to the kept day by {column}, not {rows:,} as "
                f"when its running values were kept: rows {how} days already counted"
            ), False
    return None, False


def _as_kept(
    now: Fingerprint | None, mark: dict[str, t.Any], counted: dict[str, t.Any] | None
) -> bool:
    """Whether a table holds what it held when the day grid's input read of it was kept: its
    last ingest is the one ``mark`` recorded (the same files, settings, columns and rows) and
    it holds that many rows (``counted``, its ``census``)."""
    if now is None or counted is None:
        return False
    return json.loads(now.to_json()) == mark and counted["rows"] == mark["rows"]


def _days(folder: Path) -> list[dt.date]:
    """The days of the states kept in ``folder``, in order."""
    days = []
    for entry in folder.glob("*-*-*"):
        with contextlib.suppress(ValueError):
            days.append(dt.date.fromisoformat(entry.name))
    return sorted(days)
