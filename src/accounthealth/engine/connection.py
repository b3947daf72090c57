"""One Ibis connection per project. Model code builds Ibis expressions against it and never
sees engine-specific SQL; the store uses the same connection for its own tables."""

from __future__ import annotations

import typing as t
from contextlib import contextmanager
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from accounthealth.errors import ProjectError


class Engine:
    """A DuckDB file (the embedded default) opened through Ibis."""

    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        self.path = Path(path)
        try:
            self.ibis = ibis.duckdb.connect(str(self.path), read_only=read_only)
        except Exception as exc:  # duckdb raises IOException subclasses for locks
            raise ProjectError(
                f"cannot open the store {self.path}: {exc}",
                where=str(self.path),
                fix="close other accounthealth processes using this project, or check the path",
            ) from None
        self.raw = self.ibis.con

    def has_table(self, name: str) -> bool:
        return name in self.ibis.list_tables()

    def table(self, name: str) -> ir.Table:
        return self.ibis.table(name)

    def to_arrow(self, expr: ir.Expr) -> pa.Table:
        """Execute an expression and return an Arrow table."""
        return self.ibis.to_pyarrow(expr)

    def execute(self, expr: ir.Expr) -> t.Any:
        return self.ibis.execute(expr)

    def sql(self, query: str, params: t.Sequence[t.Any] = ()) -> list[tuple[t.Any, ...]]:
        """Run one of the store's own fixed statements with bound parameters."""
        return self.raw.execute(query, list(params)).fetchall()

    @contextmanager
    def transaction(self) -> t.Iterator[None]:
        """All or nothing: a failure inside rolls every write back."""
        self.raw.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.raw.execute("ROLLBACK")
            raise
        self.raw.execute("COMMIT")

    def write_arrow(self, name: str, data: pa.Table, *, replace: bool = False) -> None:
        """Create (or replace) table ``name`` from Arrow data, inside the caller's transaction."""
        view = f"_incoming_{name}"
        self.raw.register(view, data)
        try:
            ident = _ident(name)
            verb = "CREATE OR REPLACE TABLE" if replace else "INSERT INTO"
            suffix = "AS SELECT * FROM" if replace else "BY NAME SELECT * FROM"
            self.raw.execute(f"{verb} {ident} {suffix} {_ident(view)}")
        finally:
            self.raw.unregister(view)

    def close(self) -> None:
        self.ibis.disconnect()


def _ident(name: str) -> str:
    """Quote one of our own table names; refuse anything that is not a plain identifier."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a table name: {name!r}")
    return f'"{name}"'
