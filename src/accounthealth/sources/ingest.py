"""Load the sources the project names into canonical tables.

Every row is cast to the canonical types; a row that cannot be (bad value, missing required
value, unknown account, duplicate key) is kept aside in `rejected_rows` with file, row, line,
column and reason. Each table is replaced whole in one transaction, so a failed ingest changes
nothing and re-ingesting the same files gives the same tables.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import operator
import typing as t
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.parquet as pq

from accounthealth.config.loader import LoadedProject
from accounthealth.config.project import Source
from accounthealth.engine.base import Engine
from accounthealth.engine.duckdb import DuckDBEngine
from accounthealth.errors import DataError
from accounthealth.progress import SILENT, Progress
from accounthealth.sources.mapping import column_mapping
from accounthealth.sources.readers import (
    FILE,
    LINE,
    ROW,
    file_format,
    parquet_schema,
    read_file,
    resolve_files,
)
from accounthealth.sources.schema import DATE, TABLES, CanonicalTable
from accounthealth.sources.views import canonical_view, located, source_counts

# The name a file source's rows have in the validating database while they are checked.
_RAW = "_accounthealth_ingesting"
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


@dataclass(frozen=True)
class IngestReport:
    tables: tuple[TableReport, ...]

    @property
    def rows_rejected(self) -> int:
        return sum(t.rows_rejected for t in self.tables)


def _typed(value: ir.Value, type_: str) -> ir.Value:
    if type_ == "string":
        return value.cast("string")
    if type_ == DATE:
        # Accept '2026-01-31' and '2026-01-31 10:00:00' alike.
        return value.try_cast("date").coalesce(value.try_cast("timestamp").cast("date"))
    return value.try_cast(type_)


def _validate(
    raw: ir.Table,
    table: CanonicalTable,
    mapping: dict[str, str | None],
    accounts: ir.Table | None,
) -> tuple[ir.Table, ir.Table]:
    """``raw`` with its canonical columns typed (``__t_<column>``), and the rows of it that
    fail a check, with the column, the value and the reason (the first check failed, in the
    order of the table's columns, then unknown account, then duplicate key)."""
    typed, blanks = {}, {}
    for column in table.columns:
        source = mapping[column.name]
        if source is None:
            typed[column.name] = ibis.null(column.type)
            continue
        value = raw[source]
        typed[column.name] = _typed(value, column.type)
        # Only text can be blank: a typed column (Parquet's) is missing only when NULL, and
        # casting millions of its values to text to look was seconds of an ingest.
        blanks[column.name] = value.isnull()
        if value.type().is_string():
            blanks[column.name] |= _whitespace(value)
    typed_rows = raw.mutate(**{f"__t_{k}": v for k, v in typed.items()})
    # Each check's outcome becomes a column (blank, for one, is then computed once), and the
    # reason, column and value are made only for the few rows that fail one: the value as
    # text for every row was most of the checks' time.
    checks: list[tuple[str, str, ir.Value, str]] = []  # column, reason, failed, value's column
    for column in table.columns:
        source = mapping[column.name]
        if source is None:
            continue
        blank = blanks[column.name]
        if column.required or (column.name in table.key and not table.key_optional):
            checks.append((column.name, "required value is missing", blank, source))
        not_valid = ~blank & typed_rows[f"__t_{column.name}"].isnull()
        checks.append((column.name, f"not a valid {column.type}", not_valid, source))
    rows = typed_rows.mutate(
        **{f"__c{i}": failed.fill_null(False) for i, (_, _, failed, _) in enumerate(checks)}
    )
    columns = [column for column, _, _, _ in checks]
    reasons = [reason for _, reason, _, _ in checks]
    shown = [value for _, _, _, value in checks]
    if accounts is not None:
        known = accounts.select(__known=accounts.account_id).distinct()
        rows = rows.left_join(known, rows["__t_account_id"] == known["__known"])
        unknown = rows["__t_account_id"].notnull() & rows["__known"].isnull()
        rows = rows.mutate(**{f"__c{len(columns)}": unknown})
        columns.append("account_id")
        reasons.append("unknown account_id (not in accounts)")
        shown.append("__t_account_id")
    repeated = _repeated_keys(typed_rows, [f"__t_{k}" for k in table.key])
    rows = rows.left_join(
        repeated, [rows[FILE] == repeated.__repeat_file, rows[ROW] == repeated.__repeat_row]
    )
    rows = rows.mutate(**{f"__c{len(columns)}": rows.__repeat_file.notnull()})
    columns.append(",".join(table.key))
    reasons.append("duplicate key (an earlier row has it)")
    shown.append(f"__t_{table.key[0]}")
    failed = [rows[f"__c{i}"] for i in range(len(columns))]
    failing = rows.filter(functools.reduce(operator.or_, failed))
    failed = [failing[f"__c{i}"] for i in range(len(columns))]
    values = [failing[column].cast("string") for column in shown]
    nothing = ibis.null("string")
    bad = failing.mutate(
        __reason=ibis.cases(*zip(failed, reasons, strict=True), else_=nothing),
        __column=ibis.cases(*zip(failed, columns, strict=True), else_=nothing),
        __value=ibis.cases(*zip(failed, values, strict=True), else_=nothing),
    )
    return typed_rows, bad.order_by([FILE, ROW])


def _whitespace(value: ir.StringValue) -> ir.BooleanValue:
    """Empty or only whitespace. Only a value whose first character is a control character or
    a space can be, and only those are trimmed: trimming every value of a column took ten
    times as long."""
    return ibis.ifelse(value.ascii_str() <= 32, value.strip() == "", False)


def _repeated_keys(rows: ir.Table, key: list[str]) -> ir.Table:
    """Where (``__repeat_file``, ``__repeat_row``) a key seen on an earlier row comes again.
    Keys are counted first, and only the few that repeat are ordered: numbering every row
    within its key carried whole rows through a sort, most of an ingest of 20 million
    events."""
    counted = rows.filter(rows[key[0]].notnull()).group_by(key).aggregate(__n=ibis._.count())
    counted = counted.filter(counted.__n > 1)
    again = rows.semi_join(counted, key)
    earlier = ibis.window(group_by=[again[k] for k in key], order_by=[again[FILE], again[ROW]])
    again = again.mutate(__nth=ibis.row_number().over(earlier))
    return again.filter(again.__nth > 0).select(__repeat_file=again[FILE], __repeat_row=again[ROW])


def _ingest_table(
    validator: Engine,
    compute: Engine,
    project: LoadedProject,
    name: str,
    source: Source,
    progress: Progress,
) -> tuple[pa.Table, TableReport]:
    """Read, check and load one file source into ``compute`` (in the caller's transaction);
    returns its rejected rows and what happened."""
    table = TABLES[name]
    where = project.document.where(("sources", name))
    files = resolve_files(source, project.folder, where)
    with _raw_rows(validator, name, source, files, progress) as (raw, present, rows_read):
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
        bad = _load(validator, compute, name, raw, table, mapping, extras, accounts, progress)
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
    )
    return bad, report


@contextmanager
def _raw_rows(
    validator: Engine, name: str, source: Source, files: list[Path], progress: Progress
) -> t.Iterator[tuple[ir.Table, list[str], int]]:
    """The source's rows in the validating database while they are checked, with ``FILE``,
    ``ROW`` and ``LINE``; the columns every file has; how many rows there are.

    Parquet files are read by DuckDB where they are, as the checks and the load need them:
    read into memory first, 20 million events took 2 GB and 4.5 s more. Other formats are
    read here into one Arrow table."""
    parquet = all(file_format(source, f) == "parquet" for f in files)
    schemas = [parquet_schema(f) for f in files] if parquet else []
    # DuckDB numbers a file's rows in a column of this name, and refuses a file that has one.
    if parquet and not any("file_row_number" in schema.names for schema in schemas):
        present = [c for c in schemas[0].names if all(c in s.names for s in schemas)]
        types = pa.unify_schemas(
            [pa.schema([s.field(c) for c in present]) for s in schemas],
            promote_options="permissive",
        )
        parts = []
        for position, (file, schema) in enumerate(zip(files, schemas, strict=True)):
            rows = validator.ibis.read_parquet(
                file, table_name=f"{_RAW}_{position}", file_row_number=True
            )
            row = rows.file_row_number + 1
            columns = {
                c: rows[c]
                if schema.field(c).type == types.field(c).type
                else rows[c].cast(ibis.dtype(types.field(c).type))
                for c in present
            }
            parts.append(
                rows.select(
                    **columns, **{ROW: row, LINE: row, FILE: ibis.literal(position, "int32")}
                )
            )
        rows_read = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        yield ibis.union(*parts, distinct=False), present, rows_read
        return
    parts = []
    with progress.task(f"reading {name}", total=len(files)) as advance:
        for position, file in enumerate(files):
            parts.append(read_file(source, file, position))
            advance(1)
    columns_sets = [set(p.column_names) for p in parts]
    present = [c for c in parts[0].column_names if all(c in s for s in columns_sets)]
    raw = pa.concat_tables([p.select(present) for p in parts], promote_options="permissive")
    with validator.attached(_RAW, raw):
        yield validator.table(_RAW), present, raw.num_rows


def _load(
    validator: Engine,
    compute: Engine,
    name: str,
    raw: ir.Table,
    table: CanonicalTable,
    mapping: dict[str, str | None],
    extras: list[str],
    accounts: ir.Table | None,
    progress: Progress,
) -> pa.Table:
    """Check ``raw`` and load its good rows into ``compute``'s table ``name``; returns the
    rejected rows (``source_file`` the file's position)."""
    # The rows are in the validating database under names of their own, not an Ibis memtable:
    # the good rows can then go into a DuckDB compute engine's table without coming back to
    # Python.
    typed, rejected = _validate(raw, table, mapping, accounts)
    bad = validator.to_arrow(
        rejected.select(
            table_name=ibis.literal(name),
            source_file=rejected[FILE],
            row_number=rejected[ROW],
            line=rejected[LINE],
            column_name=rejected["__column"],
            value=rejected["__value"],
            reason=rejected["__reason"],
            **{f"__raw_{c}": rejected[c] for c in raw.columns if not c.startswith("__")},
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
            # A join may reorder rows (scans, and their union, keep them): in file order again.
            rejected_at = validator.table(_REJECTED)
            good = good.anti_join(
                rejected_at,
                [good[FILE] == rejected_at.source_file, good[ROW] == rejected_at.row_number],
            ).order_by([FILE, ROW])
        good = good.select(
            *[good[f"__t_{c}"].name(c) for c in table.column_names],
            *[good[e] for e in extras],
        )
        if validator is compute:
            compute.replace_table_from(name, good)
        else:
            good_rows = validator.to_arrow(good)
            compute.replace_table(name, good_rows)
            if name == "accounts":
                validator.replace_table("accounts", good_rows)  # the others' check
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
    with store.transaction(), compute.transaction():
        for name in ORDER:
            if name not in sources:
                continue
            source = sources[name]
            where = project.document.where(("sources", name))
            bad = None
            if source.in_engine:
                source = located(source, project.folder)
                compute.register_view(name, canonical_view(compute, name, source, where))
                rows, skipped = source_counts(compute, name, source, where)
                reasons = {"required value is missing": skipped} if skipped else {}
                report = TableReport(name, (), rows, rows - skipped, skipped, reasons)
                if name == "accounts" and validator is not compute:
                    # The other tables are checked against these ids.
                    ids = compute.to_arrow(compute.table("accounts").select("account_id"))
                    validator.replace_table("accounts", ids)
            else:
                bad, report = _ingest_table(validator, compute, project, name, source, progress)
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
                    None,
                    now,
                ],
            )
            reports.append(report)
    if validator is not compute:
        validator.close()
    return IngestReport(tuple(reports))
