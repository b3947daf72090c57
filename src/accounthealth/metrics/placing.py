"""Where a run of running values (metrics/sliding.py) puts the rows it reads: its accounts
by position, and each read's rows with their accounts' positions instead of their ids.

A run's accounts are its ids in order; a row's position is its account's place among them.
A read that is not compiled joins the positions in the engine (``placed``). A run carrying on
reads its days with queries compiled once (``read``), on connections of its own
(``reading``), and its reads return their ids' hashes, which it looks up among its accounts'
(metrics/hashed.py), or, where two accounts share a hash, join the positions as a table the
queries read beside the engine's (``POSITIONS_TABLE``). A carried state's rows are at the
positions of the run that kept it: the same while the accounts are (``same``), else moved
(``still``).
"""

from __future__ import annotations

import datetime as dt
import typing as t
from concurrent.futures import Future

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from accounthealth.engine.base import Engine
from accounthealth.engine.parameters import PreparedQuery, parameter
from accounthealth.engine.readers import Readers
from accounthealth.metrics import reads
from accounthealth.metrics.hashed import HashedPositions, hashed_rows
from accounthealth.metrics.series import POSITION, Carried

# The name the accounts' positions take in a run's queries compiled once.
POSITIONS_TABLE = "_accounthealth_positions"
# How many connections of its own a run carrying on reads its day on, at once. Its reads are of
# one day and took 5-15 ms each when they joined 200,000 positions (metrics/hashed.py); run one
# after another they held up the run (0.13 s of a daily run of the benchmark's book), run two
# at a time beside the restoring of the running values 0.1 s.
READERS = 2
# A query by name, compiled once (by the function given, on the first call for that name).
Compiled = t.Callable[[str, t.Callable[[], ir.Table]], PreparedQuery]


class Placing:
    """The accounts ``ids`` of a run of ``first`` to ``last`` on ``engine``, and its reads'
    rows placed at them. ``carried``: the state it carries on from, if any; ``compiled``: its
    compiled queries, if the engine runs them (a run carrying on reads with them)."""

    def __init__(
        self,
        engine: Engine,
        ids: pa.Array,
        first: dt.date,
        last: dt.date,
        carried: Carried | None = None,
        compiled: Compiled | None = None,
    ) -> None:
        self.engine, self.ids, self.first, self.last = engine, ids, first, last
        self._compile = compiled
        # Whether it has compiled queries (and so can compile the next day's reads).
        self.compiles = compiled is not None
        n = len(ids)
        # Each account's position, for the engine to join: a series then comes back as
        # positions, not ids to look up (that look-up was a fifth of reading a 90-day run).
        self._rows = pa.table({"_account": ids, POSITION: pa.array(np.arange(n, dtype=np.int32))})
        self._positions = ibis.memtable(self._rows)
        # Whether the carried accounts are these, in this order (as they are while no account
        # is added or removed): their rows then keep their positions, with no look-up of
        # 200,000 ids (0.07 s) and no copies of millions of carried rows to drop none.
        self.same = carried is not None and carried.ids.equals(ids)
        # Each carried account's position now (-1: no longer an account).
        self.now = (
            pc.index_in(carried.ids, value_set=ids).fill_null(-1).to_numpy().astype(np.int32)
            if carried is not None and not self.same
            else np.arange(n if carried is not None else 0, dtype=np.int32)
        )
        # The accounts' positions by their ids' hashes, which the compiled reads return
        # instead of joining the positions (metrics/hashed.py): kept with the state while the
        # accounts are the same, else found for this run's compiled reads or the next run's
        # (again each day while two accounts share a hash, which no run keeps).
        self.hashed: HashedPositions | None = None
        if compiled is not None:
            kept = carried.index if carried is not None and self.same else None
            self.hashed = kept if kept is not None else HashedPositions.found(engine, self._rows)
        # What the run's compiled reads read beside the engine's tables: the positions, where
        # they join them.
        self._attached = {POSITIONS_TABLE: self._rows} if self.hashed is None else {}
        # A run carrying on is the daily one: its queries are the same each day but for the
        # dates, so they are compiled once with the dates as parameters (compiling each
        # through Ibis took 10-15 ms of its 20-35 ms).
        self._compiled = carried is not None and compiled is not None
        self._readers = (
            Readers(engine, self._attached, READERS)
            if self._compiled and engine.in_process
            else None
        )

    def still(self, accounts: np.ndarray) -> tuple[np.ndarray, slice | np.ndarray]:
        """Carried rows' ``accounts`` as positions now, of the rows whose account still is,
        and which rows those are (a mask; all of them, as a slice, for the same accounts)."""
        if self.same:
            return accounts, slice(None)
        at = self.now[accounts]
        kept = at >= 0
        return at[kept], kept

    def placed(self, rows: ir.Table, *order: str) -> pa.Table:
        """``rows`` (with an ``account_id``) run on the engine, each with its account's position
        (``POSITION``) instead of its id, in the order of the ``order`` columns (without
        them, in any); rows of unknown accounts are dropped. The engine joins the positions:
        looking 200,000 ids up in Arrow took 0.05 s a table."""
        return self.engine.to_arrow(_joined(rows, self._positions, order))

    def reading(self, read: reads.Read, *order: str) -> Future[pa.Table]:
        """``read`` on a connection of the run's readers where it has them, else now."""
        if self._readers is not None:
            query = self.compiled_read(read, order)
            return self._readers.run(query, self._days(query), then=self._positioned)
        done: Future[pa.Table] = Future()
        done.set_result(self.read(read, *order))
        return done

    def read(self, read: reads.Read, *order: str) -> pa.Table:
        """The rows of a ``read`` (its query of the run's first and last days), ``placed``:
        compiled once where the run has compiled queries, else with the days as literals."""
        if not self._compiled:
            _, rows = read
            first, last = ibis.literal(self.first, "date"), ibis.literal(self.last, "date")
            return self.placed(rows(first, last), *order)
        query = self.compiled_read(read, order)
        return self._positioned(self.engine.run_attached(query, self._days(query), self._attached))

    def _positioned(self, data: pa.Table) -> pa.Table:
        """A compiled read's rows with their accounts' positions: found by the hashes it
        returned instead where the run has them (``compiled_read``), else as it returned."""
        return data if self.hashed is None else self.hashed.place(data)

    def _days(self, query: PreparedQuery) -> dict[str, dt.date]:
        """The values of a compiled read's parameters: the run's first and last days."""
        days = {"first": self.first, "last": self.last}
        return {name: days[name] for name in query.parameters}

    def compiled_read(self, read: reads.Read, order: t.Sequence[str]) -> PreparedQuery:
        """A ``read`` compiled once under its name (or as compiled before), its days the
        parameters ``first`` and ``last``; the accounts' positions the table
        ``POSITIONS_TABLE``, or their ids' hashes where the run finds positions by them."""
        name, rows = read

        def days() -> ir.Table:
            return rows(parameter("first", "date"), parameter("last", "date"))

        if self.hashed is not None:
            return t.cast(Compiled, self._compile)(
                f"{name} by hash", lambda: _ordered(hashed_rows(days()), order)
            )
        positions = ibis.table(ibis.Schema.from_pyarrow(self._rows.schema), name=POSITIONS_TABLE)
        return t.cast(Compiled, self._compile)(name, lambda: _joined(days(), positions, order))

    def close(self) -> None:
        """Close the run's read connections (its reads are done, or abandoned)."""
        if self._readers is not None:
            self._readers.close()
            self._readers = None


def _joined(rows: ir.Table, positions: ir.Table, order: t.Sequence[str]) -> ir.Table:
    """``rows`` with their account's ``POSITION`` from ``positions`` instead of its id, in the
    order of the ``order`` columns (without them, in any)."""
    known = rows.join(positions, rows.account_id == positions._account)
    return _ordered(known.drop("account_id", "_account"), order)


def _ordered(rows: ir.Table, order: t.Sequence[str]) -> ir.Table:
    """``rows`` in the order of the ``order`` columns (without them, in any)."""
    return rows.order_by(list(order)) if order else rows
