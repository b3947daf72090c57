"""Read source files into Arrow tables, keeping each row's file and position for error reports."""

from __future__ import annotations

import csv
import glob
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from accounthealth.config.project import Source
from accounthealth.errors import DataError

ROW = "__row"  # 1-based data row within its file
LINE = "__line"  # line in the file where the row starts (CSV: after the header)
FILE = "__file"  # the file's position in the source's list of files


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
