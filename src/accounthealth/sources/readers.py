"""Read a file source's files, keeping each row's file and position for error reports: which
files an ingest reads and with which columns, Parquet files read in place by DuckDB, other
formats into Arrow tables."""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import re
import typing as t
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from accounthealth.config.project import Source
from accounthealth.engine.duckdb import DuckDBEngine
from accounthealth.errors import DataError
from accounthealth.progress import Progress
from accounthealth.sources import incremental

ROW = "__row"  # 1-based data row within its file
LINE = "__line"  # line in the file where the row starts (CSV: after the header)
FILE = "__file"  # the file's position in the source's list of files
# The columns a file's rows are read with that say where each is.
_PLACE = (ROW, LINE, FILE)
# The name a file source's rows have in the validating database while they are checked.
_RAW = "_accounthealth_ingesting"
# Characters DuckDB reads a path as a pattern by.
_PATTERN = re.compile(r"[*?\[\]{}]")


def resolve_files(source: Source, folder: Path, where: str) -> list[Path]:
    """Expand the source's paths and globs relative to the project folder."""
    files: list[Path] = []
    for pattern in source.files:
        # The pattern alone, under the folder: the folder's own name may hold [ or *.
        matches = sorted(folder / p for p in glob.glob(pattern, root_dir=folder))
        if not matches:
            raise DataError(
                f"no file matches '{pattern}'",
                where=where,
                fix=f"check the path; it is relative to the project folder {folder}",
            )
        files += matches
    return files


def file_format(source: Source, file: Path) -> str:
    """The source's declared format, or the one its extension implies."""
    if source.format:
        return source.format
    suffix = file.suffix.lower().lstrip(".")
    formats = {
        "csv": "csv",
        "tsv": "csv",
        "parquet": "parquet",
        "json": "json",
        "jsonl": "json",
        "ndjson": "json",
    }
    if suffix not in formats:
        raise DataError(
            f"cannot tell the format of {file.name} from its extension",
            where=str(file),
            fix="add format: csv, parquet or json to the source",
        )
    return formats[suffix]


def read_file(source: Source, file: Path, position: int) -> pa.Table:
    """Read one file, the ``position``-th of its source. CSV and JSON values stay as
    text/JSON types; casting happens later, so a bad value becomes a rejected row instead of a
    failed read. The file is named by its position, not its path: on millions of rows a
    column of paths cost seconds to build and a gigabyte to hold."""
    fmt = file_format(source, file)
    try:
        if fmt == "csv":
            table, lines = _read_csv(file, source.delimiter)
        elif fmt == "parquet":
            table = pq.read_table(file)
            lines = np.arange(1, table.num_rows + 1)
        else:
            table, lines = _read_json(file)
    except (OSError, pa.ArrowException, json.JSONDecodeError, csv.Error, UnicodeDecodeError) as exc:
        delimiter = f" with delimiter {source.delimiter!r}" if fmt == "csv" else ""
        raise _unreadable(fmt, file, exc, delimiter) from None
    n = table.num_rows
    return (
        table.append_column(ROW, pa.array(np.arange(1, n + 1)))
        .append_column(LINE, pa.array(np.asarray(lines, np.int64)))
        .append_column(FILE, pa.array(np.full(n, position, np.int32)))
    )


def parquet_footer(file: Path) -> pq.FileMetaData:
    """A Parquet file's footer: its columns and how many rows it has, without its rows."""
    try:
        return pq.read_metadata(file)
    except (OSError, pa.ArrowException) as exc:
        raise _unreadable("parquet", file, exc) from None


def _unreadable(fmt: str, file: Path, exc: Exception, condition: str = "") -> DataError:
    return DataError(
        f"cannot read {fmt} file: {exc}",
        where=str(file),
        fix=f"check that the file is valid {fmt}{condition}",
    )


def _read_csv(file: Path, delimiter: str) -> tuple[pa.Table, np.ndarray]:
    with file.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle, delimiter=delimiter), None)
    if not header:
        raise DataError("the CSV file is empty", where=str(file), fix="add a header row")
    table = pacsv.read_csv(
        file,
        parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=True
        ),
    )
    # The header is line 1; rows start on line 2 (a quoted newline inside a value would shift
    # later lines, which is rare in exported data and still leaves the row number exact).
    return table, np.arange(2, table.num_rows + 2)


def _read_json(file: Path) -> tuple[pa.Table, list[int]]:
    text = file.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        records = json.loads(text)
        lines = list(range(1, len(records) + 1))
    else:
        records, lines = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                records.append(json.loads(line))
                lines.append(number)
    if not all(isinstance(r, dict) for r in records):
        raise DataError(
            "expected JSON objects, one per row",
            where=str(file),
            fix="write one object per line (JSON lines) or an array of objects",
        )
    # Every value as text, like CSV: types are checked and cast in one place. An empty string
    # is missing, as an empty CSV field is (a key "" would otherwise be one).
    names = list(dict.fromkeys(k for r in records for k in r))
    columns = {
        name: pa.array(
            [None if r.get(name) in (None, "") else _text(r.get(name)) for r in records],
            pa.string(),
        )
        for name in names
    }
    return pa.table(columns), lines


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


@dataclass(frozen=True)
class Reading:
    """A file source's files, and which of them an ingest reads: all, or from position
    ``since`` on (then the good rows are appended); the columns every file read has, with
    their types; and either the footers of the Parquet files read, when DuckDB reads them in
    place, or the rows of the files read (other formats, read here into memory)."""

    source: Source
    files: list[Path]
    since: int
    types: pa.Schema
    footers: list[pq.FileMetaData] | None
    parts: list[pa.Table]


def plan_reading(
    name: str,
    source: Source,
    files: list[Path],
    before: incremental.Fingerprint | None,
    where: str,
    progress: Progress,
) -> Reading:
    """What an ingest of ``files`` reads: only the files after those ``before`` read (some
    are), when they have the columns, of the types, those had (a whole ingest would otherwise
    read other ones), else all."""
    if before is not None:
        first = [column for column, _ in before.columns]
        new = _read(name, source, files, len(before.files), first, where, progress)
        if described(new.types) == before.columns:
            return new
    return _read(name, source, files, 0, None, where, progress)


def _read(
    name: str,
    source: Source,
    files: list[Path],
    since: int,
    first: list[str] | None,
    where: str,
    progress: Progress,
) -> Reading:
    """The files from position ``since`` on, and their common columns (in the order of
    ``first``, the earlier files' ones, if given): their Parquet footers when DuckDB can read
    them in place, else their rows, read here."""
    footers = _parquet_footers(source, files, since)
    if footers is not None:
        parts: list[pa.Table] = []
        schemas = [footer.schema.to_arrow_schema() for footer in footers]
    else:
        parts = _read_files(name, source, files[since:], since, progress)
        schemas = [part.schema for part in parts]
    types = _common_columns(schemas, files[since:], where, first)
    return Reading(source, files, since, types, footers, parts)


def described(types: pa.Schema) -> tuple[tuple[str, str], ...]:
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


def _parquet_footers(source: Source, files: list[Path], since: int) -> list[pq.FileMetaData] | None:
    """The footer of each file from position ``since`` on when DuckDB can read them in place:
    the source's files all Parquet (however many are read, they are read as a whole ingest
    would), none with a pattern's characters in its path, and none of those read with a column
    named as the row numbers DuckDB adds (it refuses those)."""
    if not all(file_format(source, f) == "parquet" for f in files):
        return None
    if any(_PATTERN.search(str(f)) for f in files):
        return None  # DuckDB would read such a name as a pattern, and maybe other files
    footers = [parquet_footer(f) for f in files[since:]]
    if any("file_row_number" in footer.schema.names for footer in footers):
        return None
    return footers


@contextmanager
def raw_rows(
    validator: DuckDBEngine, reading: Reading, views: contextlib.ExitStack
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
        for position, footer in enumerate(footers, start=since):
            schema = footer.schema.to_arrow_schema()
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
        rows_read = sum(footer.num_rows for footer in footers)
        # One file's scan keeps its order; a union of several, as Ibis nests it, need not.
        yield ibis.union(*parts, distinct=False), rows_read, len(parts) == 1
        return
    kept = [*types.names, *_PLACE]
    raw = pa.concat_tables([p.select(kept) for p in reading.parts], promote_options="permissive")
    with validator.attached(_RAW, raw):
        yield validator.table(_RAW), raw.num_rows, True
