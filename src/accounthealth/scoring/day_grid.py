"""The metric grid of each day of a run of days, worked out in memory from its running values.

Over a run of days every aggregate is kept as an array by account position
(metrics/sliding.py). The day's query (scoring/grid.py) then only joined those arrays to the
day's population by account id and worked each metric out of its aggregates: 0.2-0.4 s of
every day of the benchmark's backfill (200,000 accounts), with the query's second thread on
top. Here the accounts and their contracts are read once per run, each row with its account's
position (joined by the engine), and each day's population, metric values and segment model
are worked out by position, in NumPy (about 0.05 s), with the query's columns, types and
values. A daily run of one day uses it too: reading the accounts and contracts (0.2 s) costs
it less than the query, and one carrying on takes them as the day before kept them (the
contracts worked out as the grid uses them) while their tables are as they were
(metrics/carryover.py).

It serves where the running values hold every aggregate the model reads, account ids are
unique, dates are dates and what metrics read of an account is a number or yes/no; the day's
query serves otherwise.
"""

from __future__ import annotations

import datetime as dt
import typing as t
from dataclasses import dataclass

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from accounthealth.engine.base import Engine
from accounthealth.metrics.compute import aggregate_columns, value_column
from accounthealth.metrics.definitions import (
    Aggregate,
    Attribute,
    Change,
    Definition,
    Ratio,
    ResolvedModel,
    leaves,
)
from accounthealth.metrics.series import EPOCH, POSITION, marked, stable_order
from accounthealth.metrics.sliding import Compiled, RunningAggregates
from accounthealth.scoring.functions import Values
from accounthealth.scoring.grid import SEGMENT_MODEL, segment_label
from accounthealth.sources.schema import DERIVED_FACTS

# The name the accounts' columns take in the compiled query of their segments.
LABELLED_TABLE = "_accounthealth_labelled"

# A date beyond every real one (days since the epoch), for no date.
_NEVER = np.iinfo(np.int32).max
# The tables the grid reads whole (``RunningAggregates.placed_input``; the accounts as they
# are, the contracts worked out): a run may carry them on to the next day's.
INPUTS = ("accounts", "contracts")
# What a grid keeps for the next day's (``DayGrid.kept``): the labels (column SEGMENT) and
# the population (column POSITION, then the account columns).
LABELS, POPULATION, SEGMENT = "labels", "population", "segment"


@dataclass(frozen=True)
class _Contracts:
    """Each contract's account position, start and end (days since the epoch; ``_NEVER`` for
    no end, and for no start: such a contract is never live) and ARR, ordered by account and
    end."""

    accounts: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    arr: Values

    @staticmethod
    def worked_out(placed: pa.Table) -> pa.Table | None:
        """The grid's contracts input (placed, with start_date, end_date and arr) as the grid uses
        it: positions, starts and ends as days since the epoch (``_NEVER`` for none) and ARR with
        where it is unknown; None where the columns are not dates and a number (the day's query
        serves). Kept so, a run carrying the input on uses it as it is read (converting it took
        a daily run of the benchmark's book 13-17 ms)."""
        types = placed.schema
        if not (
            pa.types.is_date32(types.field("start_date").type)
            and pa.types.is_date32(types.field("end_date").type)
            and _numeric(types.field("arr").type)
        ):
            return None
        (starts, unstarted), (ends, unended) = (
            _days(placed.column("start_date")),
            _days(placed.column("end_date")),
        )
        arr = Values.of(placed.column("arr"))
        return pa.table(
            {
                POSITION: placed.column(POSITION).to_numpy().astype(np.int64),
                # Days fit 32 bits (``_NEVER`` too): half the kept file of 64.
                "starts": np.where(unstarted, _NEVER, starts).astype(np.int32),
                "ends": np.where(unended, _NEVER, ends).astype(np.int32),
                "arr": arr.data,
                "unpriced": arr.null,
            }
        )

    @classmethod
    def of(cls, worked: pa.Table) -> _Contracts:
        """The contracts of the grid's input as ``worked_out`` works them out."""
        return cls(
            accounts=worked.column(POSITION).to_numpy(),
            starts=worked.column("starts").to_numpy(),
            ends=worked.column("ends").to_numpy(),
            arr=Values(
                worked.column("arr").to_numpy(),
                worked.column("unpriced").to_numpy(zero_copy_only=False),
            ),
        )


class DayGrid:
    """The grid of each day of ``running``'s run (``day``, in order), from its running values,
    the accounts and their contracts."""

    def __init__(
        self,
        engine: Engine,
        resolved: ResolvedModel,
        running: RunningAggregates,
        schema: pa.Schema,
        accounts: pa.Table,
        contracts: _Contracts | None,
        compiled: Compiled | None = None,
    ) -> None:
        self.engine, self.resolved, self.running, self.schema = engine, resolved, running, schema
        self.accounts = accounts
        self.contracts = contracts
        n = accounts.num_rows
        self._created, self._uncreated = _days(accounts.column("created_at"))
        self._has_contracts = (
            np.zeros(n, bool) if contracts is None else marked(n, contracts.accounts)
        )
        self._columns = aggregate_columns(resolved)
        self._read = {
            column for seg in resolved.segments if seg.when for column in seg.when.columns
        }
        # Work out of the accounts the day before's run kept (``kept``), while its accounts
        # input is carried on: its labels and its last day's population took a daily run of
        # the benchmark's book 25 ms. Kept again as they are, they are the files they were
        # read from (``CarryOver`` links what it read).
        kept = running.carried_grid()
        # Segment conditions on account columns alone are met or not whatever the day: their
        # query is compiled once where the run has compiled queries (compiling it through Ibis
        # took 8-10 ms of a daily run's set-up on the benchmark's book).
        self._labelled: pa.Table | None = None
        if not self._read & set(DERIVED_FACTS):
            self._labelled = (
                kept[LABELS]
                if LABELS in kept
                else pa.table({SEGMENT: self._label(accounts, compiled)})
            )
        self._labels = None if self._labelled is None else self._labelled.column(SEGMENT).to_numpy()
        # The last day's population (its positions in order) and its account columns, reused
        # while the population stays the same.
        self._population = (
            kept[POPULATION] if POPULATION in kept else _population(np.zeros(0, np.int64))
        )
        self._rows = self._population.column(POSITION).to_numpy()
        # The first day's facts, worked out now: a daily run sets its grid up while its reads
        # are in flight (the contracts live on the day took 16-20 ms, before they were
        # marks, not counts).
        first = (running.first - EPOCH).days
        self._ahead = {first: self._day_facts(first)}

    @classmethod
    def serving(
        cls,
        engine: Engine,
        resolved: ResolvedModel,
        running: RunningAggregates,
        schema: pa.Schema,
        compiled: Compiled | None = None,
    ) -> DayGrid | None:
        """The grid of ``running``'s days with the columns and types of ``schema`` (those of
        the day's query), or None where it cannot give the query's results; ``compiled``: the
        run's compiled queries."""
        wanted = aggregate_columns(resolved)
        if any(running.aggregates.get(agg) != col for agg, col in wanted.items()):
            return None
        if running.ids.null_count:
            return None  # an account without an id: the query joins them as they are
        # In the running values' order: row i is running.ids[i]'s.
        accounts = t.cast(
            pa.Table, running.placed_input("accounts", engine.table("accounts"), POSITION)
        )
        if accounts.num_rows != len(running.ids):
            return None  # ids repeated: the query joins each row
        accounts = accounts.drop_columns(POSITION).append_column("account_id", running.ids)
        if not pa.types.is_date32(accounts.schema.field("created_at").type):
            return None
        for name in _attributes(resolved):
            if name not in DERIVED_FACTS and not _numeric(accounts.schema.field(name).type):
                return None
        contracts = None
        if engine.has_table("contracts"):
            table = engine.table("contracts")
            # By account, then end: each account's first live contract with an end is then
            # the one it renews next (NumPy's minimum.at took 20 ms a day for this; those with
            # no end are left out there, wherever they come). Then by the other columns, so
            # that each account's ARR is summed in the same order every run, to the last bit.
            data = running.placed_input(
                "contracts",
                table.select("account_id", "start_date", "end_date", "arr"),
                POSITION,
                "end_date",
                "start_date",
                "arr",
                worked=_Contracts.worked_out,
            )
            if data is None:
                return None
            contracts = _Contracts.of(data)
        return cls(engine, resolved, running, schema, accounts, contracts, compiled)

    def numbered(self, day: dt.date) -> tuple[pa.Table, dict[str, Values]]:
        """The grid of ``day``, the day after the previous call's (the running values move on
        to it), and its columns of numbers as scoring reads them (``Values.of`` of each), from
        the arrays they were made of: reading 17 back from Arrow took 11 ms of a day of the
        benchmark's book."""
        d = (day - EPOCH).days
        ahead = self._ahead.pop(d, None)
        facts, customers = ahead if ahead is not None else self._day_facts(d)
        labels = self._labels
        if labels is None:
            labels = self._label(self._facts_table(facts))
        rows = np.flatnonzero(customers)
        # Each segment's rows together, as scoring takes them (scoring/run.py): sorting the
        # positions here spares it sorting the whole grid.
        rows = rows[stable_order(labels[rows])]
        if not np.array_equal(rows, self._rows):
            # The day's population differs from the day before's (most days it does not).
            self._population, self._rows = _population(rows), rows
        # The metrics worked out for the day's rows alone, in their order: worked out for
        # every account and then taken, each was made twice (6,000 page faults a day of the
        # benchmark's book).
        facts = {name: f.take(rows) for name, f in facts.items()}
        raw = self._raw(day, d, rows)
        values = {
            value_column(name): self._value(metric.definition, raw, facts, rows)
            for name, metric in self.resolved.metrics.items()
        }
        columns: dict[str, pa.Array] = {}
        numbered: dict[str, Values] = {}
        # The arrays read back already: two columns may be of one (a metric that is a fact, two
        # metrics of one aggregate).
        read_back: set[int] = set()
        for field in self.schema:
            name = field.name
            if name == "as_of":
                column: pa.Array = pa.array(np.full(len(rows), d, np.int32), pa.date32())
            elif name == SEGMENT_MODEL:
                column = pa.array(labels[rows])
            elif name in values or name in facts:
                numbers = values[name] if name in values else facts[name]
                column = numbers.to_arrow()
                if _read_back_as_is(field.type):
                    if id(numbers.data) not in read_back:
                        read_back.add(id(numbers.data))
                        _as_read_back(numbers)
                    numbered[name] = numbers
            else:
                # Account columns are those of the day before while the population is: taking
                # them cost 20 ms a day.
                if name not in self._population.column_names:
                    taken = self.accounts.column(name).take(rows)
                    self._population = self._population.append_column(name, taken)
                column = self._population.column(name)
            columns[name] = pc.cast(column, field.type)
        return pa.table(columns, schema=self.schema), numbered

    def _day_facts(self, d: int) -> tuple[dict[str, Values], np.ndarray]:
        """The facts of day ``d`` (``_facts``, and tenure), and which accounts are customers
        then."""
        facts, live = self._facts(d, self.accounts.num_rows)
        created, uncreated = self._created, self._uncreated
        facts["tenure_days"] = Values((d - created).astype(np.float64), uncreated)
        customers = (uncreated | (created <= d)) & (~self._has_contracts | live)
        return facts, customers

    def _facts(self, d: int, n: int) -> tuple[dict[str, Values], np.ndarray]:
        """ARR and days to renewal of the contracts live on day ``d``, and whether any is,
        per account (an account without contracts has neither). Marks, not counts, where a
        mark is all it takes: each array of counts was 1.6 MB of new memory on the
        benchmark's book."""
        c = self.contracts
        if c is None:
            nothing = Values(np.zeros(n), np.ones(n, dtype=bool))
            return {"arr": nothing, "days_to_renewal": nothing}, np.zeros(n, bool)
        live = (c.starts <= d) & (c.ends > d)
        any_live = marked(n, c.accounts[live])
        priced = live & ~c.arr.null
        at = c.accounts[priced]
        arr = np.bincount(at, weights=c.arr.data[priced], minlength=n)
        ending = np.flatnonzero(live & (c.ends != _NEVER))  # without an end: renews never
        at_ending = c.accounts[ending]
        soonest = np.ones(len(ending), dtype=bool)
        soonest[1:] = at_ending[1:] != at_ending[:-1]
        renewing = at_ending[soonest]
        days = np.full(n, float(_NEVER - d))
        days[renewing] = c.ends[ending[soonest]] - d
        facts = {
            "arr": Values(arr, marked(n, at, False)),
            "days_to_renewal": Values(days, marked(n, renewing, False)),
        }
        return facts, any_live

    def _raw(self, day: dt.date, d: int, rows: np.ndarray) -> dict[str, Values]:
        """Each aggregate's value on the day as a number at the accounts' positions ``rows``,
        by column, as the query fixes them: no rows is 0 for counts and no for exists;
        days_since is the days from the last row to the (shifted) day."""
        raw = self.running.raw(day, rows)
        out = {}
        for agg, col in self._columns.items():
            value = raw[col]
            data = value.data.astype(np.float64, copy=False)  # a new array already
            null = np.zeros(len(data), dtype=bool) if value.null is None else value.null
            if agg.kind == "days_since":
                np.subtract(d - agg.offset, data, out=data)
            out[col] = Values(data, null)
        return out

    def _value(
        self,
        definition: Definition,
        raw: dict[str, Values],
        facts: dict[str, Values],
        rows: np.ndarray,
    ) -> Values:
        """A metric's value at the accounts' positions ``rows`` (those of ``raw`` and
        ``facts``), in the query's arithmetic (yes/no as 1/0)."""
        if isinstance(definition, Aggregate):
            return raw[self._columns[definition]]
        if isinstance(definition, Attribute):
            if definition.name in facts:
                return facts[definition.name]
            return Values.of(self.accounts.column(definition.name)).take(rows)
        if isinstance(definition, Ratio):
            num = self._value(definition.numerator, raw, facts, rows)
            den = self._value(definition.denominator, raw, facts, rows)
            with np.errstate(divide="ignore", invalid="ignore"):
                return Values(num.data / den.data, num.null | den.null | (den.data == 0))
        if isinstance(definition, Change):
            cur = self._value(definition.current, raw, facts, rows)
            prev = self._value(definition.previous, raw, facts, rows)
            flat = (prev.data == 0) & (cur.data == 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                change = np.where(flat, 0.0, (cur.data - prev.data) / prev.data)
            return Values(change, cur.null | prev.null | ((prev.data == 0) & ~flat))
        raise AssertionError(definition)

    def _facts_table(self, facts: dict[str, Values]) -> pa.Table:
        """The account columns the segment conditions read, with the day's derived facts."""
        columns = {"account_id": self.accounts.column("account_id")}
        for name in sorted(self._read):
            if name in facts:
                numbers = facts[name]  # typed as the grid has it
                column = numbers.to_arrow()
                columns[name] = pc.cast(column, self.schema.field(name).type)
            else:
                columns[name] = self.accounts.column(name)
        return pa.table(columns)

    def kept(self) -> dict[str, pa.Table]:
        """What this grid worked out of its accounts, for the next day's run to carry on
        (``RunningAggregates.carried_grid``): each account's segment model, where it does not
        change from day to day, and the last day's population (positions in order) with its
        account columns. Those carried on and unchanged are the tables that were read."""
        kept = {} if self._labelled is None else {LABELS: self._labelled}
        if self._population.num_columns > 1:
            kept[POPULATION] = self._population
        return kept

    def _label(self, table: pa.Table, compiled: Compiled | None = None) -> np.ndarray:
        """Each row's segment model (its position in the model's segments), by the query's
        own conditions, run on the engine over ``table`` (the account columns they read);
        ``compiled``: the run's compiled queries, where ``table`` is the accounts'."""
        if len(self.resolved.segments) == 1:
            return np.zeros(table.num_rows, np.int64)  # the default model scores all
        read = table.select(list(dict.fromkeys(["account_id", *sorted(self._read)])))
        # Each row's position goes with it: the engine may return rows in any order (DuckDB's
        # preserve_insertion_order is a project setting).
        read = read.append_column(POSITION, pa.array(np.arange(table.num_rows)))

        def labelled(rows: ibis.Table) -> ibis.Table:
            return rows.select(POSITION, _label=segment_label(rows, self.resolved))

        if compiled is not None:
            named = ibis.table(ibis.Schema.from_pyarrow(read.schema), name=LABELLED_TABLE)
            query = compiled("segment labels of accounts", lambda: labelled(named))
            labels = self.engine.run_attached(query, {}, {LABELLED_TABLE: read})
        else:
            labels = self.engine.to_arrow(labelled(ibis.memtable(read)))
        out = np.empty(table.num_rows, np.int64)
        out[labels.column(POSITION).to_numpy()] = labels.column("_label").to_numpy()
        return out


def _days(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A date column as days since the epoch (int64), and where it is NULL."""
    null = column.is_null().to_numpy(zero_copy_only=False)
    days = pc.fill_null(pc.cast(column, pa.int32()), 0).to_numpy(zero_copy_only=False)
    return days.astype(np.int64), null


def _population(rows: np.ndarray) -> pa.Table:
    """A day's population (positions in order), with none of its account columns yet."""
    return pa.table({POSITION: rows})


def _read_back_as_is(type_: pa.DataType) -> bool:
    """Whether numbers cast to ``type_`` read back as they were: doubles, and integers (the
    cast refuses a number with a fraction)."""
    return pa.types.is_float64(type_) or pa.types.is_integer(type_)


def _as_read_back(values: Values) -> Values:
    """``values`` (a day's own arrays, of whole numbers where the column is of integers) as
    ``Values.of`` reads them back from the grid's column made of them: 0 where NULL. Changed
    in place, not copied (3,000 page faults a day): the column holds nothing at a NULL. Then
    read-only, as Arrow's own are: the grid's doubles share them, and go to history."""
    np.copyto(values.data, 0.0, where=values.null)
    values.data.setflags(write=False)
    return values


def _numeric(type_: pa.DataType) -> bool:
    return pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_boolean(type_)


def _attributes(resolved: ResolvedModel) -> set[str]:
    """The account columns and derived facts the model's metrics read."""
    return {
        leaf.name
        for metric in resolved.metrics.values()
        for leaf in leaves(metric.definition)
        if isinstance(leaf, Attribute)
    }
