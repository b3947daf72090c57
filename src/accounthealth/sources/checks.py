"""The checks an ingest runs on a file source's rows, as one query in the validating DuckDB:
each value typed to its canonical column, and the rows that fail (a required value missing, a
value not of its type, an unknown account, a key an earlier row has), with why."""

from __future__ import annotations

import contextlib
import functools
import operator
import typing as t

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from accounthealth.engine.base import Engine
from accounthealth.engine.duckdb import DuckDBEngine
from accounthealth.sources.readers import FILE, ROW
from accounthealth.sources.schema import DATE, CanonicalTable

# Names of tables in the validating database while an append is checked.
_RECORDS = "_accounthealth_rejected_records"
_HELD = "_accounthealth_held"


def as_canonical(value: ir.Value, type_: str) -> ir.Value:
    """A source value as the canonical type ``type_``; NULL where it is not one."""
    if type_ == "string":
        return value.cast("string")
    if type_ == DATE:
        # Accept '2026-01-31' and '2026-01-31 10:00:00' alike.
        return value.try_cast("date").coalesce(value.try_cast("timestamp").cast("date"))
    return value.try_cast(type_)


def validate(
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
        typed[column.name] = as_canonical(value, column.type)
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
    sort, most of an ingest of 20 million events.

    They are counted by a 64-bit hash of the key, and only rows whose hash comes more than
    once are compared by the key itself (a collision only adds a row to compare): counting
    100 million distinct event ids as text ran out of a 1GB DuckDB memory_limit (its
    aggregate of distinct strings does not spill enough); by their hash it fits."""
    # A key with a NULL in it repeats nothing (the semi-join by the key itself never matched
    # one), and a hash would make NULLs equal.
    hashed = rows.filter(*[rows[k].notnull() for k in key])
    whole = hashed[key[0]] if len(key) == 1 else ibis.struct({k: hashed[k] for k in key})
    hashed = hashed.mutate(__key_hash=_hash(whole))
    counted = hashed.group_by("__key_hash").aggregate(__n=ibis._.count())
    counted = counted.filter(counted.__n > 1)
    again = hashed.semi_join(counted, "__key_hash")
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


def held_keys(
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
                f"__t_{k}": as_canonical(raw[t.cast(str, mapping[k])], table.column(k).type)
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
                    f"__t_{k}": as_canonical(
                        _json_text(rejected.record, _pointer(t.cast(str, mapping[k]))),
                        table.column(k).type,
                    )
                    for k in table.key
                }
            )
        )
    keys = ibis.union(*parts, distinct=False)
    return keys.filter(keys[key[0]].notnull())


@ibis.udf.scalar.builtin(name="hash")
def _hash(value) -> dt.UInt64:
    """DuckDB's hash of a value of any type (left unannotated for that; a struct's hash is
    of its fields). Ibis's own ``hash()`` casts it through a bit string, once per row."""


@ibis.udf.scalar.builtin(name="json_extract_string")
def _json_text(json: str, path: str) -> str:
    """DuckDB's json_extract_string: the text at ``path`` in a JSON document."""


def _pointer(key: str) -> str:
    """A JSON pointer to a top-level ``key``. Not a JSON path ('$.key', as Ibis writes one):
    a path reads '.', '$', '*' or a quote in a key as syntax, and a source's column may be
    named with any of them."""
    return "/" + key.replace("~", "~0").replace("/", "~1")
