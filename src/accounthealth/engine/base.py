"""What every engine offers: Ibis expressions in, Arrow or pandas out.

Model code builds Ibis expressions against ``Engine.table`` and never sees engine-specific
SQL. An engine that can also hold accounthealth's own state (DuckDB, PostgreSQL) runs the
store's fixed statements through ``sql``, ``transaction`` and ``write_arrow``.
"""

from __future__ import annotations

import contextlib
import typing as t
from contextlib import contextmanager
from pathlib import Path

import ibis.expr.types as ir
import pyarrow as pa

from accounthealth.config.project import Source
from accounthealth.engine.parameters import PreparedQuery
from accounthealth.errors import ConfigError, DataError


class Engine:
    """An Ibis backend plus the canonical tables it can see."""

    kind = "engine"
    # Where a store keeps history detail as files beside its database (store/archive.py);
    # None where the detail stays in the database's table.
    detail_folder: Path | None = None

    def __init__(self, backend: t.Any, database: str | None = None) -> None:
        self.ibis = backend
        self.database = database
        self._views: dict[str, ir.Table] = {}
        self._every_row: dict[str, ir.Table] = {}
        # Within ``tables_fixed``: the names it fixes, those of them listed, and their tables.
        self._fixed: frozenset[str] = frozenset()
        self._listed: set[str] | None = None
        self._found: dict[str, ir.Table] = {}

    # -- canonical tables ----------------------------------------------------------------
    def has_table(self, name: str) -> bool:
        if name in self._views:
            return True
        if name in self._fixed:
            if self._listed is None:
                self._listed = self.table_names()
            return name in self._listed
        return name in self.table_names()

    def table_names(self) -> set[str]:
        """The names of the tables and views the engine holds (where it reads and writes)."""
        return set(self.ibis.list_tables(database=self.database))

    def table(self, name: str) -> ir.Table:
        if name in self._views:
            return self._views[name]
        if name in self._found:
            return self._found[name]
        table = self.ibis.table(name, database=self.database)
        if name in self._fixed:
            self._found[name] = table
        return table

    @contextmanager
    def tables_fixed(self, names: t.Iterable[str]) -> t.Iterator[None]:
        """Meanwhile, tables ``names`` are looked up once (whether each exists, and its
        schema), for a run that reads them and changes none: a day's scoring asks some fifty
        times, and each asked the catalog (0.2 s of a 2.3 s daily run on the benchmark's
        book)."""
        self._fixed = frozenset(names)
        try:
            self._found = self._looked_up(sorted(self._fixed))
            yield
        finally:
            self._fixed, self._listed, self._found = frozenset(), None, {}

    def _looked_up(self, names: list[str]) -> dict[str, ir.Table]:
        """Tables of ``names`` the engine can look up at once (none here: each is looked up
        when first asked for)."""
        return {}

    def register_view(self, name: str, table: ir.Table, every_row: ir.Table | None = None) -> None:
        """Serve ``table`` (an expression over data already in the engine) as ``name``;
        ``every_row``: the same before rows are left out (see ``every_row``)."""
        self._views[name] = table
        self._every_row.pop(name, None)
        if every_row is not None:
            self._every_row[name] = every_row

    def every_row(self, name: str) -> ir.Table:
        """Table ``name`` with the rows its view leaves out for a missing required value (a
        source read in place): counting these reads no column."""
        return self._every_row[name] if name in self._every_row else self.table(name)

    def relation(self, source: Source, where: str) -> ir.Table:
        """The raw relation an in-engine source names: a table, a query or a path."""
        try:
            if source.table is not None:
                database, _, name = source.table.rpartition(".")
                return self.ibis.table(name, database=database or None)
            if source.query is not None:
                return self.ibis.sql(source.query)
            return self._read_path(source, where)
        except ConfigError:
            raise
        except Exception as exc:
            raise DataError(
                f"the {self.kind} engine cannot read this source: {first_line(exc)}",
                where=where,
                fix="check the table name, query or path, and that the engine can reach it",
            ) from None

    def _read_path(self, source: Source, where: str) -> ir.Table:
        raise ConfigError(
            f"path: sources are not supported on {self.kind}",
            where=where,
            fix="use table: or query:, or read the files with file:",
        )

    def replace_table(self, name: str, data: pa.Table) -> None:
        """Replace the canonical table ``name`` with ``data`` (ingest of file sources)."""
        self.write_arrow(name, data, replace=True)

    def load_table_from(self, name: str, rows: ir.Table, *, append: bool = False) -> None:
        """Replace the canonical table ``name`` with ``rows``, a query of this engine, or
        append them to it."""
        data = self.to_arrow(rows)
        if append:
            self.write_arrow(name, data)
        else:
            self.replace_table(name, data)

    # -- queries ---------------------------------------------------------------------------
    def to_arrow(self, expr: ir.Expr) -> pa.Table:
        """Execute an expression and return an Arrow table."""
        return self.ibis.to_pyarrow(expr)

    def execute(self, expr: ir.Expr) -> t.Any:
        return self.ibis.execute(expr)

    def describe_tables(self, names: t.Iterable[str]) -> dict[str, str]:
        """What shapes a query over each canonical table of ``names``: a view's SQL and the
        schema ('' when the engine has no such table)."""
        names = list(names)
        stored = self._stored_shapes([name for name in names if name not in self._views])
        described = {}
        for name in names:
            if name in self._views:
                view = self._views[name]
                described[name] = f"{self.ibis.compile(view)}\n{view.schema()}"
            else:
                described[name] = stored[name]
        return described

    def _stored_shapes(self, names: list[str]) -> dict[str, str]:
        """``describe_tables`` of tables in the database: each one's schema."""
        return {
            name: str(self.table(name).schema()) if self.has_table(name) else "" for name in names
        }

    def column_names(self, name: str) -> list[str]:
        """The columns of table ``name``, in order."""
        return list(self.table(name).columns)

    # Runs in this process: a local Arrow table joins its queries without being uploaded.
    in_process = False
    # One date's aggregates over a table share one scan of it. PostgreSQL says no: it sorts a
    # group's rows for each DISTINCT aggregate, so one scan that also feeds all-history
    # aggregates sorted all of history for a 28-day distinct count (metrics/compute.py).
    one_scan_per_table = True

    @contextmanager
    def attached(self, name: str, data: pa.Table | None) -> t.Iterator[None]:
        """Let queries read ``data`` as table ``name`` meanwhile (nothing when None); for
        engines that run in this process."""
        if data is not None:
            raise NotImplementedError(f"{self.kind} cannot read a local Arrow table in place")
        yield

    # -- queries compiled once, run with named parameters ----------------------------------
    # Engines that can bind named parameters say so; the others compile each query as it runs.
    prepares = False

    def prepare(self, expr: ir.Table) -> PreparedQuery:
        """Compile ``expr`` (which may hold named parameters) to run later with
        ``run_prepared``."""
        raise NotImplementedError(f"{self.kind} does not run prepared queries")

    def run_prepared(self, query: PreparedQuery, values: t.Mapping[str, t.Any]) -> pa.Table:
        """Run a prepared query with the parameters' ``values``; its rows."""
        raise NotImplementedError(f"{self.kind} does not run prepared queries")

    # -- the store's own statements --------------------------------------------------------

    def run_attached(
        self,
        query: PreparedQuery,
        values: t.Mapping[str, t.Any],
        attached: t.Mapping[str, pa.Table | None],
    ) -> pa.Table:
        """``run_prepared``, with the queries reading each of ``attached`` as that table
        (``attached``) meanwhile."""
        with contextlib.ExitStack() as stack:
            for name, data in attached.items():
                stack.enter_context(self.attached(name, data))
            return self.run_prepared(query, values)

    def sql(self, query: str, params: t.Sequence[t.Any] = ()) -> list[tuple[t.Any, ...]]:
        """Run one of the store's own fixed statements (DuckDB dialect) with bound params."""
        raise NotImplementedError(f"{self.kind} does not hold accounthealth's store")

    # Whether ``transaction`` makes the engine's writes all or nothing. Where it does not, a
    # failed ingest could leave tables the store's record of them does not describe, so
    # their sources are read whole every time.
    transactional = False

    @contextmanager
    def transaction(self) -> t.Iterator[None]:
        """All or nothing: a failure inside rolls every write back (where ``transactional``)."""
        yield

    def reader(self) -> Engine:
        """Another connection to the same database, for compiled queries (``run_prepared``)
        from another thread while this one works: it reads the database's tables and the
        sources read in place that this connection names, as committed. Engines that run in
        this process have one."""
        raise NotImplementedError(f"{self.kind} runs no queries from other threads here")

    def writer(self) -> Engine:
        """A second connection to the same store, for writing history from another thread
        while this one computes (its writes are its own transactions)."""
        raise NotImplementedError(f"{self.kind} does not hold accounthealth's store")

    def write_arrow(self, name: str, data: pa.Table, *, replace: bool = False) -> None:
        """Append Arrow data to table ``name`` (or replace the table), inside the caller's
        transaction. Engines with a bulk path of their own override this."""
        if replace:
            self.ibis.create_table(name, data, overwrite=True, database=self.database)
        else:
            self.ibis.insert(name, data, database=self.database)

    def close(self) -> None:
        self.ibis.disconnect()


def double_literals(compiler: type) -> t.Any:
    """An instance of the Ibis SQL ``compiler`` that writes float literals as doubles.

    PostgreSQL and Spark read a literal such as 0.3 as NUMERIC/DECIMAL: decimal arithmetic
    rounds (Spark's scores drifted by 1e-6 from DuckDB's) and results arrive as decimals where
    the expression's type says double.
    """

    class DoubleLiterals(compiler):  # type: ignore[misc, valid-type]
        def visit_NonNullLiteral(self, op: t.Any, *, value: t.Any, dtype: t.Any) -> t.Any:
            result = super().visit_NonNullLiteral(op, value=value, dtype=dtype)
            if not dtype.is_floating():
                return result
            if result is None:  # the compiler's generic literal
                result = self.visit_DefaultLiteral(op, value=value, dtype=dtype)
            return self.cast(result, dtype)

    return DoubleLiterals()


def ident(name: str) -> str:
    """Quote one of our own table names; refuse anything that is not a plain identifier."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a table name: {name!r}")
    return f'"{name}"'


def first_line(exc: Exception) -> str:
    """The first line of an exception's message (its type's name if it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
