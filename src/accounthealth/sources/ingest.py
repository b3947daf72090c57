"""Load the sources the project names into canonical tables.

Every row is cast to the canonical types; a row that cannot be (bad value, missing required
value, unknown account, duplicate key) is kept aside in `rejected_rows` with file, row, line,
column and reason. Each table is replaced whole in one transaction, so a failed ingest changes
nothing and re-ingesting the same files gives the same tables.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from accounthealth.config.loader import LoadedProject
from accounthealth.config.project import Source
from accounthealth.engine.base import Engine
from accounthealth.engine.duckdb import DuckDBEngine
from accounthealth.errors import DataError
from accounthealth.progress import SILENT, Progress
from accounthealth.sources.mapping import column_mapping
from accounthealth.sources.readers import FILE, LINE, ROW, read_file, resolve_files
from accounthealth.sources.schema import DATE, TABLES, CanonicalTable
from accounthealth.sources.views import canonical_view, located, source_counts

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
    extras: list[str],
    accounts: ir.Table | None,
) -> tuple[ir.Table, ir.Table]:
    """Split ``raw`` into typed good rows and rejected rows with reasons."""
    typed = {}
    checks: list[tuple[ir.BooleanValue, str, str, ir.Value]] = []
    for column in table.columns:
        source = mapping[column.name]
        if source is None:
            typed[column.name] = ibis.null(column.type)
            continue
        value = raw[source]
        typed[column.name] = _typed(value, column.type)
        blank = value.isnull() | (value.cast("string").strip() == "")
        if column.required or (column.name in table.key and not table.key_optional):
            checks.append((blank, column.name, "required value is missing", value))
        checks.append(
            (~blank & typed[column.name].isnull(), column.name, f"not a valid {column.type}", value)
        )
    rows = raw.mutate(**{f"__t_{k}": v for k, v in typed.items()})
    if accounts is not None:
        known = accounts.select(__known=accounts.account_id).distinct()
        rows = rows.left_join(known, rows["__t_account_id"] == known["__known"])
        checks.append(
            (
                rows["__t_account_id"].notnull() & rows["__known"].isnull(),
                "account_id",
                "unknown account_id (not in accounts)",
                rows["__t_account_id"],
            )
        )
    key = [f"__t_{k}" for k in table.key]
    first = ibis.row_number().over(
        ibis.window(group_by=[rows[k] for k in key], order_by=[rows[FILE], rows[ROW]])
    )
    dup_cond = rows[key[0]].notnull() & (first > 0)
    checks = [(c.fill_null(False), col, reason, v) for c, col, reason, v in checks]
    checks.append(
        (dup_cond, ",".join(table.key), "duplicate key (an earlier row has it)", rows[key[0]])
    )

    reason = ibis.cases(*[(c, r) for c, _, r, _ in checks], else_=ibis.null("string"))
    column = ibis.cases(*[(c, col) for c, col, _, _ in checks], else_=ibis.null("string"))
    value = ibis.cases(*[(c, v.cast("string")) for c, _, _, v in checks], else_=ibis.null("string"))
    rows = rows.mutate(__reason=reason, __column=column, __value=value)
    good = (
        rows.filter(rows.__reason.isnull())
        .order_by([FILE, ROW])
        .select(*[rows[f"__t_{c}"].name(c) for c in table.column_names], *[rows[e] for e in extras])
    )
    bad = rows.filter(rows.__reason.notnull()).order_by([FILE, ROW])
    return good, bad


def _ingest_table(
    engine: Engine, project: LoadedProject, name: str, source: Source, progress: Progress
) -> tuple[pa.Table, pa.Table, TableReport]:
    table = TABLES[name]
    where = project.document.where(("sources", name))
    files = resolve_files(source, project.folder, where)
    parts = []
    with progress.task(f"reading {name}", total=len(files)) as advance:
        for file in files:
            parts.append(read_file(source, file))
            advance(1)
    columns_sets = [set(p.column_names) for p in parts]
    present = [c for c in parts[0].column_names if all(c in s for s in columns_sets)]
    mapping = column_mapping(
        table, source, [c for c in present if not c.startswith("__")], f"{where} ({files[0].name})"
    )
    raw = pa.concat_tables([p.select(present) for p in parts], promote_options="permissive")
    used = {v for v in mapping.values() if v}
    extras = []
    if table.keeps_extra_columns:
        extras = [c for c in present if c not in used and not c.startswith("__")]
    accounts = engine.table("accounts") if name != "accounts" and table.per_account else None
    good, bad = _validate(ibis.memtable(raw), table, mapping, extras, accounts)
    good_rows = engine.to_arrow(good)
    bad_rows = engine.to_arrow(
        bad.select(
            table_name=ibis.literal(name),
            source_file=bad[FILE],
            row_number=bad[ROW],
            line=bad[LINE],
            column_name=bad["__column"],
            value=bad["__value"],
            reason=bad["__reason"],
            **{f"__raw_{c}": bad[c] for c in present if not c.startswith("__")},
        )
    )
    bad_rows = _with_record(bad_rows)
    reasons: dict[str, int] = {}
    for reason in bad_rows.column("reason").to_pylist():
        reasons[reason] = reasons.get(reason, 0) + 1
    report = TableReport(
        name,
        tuple(str(f) for f in files),
        raw.num_rows,
        good_rows.num_rows,
        bad_rows.num_rows,
        reasons,
    )
    return good_rows, bad_rows, report


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
            if source.in_engine:
                source = located(source, project.folder)
                compute.register_view(name, canonical_view(compute, name, source, where))
                rows, skipped = source_counts(compute, name, source, where)
                good, bad = None, None
                reasons = {"required value is missing": skipped} if skipped else {}
                report = TableReport(name, (), rows, rows - skipped, skipped, reasons)
            else:
                good, bad, report = _ingest_table(validator, project, name, source, progress)
            with progress.task(f"loading {name}", total=1) as advance:
                if good is not None:
                    compute.replace_table(name, good)
                if name == "accounts" and validator is not compute:
                    # The other tables are checked against these ids.
                    ids = (
                        good
                        if good is not None
                        else compute.to_arrow(compute.table("accounts").select("account_id"))
                    )
                    validator.replace_table("accounts", ids)
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
                advance(1)
            reports.append(report)
    if validator is not compute:
        validator.close()
    return IngestReport(tuple(reports))
