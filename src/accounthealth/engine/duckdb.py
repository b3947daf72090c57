"""The embedded default: a DuckDB file in the project folder holds data, scores and history."""

from __future__ import annotations

import contextlib
import functools
import typing as t
from contextlib import contextmanager
from pathlib import Path

import duckdb
import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir
import pyarrow as pa
from ibis.backends.duckdb.converter import DuckDBPyArrowData

from accounthealth.config.project import Source
from accounthealth.engine.base import Engine, ident
from accounthealth.engine.delta import dataset_name, delta_dataset
from accounthealth.engine.parameters import (
    VARIABLE_PREFIX,
    ParameterCompiler,
    PreparedQuery,
    prepared,
)
from accounthealth.errors import ConfigError, ProjectError, did_you_mean


class DuckDBEngine(Engine):
    """A DuckDB database file (or ``:memory:``) opened through Ibis."""

    kind = "duckdb"

    def __init__(
        self,
        path: Path | str = ":memory:",
        *,
        read_only: bool = False,
        settings: t.Mapping[str, str] | None = None,
        where: str = "compute.conf",
        connection: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        self.path = path
        if str(path) != ":memory:":
            # The whole name: stores a.duckdb and a.db must not share a folder.
            self.detail_folder = Path(f"{path}.details")
        if connection is not None:
            backend = ibis.duckdb.from_connection(connection)
        else:
            settings = dict(settings or {})
            _check_settings(settings, where)
            try:
                backend = ibis.duckdb.connect(str(path), read_only=read_only, **settings)
            except Exception as exc:  # duckdb raises IOException subclasses for locks
                raise ProjectError(
                    f"cannot open the store {path}: {exc}",
                    where=str(path),
                    fix="close other accounthealth processes using this project, or check the path",
                ) from None
        super().__init__(backend)
        self.raw = backend.con
        self._depth = 0
        self._paths: dict[str, t.Callable[[DuckDBEngine], None]] = {}

    def _read_path(self, source: Source, where: str) -> ir.Table:
        path = t.cast(str, source.path)
        if source.format == "delta":
            name, dataset = dataset_name(path), delta_dataset(path, where)

            def named(engine: DuckDBEngine) -> None:
                engine.raw.register(name, dataset)

        else:
            name = dataset_name(path, "parquet")

            def named(engine: DuckDBEngine) -> None:
                engine.ibis.read_parquet(path, table_name=name)

        named(self)
        # Named on this connection alone: every other one (``reader``) names it too.
        self._paths[name] = named
        return self.ibis.table(name)

    prepares = True
    transactional = True
    in_process = True

    def prepare(self, expr: ir.Table) -> PreparedQuery:
        return prepared(ParameterCompiler(), expr)

    def run_prepared(self, query: PreparedQuery, values: t.Mapping[str, t.Any]) -> pa.Table:
        for name in query.parameters:
            variable = ident(VARIABLE_PREFIX + name)
            self.raw.execute(f"SET VARIABLE {variable} = ?", [values[name]])
        # A relation's result comes as Arrow from every thread (parameters.py); a relation
        # built with bound parameters instead ran the grid ten times slower.
        table = self.raw.sql(query.sql).to_arrow_table()
        # The same conversion as Ibis's own to_pyarrow: types exactly as the expression said.
        return DuckDBPyArrowData.convert_table(table, query.types())

    @contextmanager
    def attached(self, name: str, data: pa.Table | None) -> t.Iterator[None]:
        if data is None:
            yield
            return
        self.raw.register(name, data)
        try:
            yield
        finally:
            self.raw.unregister(name)

    @contextmanager
    def parquet_file(self, path: Path, name: str, **options: t.Any) -> t.Iterator[ir.Table]:
        """One Parquet file as the table ``name`` while in use, read as it is named: a
        folder called ``key=value`` on its path adds no column."""
        table = self.ibis.read_parquet(path, table_name=name, hive_partitioning=False, **options)
        try:
            yield table
        finally:
            # After a failed statement the transaction drops the view with everything else.
            with contextlib.suppress(duckdb.Error):
                self.raw.execute(f"DROP VIEW IF EXISTS {ident(name)}")

    def sql(self, query: str, params: t.Sequence[t.Any] = ()) -> list[tuple[t.Any, ...]]:
        return self.raw.execute(query, list(params)).fetchall()

    @contextmanager
    def transaction(self) -> t.Iterator[None]:
        # Re-entrant: ingest opens one on the store and one on compute, often the same engine.
        self._depth += 1
        if self._depth == 1:
            self.raw.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.raw.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self.raw.execute("COMMIT")

    def _stored_shapes(self, names: list[str]) -> dict[str, str]:
        # One look at the catalog: Ibis's look-up of each table took 1-4 ms, some 14 ms of a
        # daily run's start on the benchmark's book. Views are looked up as Ibis does: the
        # catalog keeps the types a view's columns had when it was made.
        stored = self._stored_columns(names)
        shapes = {
            name: "\n".join(
                f"{column} {type_}{'' if nullable else ' NOT NULL'}"
                for column, type_, nullable in stored[name]
            )
            for name in names
            if name in stored
        }
        return shapes | super()._stored_shapes([name for name in names if name not in stored])

    def _looked_up(self, names: list[str]) -> dict[str, ir.Table]:
        # The tables (not views) among them from one look at the catalog, typed as Ibis types
        # them when it looks each up: that took 3-4 ms a table, some 20 ms of a daily run.
        # Each type parsed once: the benchmark book's tables have 63 columns of a dozen types, and
        # parsing each took 0.1 ms.
        to_ibis = functools.cache(self.ibis.compiler.type_mapper.from_string)
        found = {}
        for name, rows in self._stored_columns(names).items():
            schema = ibis.schema(
                {column: to_ibis(type_, nullable=nullable) for column, type_, nullable in rows}
            )
            if schema.geospatial:
                continue  # Ibis's own look-up loads the extension such columns need
            namespace = ops.Namespace(catalog=None, database=None)
            found[name] = ops.DatabaseTable(
                name, schema=schema, source=self.ibis, namespace=namespace
            ).to_expr()
        return found

    def table_names(self) -> set[str]:
        if self.database is not None:
            return super().table_names()
        # As Ibis lists them (the database's and the connection's temporary ones), in one
        # query where Ibis's took three: 0.9 ms against 3 ms, asked a few times a run.
        return {name for (name,) in self.raw.execute(_TABLE_NAMES).fetchall()}

    def column_names(self, name: str) -> list[str]:
        stored = self._stored_columns([name])
        if name not in stored:
            return super().column_names(name)
        return [column for column, _, _ in stored[name]]

    def _stored_columns(self, names: list[str]) -> dict[str, list[tuple[str, str, bool]]]:
        """(name, type, nullable) of each column of the tables ``names`` that are tables in
        the catalog (not views), in order: the connection's temporary one where a name has
        two, as Ibis reads it."""
        if self.database is not None:
            return {}
        # Two scans of the catalog, not a join of them: a join's memory ran out at opening
        # a store whose memory_limit is 8MB. A name is the connection's temporary table or
        # view where it has one (as SQL reads it), else the database's; views are left out.
        read_as: dict[str, tuple[str, bool]] = {}
        for database, name, view in self.raw.execute(_TABLES_OF, [names, names]).fetchall():
            if name not in read_as or database == "temp":
                read_as[name] = (database, view)
        found: dict[str, tuple[str, list[tuple[str, str, bool]]]] = {
            name: (database, []) for name, (database, view) in read_as.items() if not view
        }
        for database, table, column, type_, nullable in self.raw.execute(
            _COLUMNS_OF, [names]
        ).fetchall():
            if table in found and found[table][0] == database:
                found[table][1].append((column, type_, nullable))
        return {table: columns for table, (_, columns) in found.items()}

    def reader(self) -> DuckDBEngine:
        other = self._cursor()
        try:
            for named in self._paths.values():
                named(other)
        except BaseException:
            other.close()
            raise
        other._paths = dict(self._paths)
        return other

    def writer(self) -> DuckDBEngine:
        # History is written to the store's own tables and files: the sources read in place
        # are not named there.
        return self._cursor()

    def _cursor(self) -> DuckDBEngine:
        # A cursor is another connection to the same database in this process: DuckDB runs its
        # statements beside this connection's, and its writes are its own transactions.
        return DuckDBEngine(self.path, connection=self.raw.cursor())

    def load_table_from(self, name: str, rows: ir.Table, *, append: bool = False) -> None:
        # In the database: on 20 million events a trip through Arrow cost seconds and
        # gigabytes.
        verb = (
            f"INSERT INTO {ident(name)} BY NAME"
            if append
            else f"CREATE OR REPLACE TABLE {ident(name)} AS"
        )
        self.raw.execute(f"{verb} {self.ibis.compile(rows)}")

    def write_arrow(self, name: str, data: pa.Table, *, replace: bool = False) -> None:
        view = f"_incoming_{name}"
        with self.attached(view, data):
            verb = "CREATE OR REPLACE TABLE" if replace else "INSERT INTO"
            suffix = "AS SELECT * FROM" if replace else "BY NAME SELECT * FROM"
            self.raw.execute(f"{verb} {ident(name)} {suffix} {ident(view)}")


_HERE = "database_name IN (current_database(), 'temp') AND schema_name = current_schema()"
_TABLE_NAMES = f"""
    SELECT table_name FROM duckdb_tables() WHERE {_HERE}
    UNION SELECT view_name FROM duckdb_views() WHERE {_HERE}
"""
# The tables and views named (whether each is a view), and the columns of the tables and
# views named, in order, of the database or the connection's temporary ones.
_TABLES_OF = f"""
    SELECT database_name, table_name, false FROM duckdb_tables()
    WHERE list_contains(?, table_name) AND {_HERE}
    UNION ALL SELECT database_name, view_name, true FROM duckdb_views()
    WHERE list_contains(?, view_name) AND {_HERE}
"""
_COLUMNS_OF = f"""
    SELECT database_name, table_name, column_name, data_type, is_nullable FROM duckdb_columns()
    WHERE list_contains(?, table_name) AND {_HERE}
    ORDER BY table_name, database_name, column_index
"""


def _check_settings(settings: t.Mapping[str, str], where: str) -> None:
    """Refuse a setting DuckDB does not have, or a value it refuses, before opening the
    database with it."""
    if not settings:
        return
    with duckdb.connect() as probe:
        known = [row[0] for row in probe.execute("SELECT name FROM duckdb_settings()").fetchall()]
    for name in settings:
        if name not in known:
            raise ConfigError(
                f"DuckDB has no setting '{name}'", where=where, fix=did_you_mean(name, known)
            )
    try:
        duckdb.connect(":memory:", config=dict(settings)).close()
    except duckdb.Error as exc:
        raise ConfigError(
            f"DuckDB refuses the settings: {str(exc).splitlines()[0]}",
            where=where,
            fix="see https://duckdb.org/docs/configuration/overview for each setting's values",
        ) from None
