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
import functools
import json
import operator
import re
import typing as t
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
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
from accounthealth.sources import incremental
from accounthealth.sources.mapping import column_mapping
from accounthealth.sources.readers import (
    FILE,
    LINE,
    ROW,
    file_format,
    parquet_footer,
    read_file,
    resolve_files,
)
from accounthealth.sources.schema import DATE, TABLES, CanonicalTable
from accounthealth.sources.views import canonical_view, located, source_counts

# The name a file source's rows have in the validating database while they are checked.
_RAW = "_accounthealth_ingesting"
_REJECTED = "_accounthealth_rejected"
_RECORDS = "_accounthealth_rejected_records"
_HELD = "_accounthealth_held"
# The columns a file's rows are read with that say where each is.
_PLACE = (ROW, LINE, FILE)
# Characters DuckDB reads a path as a pattern by.
_PATTERN = re.compile(r"[*?\[\]{}]")
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
    earlier: ir.Table | None = None,
) -> tuple[ir.Table, ir.Table]:
    """``raw`` with its canonical columns typed (``__t_<column>``), and the rows of it that
    fail a check, with the column, the value and the reason (the first check failed, in the
    order of the table's columns, then unknown account, then duplicate key: of an earlier
    row, or one of the typed keys ``earlier`` files of the source hold)."""
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
    repeated = _repeated_keys(typed_rows, [f"__t_{k}" for k in table.key], earlier)
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


def _repeated_keys(rows: ir.Table, key: list[str], earlier: ir.Table | None) -> ir.Table:
    """Where (``__repeat_file``, ``__repeat_row``) a key seen on an earlier row, or held by
    ``earlier`` (typed keys), comes again. Keys are counted first, and only the few
    that repeat are ordered: numbering every row within its key carried whole rows through a
    sort, most of an ingest of 20 million events."""
    counted = rows.filter(rows[key[0]].notnull()).group_by(key).aggregate(__n=ibis._.count())
    counted = counted.filter(counted.__n > 1)
    again = rows.semi_join(counted, key)
    ordered = ibis.window(group_by=[again[k] for k in key], order_by=[again[FILE], again[ROW]])
    again = again.mutate(__nth=ibis.row_number().over(ordered))
    at = again.filter(again.__nth > 0).select(__repeat_file=again[FILE], __repeat_row=again[ROW])
    if earlier is None:
        return at
    # The earlier keys the new rows have first (the new rows are the few: their keys make the
    # join's table, and the earlier ones stream past it), then the rows that have them.
    held = earlier.semi_join(rows.select(key), key)
    seen = rows.semi_join(held, key)
    seen = seen.select(__repeat_file=seen[FILE], __repeat_row=seen[ROW])
    return at.union(seen, distinct=True)


def _held_keys(
    validator: DuckDBEngine,
    compute: Engine,
    store: Engine,
    name: str,
    table: CanonicalTable,
    mapping: dict[str, str | None],
    raw: ir.Table,
    views: contextlib.ExitStack,
) -> ir.Table | None:
    """The typed keys of the rows the files already ingested gave, in the validating
    database: those of the table's rows (on another compute engine, only the ones the new
    ``raw`` rows have, rather than the whole table's), and those of its rejected rows (a
    rejected row's key makes a later one a duplicate too), typed from the source values each
    one's record keeps. ``views`` holds them open. None where the source maps no key (no row
    can then be a duplicate)."""
    if any(mapping[k] is None for k in table.key):
        return None
    key = [f"__t_{k}" for k in table.key]
    loaded = compute.table(name)
    loaded = loaded.select(**{f"__t_{k}": loaded[k] for k in table.key})
    if validator is not compute:
        new = raw.select(
            **{
                f"__t_{k}": _typed(raw[t.cast(str, mapping[k])], table.column(k).type)
                for k in table.key
            }
        )
        new = new.filter(new[key[0]].notnull()).distinct()
        held = compute.to_arrow(loaded.semi_join(ibis.memtable(validator.to_arrow(new)), key))
        views.enter_context(validator.attached(_HELD, held))
        loaded = validator.table(_HELD)
    parts = [loaded]
    rejected_rows = store.table("rejected_rows")
    records = store.to_arrow(
        rejected_rows.filter(
            rejected_rows.table_name == name, rejected_rows.record.notnull()
        ).select("record")
    )
    if records.num_rows:
        views.enter_context(validator.attached(_RECORDS, records))
        rejected = validator.table(_RECORDS)
        parts.append(
            rejected.select(
                **{
                    f"__t_{k}": _typed(
                        _json_text(rejected.record, _pointer(t.cast(str, mapping[k]))),
                        table.column(k).type,
                    )
                    for k in table.key
                }
            )
        )
    keys = ibis.union(*parts, distinct=False)
    return keys.filter(keys[key[0]].notnull())


@ibis.udf.scalar.builtin(name="json_extract_string")
def _json_text(json: str, path: str) -> str:
    """DuckDB's json_extract_string: the text at ``path`` in a JSON document."""


def _pointer(key: str) -> str:
    """A JSON pointer to a top-level ``key``. Not a JSON path ('$.key', as Ibis writes one):
    a path reads '.', '$', '*' or a quote in a key as syntax, and a source's column may be
    named with any of them."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


@dataclass(frozen=True)
class _Reading:
    """A file source's files, and which of them an ingest reads: all, or from position
    ``since`` on (then the good rows are appended); the columns every file has, with their
    types; and either the Parquet files' footers, when DuckDB reads them in place, or the rows
    of the files read (other formats, read here into memory)."""

    source: Source
    files: list[Path]
    since: int
    types: pa.Schema
    footers: list[pq.FileMetaData] | None
    parts: list[pa.Table]


def _reading(
    name: str,
    source: Source,
    files: list[Path],
    before: incremental.Fingerprint | None,
    where: str,
    progress: Progress,
) -> _Reading:
    """What an ingest of ``files`` reads: only the files after those ``before`` read (some
    are), when every file has the columns they had (a whole ingest would otherwise read fewer),
    else all. Files other than Parquet are read here."""
    since = len(before.files) if before is not None else 0
    footers = _parquet_footers(source, files)
    if footers is not None:
        parts: list[pa.Table] = []
        schemas = [footer.schema.to_arrow_schema() for footer in footers]
        types = _common_columns(schemas, files, where)
    else:
        parts = _read_files(name, source, files[since:], since, progress)
        first = [column for column, _ in before.columns] if before is not None else None
        types = _common_columns([part.schema for part in parts], files[since:], where, first)
    if before is None or before.columns == _described(types):
        return _Reading(source, files, since, types, footers, parts)
    if footers is None:
        parts = _read_files(name, source, files[:since], 0, progress) + parts
        types = _common_columns([part.schema for part in parts], files, where)
    return _Reading(source, files, 0, types, footers, parts)


def _described(types: pa.Schema) -> tuple[tuple[str, str], ...]:
    """Columns and their types as a fingerprint records them."""
    return tuple((field.name, str(field.type)) for field in types)


def _common_columns(
    schemas: list[pa.Schema], files: list[Path], where: str, first: list[str] | None = None
) -> pa.Schema:
    """The columns every schema (of ``files``) has, in the order of the first's (or
    ``first``), each with the type that holds all of its files' values; not the row's place in
    its file. A column no one type holds is a DataError naming two files that disagree."""
    names = first if first is not None else schemas[0].names
    present = [c for c in names if c not in _PLACE and all(c in s.names for s in schemas)]
    unified = []
    for column in present:
        fields = [schema.field(column) for schema in schemas]
        try:
            merged = pa.unify_schemas(
                [pa.schema([f]) for f in fields], promote_options="permissive"
            )
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            other = next(i for i, f in enumerate(fields) if f.type != fields[0].type)
            raise DataError(
                f"column {column!r} is {fields[0].type} in {files[0].name} but "
                f"{fields[other].type} in {files[other].name}: no one type holds its values",
                where=where,
                fix="give the column one type in every file of the source (CSV and JSON files "
                "hold text, so a Parquet file beside them needs text too), or make them "
                "separate sources",
            ) from None
        unified.append(merged.field(0))
    return pa.schema(unified)


def _read_files(
    name: str, source: Source, files: list[Path], first: int, progress: Progress
) -> list[pa.Table]:
    """Read ``files`` into memory, the first being the ``first``-th of the source's."""
    parts = []
    with progress.task(f"reading {name}", total=len(files)) as advance:
        for position, file in enumerate(files, start=first):
            parts.append(read_file(source, file, position))
            advance(1)
    return parts


def _ingest_table(
    validator: DuckDBEngine,
    compute: Engine,
    store: Engine,
    project: LoadedProject,
    name: str,
    reading: _Reading,
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
        _raw_rows(validator, reading, views) as (raw, rows_read, ordered),
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
            earlier = _held_keys(validator, compute, store, name, table, mapping, raw, views)
        checks = _Checks(table, mapping, extras, accounts, bool(since), earlier, ordered)
        try:
            bad = _load(validator, compute, name, raw, checks, progress)
        except duckdb.Error as exc:
            if reading.footers is None:
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


def _parquet_footers(source: Source, files: list[Path]) -> list[pq.FileMetaData] | None:
    """The footer of each of ``files`` when DuckDB can read them in place: all Parquet, none
    with a pattern's characters in its path, and none with a column named as the row numbers
    DuckDB adds (it refuses those)."""
    if not all(file_format(source, f) == "parquet" for f in files):
        return None
    if any(_PATTERN.search(str(f)) for f in files):
        return None  # DuckDB would read such a name as a pattern, and maybe other files
    footers = [parquet_footer(f) for f in files]
    if any("file_row_number" in footer.schema.names for footer in footers):
        return None
    return footers


@contextmanager
def _raw_rows(
    validator: DuckDBEngine, reading: _Reading, views: contextlib.ExitStack
) -> t.Iterator[tuple[ir.Table, int, bool]]:
    """The rows of the files ``reading`` reads, in the validating database while they are
    checked (``views`` holds Parquet files open), with ``FILE``, ``ROW`` and ``LINE`` and the
    columns every file has; how many rows were read; whether they come in file order.

    Parquet files (``footers`` given) are read by DuckDB where they are, as the checks and the
    load need them: read into memory first, 20 million events took 2 GB and 4.5 s more. Other
    files were read into memory (``parts``) and become one Arrow table."""
    files, footers, since, types = reading.files, reading.footers, reading.since, reading.types
    if footers is not None:
        parts = []
        for position in range(since, len(files)):
            schema = footers[position].schema.to_arrow_schema()
            rows = views.enter_context(
                validator.parquet_file(files[position], f"{_RAW}_{position}", file_row_number=True)
            )
            row = rows.file_row_number + 1
            columns = {
                field.name: rows[field.name]
                if schema.field(field.name).type == field.type
                else rows[field.name].cast(ibis.dtype(field.type))
                for field in types
            }
            parts.append(
                rows.select(
                    **columns, **{ROW: row, LINE: row, FILE: ibis.literal(position, "int32")}
                )
            )
        rows_read = sum(footer.num_rows for footer in footers[since:])
        # One file's scan keeps its order; a union of several, as Ibis nests it, need not.
        yield ibis.union(*parts, distinct=False), rows_read, len(parts) == 1
        return
    kept = [*types.names, *_PLACE]
    raw = pa.concat_tables([p.select(kept) for p in reading.parts], promote_options="permissive")
    with validator.attached(_RAW, raw):
        yield validator.table(_RAW), raw.num_rows, True


@dataclass(frozen=True)
class _Checks:
    """What a file source's rows are checked and loaded with: its canonical table, which
    column maps to each canonical one, the extra columns kept, the accounts they must name,
    whether the good rows are appended, the keys earlier files hold (None where the source
    maps no key), and whether the rows come in file order."""

    table: CanonicalTable
    mapping: dict[str, str | None]
    extras: list[str]
    accounts: ir.Table | None
    append: bool
    earlier: ir.Table | None
    ordered: bool


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
    typed, rejected = _validate(raw, table, checks.mapping, checks.accounts, checks.earlier)
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
            # again from it when files are appended (_held_keys).
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
        if at is not None or not checks.ordered:
            # A join may reorder rows (one table's scan keeps them): in file order again.
            good = good.order_by([FILE, ROW])
        good = good.select(
            *[good[f"__t_{c}"].name(c) for c in table.column_names],
            *[good[e] for e in extras],
        )
        if validator is compute:
            compute.load_table_from(name, good, append=checks.append)
        else:
            good_rows = validator.to_arrow(good)
            if checks.append:
                compute.write_arrow(name, good_rows)
            else:
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
    ids = None  # the accounts' ids, once loaded (incremental.account_ids)
    with store.transaction(), compute.transaction():
        for name in ORDER:
            if name not in sources:
                continue
            source = sources[name]
            where = project.document.where(("sources", name))
            bad, since = None, 0
            if source.in_engine:
                source = located(source, project.folder)
                compute.register_view(name, canonical_view(compute, name, source, where))
                rows, skipped = source_counts(compute, name, source, where)
                reasons = {"required value is missing": skipped} if skipped else {}
                report = TableReport(name, (), rows, rows - skipped, skipped, reasons)
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
                    reading = _reading(name, source, files, before, where, progress)
                    since, columns = reading.since, _described(reading.types)
                    kept = before.rows if since and before is not None else 0
                    bad, report = _ingest_table(
                        validator, compute, store, project, name, reading, progress
                    )
                fingerprint = replace(fingerprint, rows=kept + report.rows_loaded, columns=columns)
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
