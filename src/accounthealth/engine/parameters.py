"""Named query parameters: an Ibis value that compiles to a bound parameter (or, on DuckDB, a
session variable) rather than a literal, so that one compiled query serves every as-of date.
Values travel beside the SQL text when it runs, never inside it.

DuckDB and PostgreSQL compile them (``Engine.prepare``); expressions for other engines use
literals.
"""

from __future__ import annotations

import functools
import typing as t
from dataclasses import dataclass

import ibis
import ibis.expr.datashape as ds
import ibis.expr.datatypes as dt
import ibis.expr.operations as ops
import ibis.expr.types as ir
import sqlglot.expressions as sge
from ibis.backends.sql.compilers.duckdb import DuckDBCompiler


class Parameter(ops.Value):
    """A scalar whose value is bound when the compiled query runs."""

    name: str
    dtype: dt.DataType
    shape = ds.scalar


def parameter(name: str, type_: str) -> ir.Value:
    """A bound parameter ``name`` of Ibis type ``type_`` as an expression."""
    if not name.isidentifier():
        raise ValueError(f"not a parameter name: {name!r}")
    return Parameter(name, _dtype(type_)).to_expr()


class NamedParameters:
    """For an Ibis SQL compiler: writes each ``Parameter`` as a ``placeholder`` ($name unless
    the dialect binds otherwise) and lists in ``names`` the ones it wrote, in the order first
    written."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def placeholder(self, name: str) -> sge.Expression:
        """The parameter ``name`` as the dialect binds it."""
        return sge.Placeholder(this=name)

    def visit_Parameter(self, op: Parameter, *, name: str, dtype: dt.DataType) -> t.Any:
        if name not in self.names:
            self.names.append(name)
        # Cast: a bare parameter has no type until a value is bound, and a comparison with it
        # would then be planned for an unknown type.
        return self.cast(self.placeholder(name), dtype)  # type: ignore[attr-defined]


# The prefix of the DuckDB session variables that hold parameters' values.
VARIABLE_PREFIX = "accounthealth_"


class ParameterCompiler(NamedParameters, DuckDBCompiler):
    """Ibis's DuckDB compiler, plus named parameters read from session variables
    (``getvariable('accounthealth_<name>')``, set before the query runs). Not ``$name``: DuckDB
    plans a query with bound parameters as well, but delivers its result through a stream that
    one thread converts to Arrow (0.4 s of a pass of the benchmark book), where a plain query's
    result is converted by all of them."""

    def placeholder(self, name: str) -> sge.Expression:
        return sge.Anonymous(this="getvariable", expressions=[sge.convert(VARIABLE_PREFIX + name)])


@dataclass(frozen=True)
class PreparedQuery:
    """A query compiled once: its SQL text, the parameters it binds when it runs, and the Ibis
    types of its result columns."""

    sql: str
    parameters: tuple[str, ...]
    schema: dict[str, str]

    def types(self) -> ibis.Schema:
        """The Ibis schema of the result."""
        return ibis.schema({name: _dtype(type_) for name, type_ in self.schema.items()})


@functools.cache
def _dtype(name: str) -> dt.DataType:
    """The Ibis type of a name, parsed once: parsing took 0.16 ms a column, and a daily run
    reads some 100 columns of compiled queries' results, of half a dozen types."""
    return dt.dtype(name)


def prepared(compiler: t.Any, expr: ir.Table) -> PreparedQuery:
    """``expr`` compiled once by ``compiler`` (an Ibis SQL compiler whose ``names`` lists the
    parameters it wrote)."""
    statement = compiler.to_sqlglot(expr)
    return PreparedQuery(
        sql=statement.sql(dialect=compiler.dialect),
        parameters=tuple(compiler.names),
        schema={name: str(type_) for name, type_ in expr.schema().items()},
    )
