"""The compute layer: one Ibis connection per engine (DuckDB by default, PostgreSQL, Spark).

``open_store`` opens where accounthealth keeps its own tables; ``open_compute`` opens where the
model is evaluated, which is the store itself unless ``compute:`` in accounthealth.yaml says
otherwise. Choosing an engine is configuration; the model and the code paths stay the same.
"""

from __future__ import annotations

import os
import re

from accounthealth.config.loader import LoadedProject
from accounthealth.engine.base import Engine
from accounthealth.engine.duckdb import DuckDBEngine
from accounthealth.errors import ConfigError

__all__ = ["DuckDBEngine", "Engine", "open_compute", "open_store"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: str, where: str) -> str:
    """Replace ``${NAME}`` with the environment variable, so secrets stay out of the file."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(
                f"environment variable {name} is not set",
                where=where,
                fix=f"export {name}=... before running accounthealth",
            )
        return os.environ[name]

    return _VAR.sub(lookup, value)


def open_store(project: LoadedProject) -> Engine:
    """The database holding scores, history and runs."""
    store = project.config.store
    if store.postgres:
        from accounthealth.engine.postgres import PostgresEngine

        where = project.document.where(("store", "postgres"))
        return PostgresEngine(expand_env(store.postgres, where), store.db_schema)
    compute = project.config.compute
    # The embedded default computes in the store's own connection: its settings apply here.
    computes_here = project.config.engine == "duckdb" and compute.path is None
    return DuckDBEngine(
        project.folder / store.duckdb,
        settings=compute.conf if computes_here else None,
        where=project.document.where(("compute", "conf")),
    )


def open_compute(project: LoadedProject, store: Engine) -> Engine:
    """The engine that evaluates the model: ``store`` itself unless configured otherwise."""
    config = project.config
    compute = config.compute
    kind = config.engine

    def where(*path: str) -> str:
        return project.document.where(("compute", *path))

    if kind == "duckdb":
        if compute.path is None and isinstance(store, DuckDBEngine):
            return store
        return DuckDBEngine(
            project.folder / (compute.path or "compute.duckdb"),
            settings=compute.conf,
            where=where("conf"),
        )
    if kind == "postgres":
        from accounthealth.engine.postgres import PostgresEngine

        if compute.url is None:
            if store.kind == "postgres" and compute.db_schema in (None, store.database):
                return store
            if store.kind != "postgres":
                raise ConfigError(
                    "the postgres engine needs a url",
                    where=where(),
                    fix="add url: postgresql://USER@HOST:5432/DATABASE under compute:",
                )
            url = expand_env(config.store.postgres or "", where())
            return PostgresEngine(url, compute.db_schema)
        return PostgresEngine(expand_env(compute.url, where("url")), compute.db_schema)
    if kind == "ibis":
        return _any_ibis_backend(compute.url, compute.db_schema, where("url"))
    from accounthealth.engine.spark import SparkEngine

    tables = compute.tables or str(project.folder / "spark-tables")
    if "://" not in tables and not os.path.isabs(tables):
        tables = str(project.folder / tables)
    return SparkEngine(compute.master or "local[*]", compute.conf, tables, compute.db_schema)


def _any_ibis_backend(url: str | None, database: str | None, where: str) -> Engine:
    """Any warehouse Ibis connects to by URL (Snowflake, BigQuery, Trino, ...): computes the
    model; the store stays in DuckDB or PostgreSQL."""
    import ibis

    if not url:
        raise ConfigError(
            "the ibis engine needs a url",
            where=where,
            fix="add url: BACKEND://... as documented by Ibis for your warehouse",
        )
    url = expand_env(url, where)
    try:
        backend = ibis.connect(url)
    except Exception as exc:
        raise ConfigError(
            f"Ibis cannot connect: {str(exc).strip().splitlines()[0]}",
            where=where,
            fix="check the URL and that the backend's extra is installed "
            "(pip install 'ibis-framework[BACKEND]')",
        ) from None
    engine = Engine(backend, database)
    engine.kind = f"ibis:{backend.name}"
    return engine
