"""Load the sources the project names into canonical tables.

Every row is cast to the canonical types; a row that cannot be (bad value, missing required
value, unknown account, duplicate key) is kept aside in `rejected_rows` with file, row, line,
column and reason. All tables are loaded in one transaction, so a failed ingest changes
nothing and re-ingesting the same files gives the same tables. Each table is replaced whole, or,
when its source only gained files since the last ingest, given their rows
(sources/incremental.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import typing as t
import uuid
from dataclasses import dataclass, replace

import duckdb
import ibis
import ibis.expr.types as ir
import pyarrow as pa

from accounthealth.config.loader import LoadedProject
from accounthealth.engine.base import Engine
from accounthealth.engine.duckdb import DuckDBEngine
from accounthealth.errors import DataError
from accounthealth.progress import SILENT, Progress
from accounthealth.sources import incremental
from accounthealth.sources.checks import held_keys, validate
from accounthealth.sources.mapping import column_mapping
from accounthealth.sources.readers import (
    FILE,
    LINE,
    ROW,
    Reading,
    described,
    plan_reading,
    raw_rows,
    resolve_files,
)
from accounthealth.sources.schema import TABLES, CanonicalTable
from accounthealth.sources.views import serve, source_counts

# The name of the rejected rows' places in the validating database while the good rows load.
_REJECTED = "_accounthealth_rejected"
# Canonical tables in load order: accounts first, because the others are checked against it.
ORDER = tuple(TABLES)


@dataclass(frozen=True)
class TableReport:
    """What happened to one table."""

    table: str
    files: tuple[str, ...]
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    reasons: dict[str, int]
    # "replaced" (every file read), "appended" (only files new since the last ingest) or
    # "unchanged" (none); the counts are of the rows read this time.
    how: str = "replaced"
    files_read: int = 0


@dataclass(frozen=True)
class IngestReport:
    tables: tuple[TableReport, ...]

    @property
    def rows_rejected(self) -> int:
        return sum(r.rows_rejected for r in self.tables)


def _ingest_table(
    validator: DuckDBEngine,
    compute: Engine,
    store: Engine,
    project: LoadedProject,
    name: str,
    reading: Reading,
    progress: Progress,
) -> tuple[pa.Table, TableReport]:
    """Read, check and load one file source into ``compute`` (in the caller's transaction);
    returns its rejected rows and what happened."""
    table = TABLES[name]
    where = project.document.where(("sources", name))
    source, files, since = reading.source, reading.files, reading.since
    how = "appended" if since else "replaced"
    present = reading.types.names
    with (
        contextlib.ExitStack() as views,
        raw_rows(validator, reading, views) as (raw, rows_read, ordered),
    ):
        mapping = column_mapping(
            table,
            source,
            [c for c in present if not c.startswith("__")],
            f"{where} ({files[0].name})",
        )
        used = {v for v in mapping.values() if v}
        extras = []
        if table.keeps_extra_columns:
            extras = [c for c in present if c not in used and not c.startswith("__")]
        accounts = validator.table("accounts") if name != "accounts" and table.per_account else None
        earlier = None
        if since:
            earlier = held_keys(validator, compute, store, name, table, mapping, raw, views)
        positions = range(since, len(files))
        checks = _Checks(table, mapping, extras, accounts, bool(since), earlier, ordered, positions)
        try:
            bad = _load(validator, compute, name, raw, checks, progress)
        except duckdb.Error as exc:
            if reading.footers is None or isinstance(exc, duckdb.OutOfMemoryException):
                raise
            # Parquet read in place: only its footer was read before, the rest is read now.
            raise DataError(
                f"cannot read the parquet files: {str(exc).splitlines()[0]}",
                where=where,
                fix="check that every file is valid parquet (a file cut short or overwritten "
                "breaks it): " + ", ".join(f.name for f in files[since:]),
            ) from None
    paths = pa.array([str(f) for f in files])
    bad = bad.set_column(
        bad.schema.get_field_index("source_file"), "source_file", paths.take(bad["source_file"])
    )
    bad = _with_record(bad)
    reasons: dict[str, int] = {}
    for reason in bad.column("reason").to_pylist():
        reasons[reason] = reasons.get(reason, 0) + 1
    report = TableReport(
        name,
        tuple(str(f) for f in files),
        rows_read,
        rows_read - bad.num_rows,
        bad.num_rows,
        reasons,
        how,
        len(files) - since,
    )
    return bad, report


@contextlib.contextmanager
def _memory_said(name: str, where: str) -> t.Iterator[None]:
    """DuckDB running out of its memory while ``name`` is ingested, said as such: not as a
    file that cannot be read, since the fix is DuckDB's memory."""
    try:
        yield
    except duckdb.OutOfMemoryException as exc:
        raise DataError(
            f"DuckDB ran out of memory loading {name}: {str(exc).splitlines()[0]}",
            where=where,
            fix="raise memory_limit under compute.conf in accounthealth.yaml, or give DuckDB "
            "a temp_directory with room to spill to",
        ) from None


@dataclass(frozen=True)
class _Checks:
    """What a file source's rows are checked and loaded with: its canonical table, which
    column maps to each canonical one, the extra columns kept, the accounts they must name,
    whether the good rows are appended, the keys earlier files hold (None where the source
    maps no key), whether the rows come in file order, and the positions of the files read."""

    table: CanonicalTable
    mapping: dict[str, str | None]
    extras: list[str]
    accounts: ir.Table | None
    append: bool
    earlier: ir.Table | None
    ordered: bool
    positions: range


def _load(
    validator: DuckDBEngine,
    compute: Engine,
    name: str,
    raw: ir.Table,
    checks: _Checks,
    progress: Progress,
) -> pa.Table:
    """Check ``raw`` and load its good rows into ``compute``'s table ``name`` (appended to it
    when ``checks`` has the keys of the files already loaded); returns the rejected rows
    (``source_file`` the file's position)."""
    table, extras = checks.table, checks.extras
    # The rows are in the validating database under names of their own, not an Ibis memtable:
    # the good rows can then go into a DuckDB compute engine's table without coming back to
    # Python.
    typed, rejected = validate(raw, table, checks.mapping, checks.accounts, checks.earlier)
    bad = validator.to_arrow(
        rejected.select(
            table_name=ibis.literal(name),
            source_file=rejected[FILE],
            row_number=rejected[ROW],
            line=rejected[LINE],
            column_name=rejected["__column"],
            value=rejected["__value"],
            reason=rejected["__reason"],
            # As text, as DuckDB writes each value: an earlier rejected row's key is typed
            # again from it when files are appended (checks.held_keys).
            **{
                f"__raw_{c}": rejected[c].cast("string")
                for c in raw.columns
                if not c.startswith("__")
            },
        )
    )
    # The checks ran once, above; the good rows are the others.
    at = bad.select(["source_file", "row_number"]) if bad.num_rows else None
    with (
        validator.attached(_REJECTED, at),
        progress.task(f"loading {name}", total=1) as advance,
    ):
        good = typed
        if at is not None:
            rejected_at = validator.table(_REJECTED)
            good = good.anti_join(
                rejected_at,
                [good[FILE] == rejected_at.source_file, good[ROW] == rejected_at.row_number],
            )
        # Rows in file order without sorting them all: a union of files' scans need not keep
        # it (one file's scan does), and sorting 20 million events took more than DuckDB's
        # 1 GB: each file is loaded on its own, in order.
        parts = (
            [good] if checks.ordered else [good.filter(good[FILE] == p) for p in checks.positions]
        )
        for i, part in enumerate(parts):
            if at is not None:
                part = part.order_by([FILE, ROW])  # a join may reorder them
            part = part.select(
                *[part[f"__t_{c}"].name(c) for c in table.column_names],
                *[part[e] for e in extras],
            )
            append = checks.append or i > 0
            if validator is compute:
                compute.load_table_from(name, part, append=append)
                continue
            rows = validator.to_arrow(part)
            compute.write_arrow(name, rows, replace=not append)
            if name == "accounts":
                validator.write_arrow("accounts", rows, replace=not append)  # the others' check
        advance(1)
    return bad


def _with_record(bad: pa.Table) -> pa.Table:
    """Fold the raw source columns into one JSON `record` column, so nothing is lost."""
    raw_cols = [c for c in bad.column_names if c.startswith("__raw_")]
    records = (
        [
            json.dumps({c.removeprefix("__raw_"): row[c] for c in raw_cols}, default=str)
            for row in bad.select(raw_cols).to_pylist()
        ]
        if raw_cols
        else [None] * bad.num_rows
    )
    return bad.drop_columns(raw_cols).append_column("record", pa.array(records, pa.string()))


def ingest(
    store: Engine, compute: Engine, project: LoadedProject, progress: Progress = SILENT
) -> IngestReport:
    """Ingest every configured source; all tables are replaced together or not at all.

    File sources are validated in DuckDB (the compute engine itself when it is DuckDB, else a
    scratch in-memory database) and their good rows written to the compute engine; sources
    already in the compute engine become canonical views. Rejected rows and the run's record
    go to the store.
    """
    sources = project.config.sources
    if "accounts" not in sources:
        raise DataError(
            "no 'accounts' source: every other table refers to accounts",
            where=project.document.where(("sources",)),
            fix="add sources: {accounts: {file: data/accounts.csv}}",
        )
    validator = compute if isinstance(compute, DuckDBEngine) else DuckDBEngine()
    run_id = uuid.uuid4().hex[:12]
    now = dt.datetime.now()
    reports = []
    ids = None  # the accounts' ids, once loaded (incremental.account_ids)
    with store.transaction(), compute.transaction():
        for name in ORDER:
            if name not in sources:
                continue
            source = sources[name]
            where = project.document.where(("sources", name))
            with _memory_said(name, where):
                bad, since = None, 0
                if source.in_engine:
                    raw, view = serve(compute, name, source, where, project.folder)
                    rows, skipped = source_counts(compute, raw, view)
                    reasons = {"required value is missing": skipped} if skipped else {}
                    report = TableReport(
                        name, (), rows, rows - skipped, skipped, reasons, "read in place"
                    )
                    fingerprint = None
                    if name == "accounts" and validator is not compute:
                        # The other tables are checked against these ids.
                        known = compute.to_arrow(compute.table("accounts").select("account_id"))
                        validator.replace_table("accounts", known)
                else:
                    files = resolve_files(source, project.folder, where)
                    fingerprint = incremental.fingerprint(name, source, files, project.folder, ids)
                    before = incremental.appendable(store, compute, name, fingerprint)
                    if before is not None and len(before.files) == len(files):
                        since, kept, columns = len(files), before.rows, before.columns
                        report = TableReport(name, tuple(map(str, files)), 0, 0, 0, {}, "unchanged")
                    else:
                        reading = plan_reading(name, source, files, before, where, progress)
                        since, columns = reading.since, described(reading.types)
                        kept = before.rows if since and before is not None else 0
                        bad, report = _ingest_table(
                            validator, compute, store, project, name, reading, progress
                        )
                    fingerprint = replace(
                        fingerprint, rows=kept + report.rows_loaded, columns=columns
                    )
                if name == "accounts":
                    ids = incremental.account_ids(compute)
                if not since:
                    store.sql("DELETE FROM rejected_rows WHERE table_name = ?", [name])
                if bad is not None and bad.num_rows:
                    store.write_arrow("rejected_rows", bad)
                store.sql(
                    "INSERT INTO ingest_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        run_id,
                        name,
                        json.dumps(report.files),
                        report.rows_read,
                        report.rows_loaded,
                        report.rows_rejected,
                        fingerprint.to_json() if fingerprint else None,
                        now,
                    ],
                )
            reports.append(report)
    if validator is not compute:
        validator.close()
    return IngestReport(tuple(reports))
