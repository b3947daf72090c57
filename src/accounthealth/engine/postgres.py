"""PostgreSQL: a team's shared server computes the model and can hold the store."""

from __future__ import annotations

import functools
import io
import typing as t
from collections import Counter
from contextlib import contextmanager

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlglot
import sqlglot.expressions as sge
from ibis.backends.sql.compilers.postgres import PostgresCompiler
from ibis.formats.pyarrow import PyArrowData

from accounthealth.engine.base import Engine, double_literals, ident
from accounthealth.engine.parameters import NamedParameters, PreparedQuery, prepared
from accounthealth.errors import ProjectError


@functools.lru_cache(maxsize=256)
def _postgres_sql(query: str) -> str:
    # The store's statements are fixed strings written once in DuckDB's dialect.
    return sqlglot.transpile(query, read="duckdb", write="postgres")[0]


# Rows fetched at a time from a prepared query's cursor.
FETCH_ROWS = 100_000


def _own(select: sge.Select) -> t.Iterator[sge.Expression]:
    """The nodes of ``select`` itself, not of the subqueries it reads."""
    return select.walk(prune=lambda node: node is not select and isinstance(node, sge.Subquery))


def _pulled_up(select: sge.Select) -> bool:
    """Whether PostgreSQL would merge this derived table into its parent: a plain projection
    and filter (grouping, aggregates, windows and DISTINCT keep a subquery apart)."""
    if any(select.args.get(k) for k in ("group", "having", "distinct", "limit", "offset")):
        return False
    return not any(isinstance(node, (sge.AggFunc, sge.Window)) for node in _own(select))


def _read_twice(subquery: sge.Subquery, computed: set[str]) -> bool:
    """Whether the SELECT around ``subquery`` reads one of its ``computed`` columns twice."""
    parent = subquery.find_ancestor(sge.Select)
    if parent is None:
        return False
    reads = Counter(
        node.name
        for node in _own(parent)
        if isinstance(node, sge.Column) and node.table == subquery.alias and node.name in computed
    )
    return any(n > 1 for n in reads.values())


def fence_subqueries(statement: sge.Expression) -> sge.Expression:
    """Give ``OFFSET 0``, which changes no result, to each derived table that PostgreSQL would
    merge into its parent although the parent reads one of its computed columns twice.

    Ibis writes each step of an expression as a subquery over the one before. PostgreSQL's
    planner merges such subqueries into their parent and substitutes each computed column by
    its expression wherever the parent reads it, with no common subexpressions: the scoring
    query, whose steps read the previous ones' columns several times, planned to 36 times its
    length (1.7 s to plan on 18,000 accounts, 16.4 s with running and fetching; 2.6 s fenced).
    A subquery with an OFFSET is planned on its own, but the parent's filters are no longer
    pushed into it, so only the derived tables that would multiply work are fenced.
    """
    # A column is computed if its subquery computes it, or passes on one that a subquery below
    # computes and that is merged with it: innermost subqueries first.
    computed_in: dict[str, set[str]] = {}
    for subquery in reversed(list(statement.find_all(sge.Subquery))):
        select = subquery.this
        if not (
            isinstance(select, sge.Select) and isinstance(subquery.parent, (sge.From, sge.Join))
        ):
            continue
        computed = _computed(select, computed_in)
        if computed and _pulled_up(select) and _read_twice(subquery, computed):
            select.offset(0, copy=False)
            computed = set()  # planned on its own: its parent reads plain values
        computed_in[subquery.alias] = computed
    return statement


def _computed(select: sge.Select, computed_in: dict[str, set[str]]) -> set[str]:
    """The columns ``select`` computes, or passes on from a derived table that computes them
    (``computed_in``, by alias)."""
    out = set()
    for entry in select.expressions:
        value = entry.unalias()
        if isinstance(value, sge.Star):
            for source in _own(select):
                if isinstance(source, sge.Subquery):
                    out |= computed_in.get(source.alias, set())
        elif not isinstance(value, sge.Column) or value.name in computed_in.get(value.table, ()):
            out.add(entry.alias_or_name)
    return out


class _FencedCompiler(PostgresCompiler):
    """Ibis's PostgreSQL compiler, its derived tables planned apart (``fence_subqueries``)."""

    def to_sqlglot(self, expr: t.Any, **kwargs: t.Any) -> sge.Expression:
        return fence_subqueries(super().to_sqlglot(expr, **kwargs))


class _ParameterCompiler(NamedParameters, _FencedCompiler):
    """The same, plus named parameters written as $1, $2...: psycopg's raw cursors bind them by
    position, and leave a % in the SQL (a LIKE pattern, a modulo) alone."""

    def placeholder(self, name: str) -> sge.Expression:
        return sge.Parameter(this=sge.Literal.number(self.names.index(name) + 1))


class PostgresEngine(Engine):
    """A PostgreSQL database (psycopg 3) opened through Ibis; our tables go to ``schema``."""

    kind = "postgres"
    # Scans split by how far back they read: distinct counts sort only their window's rows
    # (the benchmark's 18,000-account grid query 2.0 s -> 1.1 s).
    one_scan_per_table = False

    def __init__(self, url: str, schema: str | None = None) -> None:
        try:
            import psycopg
        except ImportError:
            raise ProjectError(
                "the postgres engine needs psycopg",
                where="compute",
                fix="pip install 'accounthealth[postgres]'",
            ) from None
        try:
            raw = psycopg.connect(url, autocommit=True)
        except Exception as exc:
            raise ProjectError(
                f"cannot connect to PostgreSQL: {str(exc).strip().splitlines()[0]}",
                where=_redacted(url),
                fix="check the URL, that the server runs, and the credentials",
            ) from None
        if schema:
            # Our own statements name tables unqualified; the search path points them here.
            raw.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(schema)}")
            raw.execute(f"SET search_path TO {ident(schema)}")
        self.raw = raw
        self.url = url
        backend = ibis.postgres.from_connection(raw)
        backend.compiler = double_literals(_FencedCompiler)
        super().__init__(backend, schema)

    def sql(self, query: str, params: t.Sequence[t.Any] = ()) -> list[tuple[t.Any, ...]]:
        cursor = self.raw.execute(_postgres_sql(query), list(params))
        return cursor.fetchall() if cursor.description else []

    @contextmanager
    def transaction(self) -> t.Iterator[None]:
        # psycopg nests an inner transaction as a savepoint, so this is re-entrant.
        with self.raw.transaction():
            yield

    def writer(self) -> PostgresEngine:
        return PostgresEngine(self.url, self.database)

    def write_arrow(self, name: str, data: pa.Table, *, replace: bool = False) -> None:
        with self.transaction():
            if replace:
                self.ibis.create_table(
                    name, schema=ibis.Schema.from_pyarrow(data.schema), overwrite=True
                )
            if data.num_rows:
                self._copy(name, data)

    def _copy(self, name: str, data: pa.Table) -> None:
        """Bulk load with COPY: CSV where nulls are unquoted empty fields."""
        columns = ", ".join(ident(c) for c in data.column_names)
        options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
        statement = f"COPY {ident(name)} ({columns}) FROM STDIN (FORMAT csv)"
        with self.raw.cursor() as cursor, cursor.copy(statement) as copy:
            for batch in data.to_batches(max_chunksize=200_000):
                buffer = io.BytesIO()
                pacsv.write_csv(pa.Table.from_batches([batch]), buffer, options)
                copy.write(buffer.getvalue())

    # The metric query is compiled once and kept (scoring/querycache.py).
    prepares = True
    transactional = True

    def prepare(self, expr: ir.Table) -> PreparedQuery:
        return prepared(double_literals(_ParameterCompiler), expr)

    def run_prepared(self, query: PreparedQuery, values: t.Mapping[str, t.Any]) -> pa.Table:
        import psycopg

        params = [values[name] for name in query.parameters]
        schema = query.types()
        struct = schema.as_struct().to_pyarrow()
        # A server-side cursor (it needs a transaction): rows arrive a batch at a time, as
        # Ibis's own PostgreSQL to_pyarrow reads them, and leave Python as Arrow.
        with self.transaction(), psycopg.RawServerCursor(self.raw, "accounthealth") as cursor:
            cursor.execute(query.sql, params)
            batches = [
                pa.RecordBatch.from_struct_array(pa.array(rows, type=struct))
                for rows in iter(lambda: cursor.fetchmany(FETCH_ROWS), [])
            ]
        table = pa.Table.from_batches(batches, schema=schema.to_pyarrow())
        return PyArrowData.convert_table(table, schema)

    def close(self) -> None:
        self.raw.close()


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    head, sep, tail = url.rpartition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, credentials = head.partition("//")
    user = credentials.split(":", 1)[0]
    return f"{scheme}//{user}:***@{tail}"
