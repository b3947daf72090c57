"""Sources that already live in the compute engine (a PostgreSQL or Spark table, a query, a
Parquet or Delta path) are read where they are: a canonical view renames and casts their
columns, and nothing is copied."""

from __future__ import annotations

from pathlib import Path

import ibis
import ibis.expr.types as ir

from accounthealth.config.loader import LoadedProject
from accounthealth.config.project import Source
from accounthealth.engine.base import Engine
from accounthealth.sources.mapping import column_mapping
from accounthealth.sources.schema import TABLES


def canonical_views(
    raw: ir.Table, name: str, source: Source, where: str
) -> tuple[ir.Table, ir.Table]:
    """The source (its ``raw`` relation in the engine) as the canonical table ``name``:
    canonical column names and types, extra account columns kept; with every row, and with
    rows without a required value left out (the table served)."""
    table = TABLES[name]
    mapping = column_mapping(table, source, list(raw.columns), where)
    columns: dict[str, ir.Value] = {}
    for column in table.columns:
        src = mapping[column.name]
        if src is None:
            columns[column.name] = ibis.null(column.type)
            continue
        value = raw[src]
        columns[column.name] = value if value.type() == column.type else value.cast(column.type)
    if table.keeps_extra_columns:
        used = {v for v in mapping.values() if v}
        columns.update({c: raw[c] for c in raw.columns if c not in used and c not in columns})
    view = raw.select(**columns)
    required = [view[c.name].notnull() for c in table.columns if c.required]
    return view, view.filter(*required) if required else view


def source_counts(engine: Engine, raw: ir.Table, view: ir.Table) -> tuple[int, int]:
    """Rows in an in-engine source (its ``raw`` relation), and how many its canonical
    ``view`` leaves out for a missing value."""
    total = engine.execute(raw.count())
    kept = engine.execute(view.count())
    return int(total), int(total) - int(kept)


def located(source: Source, folder: Path) -> Source:
    """The source with a relative local ``path:`` made relative to the project folder."""
    if source.path is None or "://" in source.path or Path(source.path).is_absolute():
        return source
    return source.model_copy(update={"path": str(folder / source.path)})


def serve(
    engine: Engine, name: str, source: Source, where: str, folder: Path
) -> tuple[ir.Table, ir.Table]:
    """Serve the in-engine ``source`` as the canonical table ``name`` (with every row too, for
    the counts that tell the carried running values whether it changed); its raw relation and
    its view."""
    source = located(source, folder)
    # The relation once: a Delta table's log, for one, is read each time.
    raw = engine.relation(source, where)
    every_row, view = canonical_views(raw, name, source, where)
    engine.register_view(name, view, every_row)
    return raw, view


def register_views(engine: Engine, project: LoadedProject) -> None:
    """Serve every in-engine source of the project as its canonical table."""
    for name, source in project.config.sources.items():
        if source.in_engine:
            serve(engine, name, source, project.document.where(("sources", name)), project.folder)
