"""Metric and component detail of scored days, kept as Parquet files beside a DuckDB store.

A day's detail is one wide row per account: sixteen metrics and three components make 74
columns, most of what a day of history weighs. DuckDB took about 0.67 s to insert one day of
the benchmark's 184,000 accounts and kept 29 MB of it; pyarrow writes the same rows to a
zstd-compressed Parquet file in about 0.2 s, and the file is 5 MB. So a DuckDB store keeps each
day's detail as a file in the folder named after it (``accounthealth.duckdb.details/``):

    m<metrics>c<components>/<random id>.parquet

one folder per width of the store's detail columns (a model with more metrics widens them),
each with an empty ``_layout.parquet`` that gives the width's columns when no day has one yet.

The store's ``detail_files`` table says which files are history. A batch writes its files
first, then lists them and unlists the ones they replace in the transaction that writes its
scores. The ``score_details`` view (``schema.define_details_view``) reads only listed files, so
a reader sees a day's detail exactly when it sees its scores, and the view itself changes only
when the store widens or moves (a catalog write in every batch would conflict with anything
else writing the catalog in the process). Files listed nowhere (replaced ones, a failed or
killed run's) are deleted when the store is next opened, once an hour old: a reader may still
be reading a file just replaced, and a run in the same process may be about to list a new one.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
import typing as t
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlglot.expressions as sge

from accounthealth.engine.base import Engine

# Files listed nowhere are deleted only after this long.
ORPHAN_AGE_SECONDS = 3600
LAYOUT_FILE = "_layout.parquet"
_LAYOUT = re.compile(r"m(\d+)c(\d+)")
_DAY_FILE = re.compile(r"[0-9a-f]{32}\.parquet")
# Columns of a detail row before the metric and component ones.
KEY_COLUMNS = ("account_id", "as_of", "model_version", "segment_model")


@dataclass(frozen=True)
class DetailFile:
    """One day's detail file, by its path in the archive."""

    as_of: dt.date
    file: str
    row_count: int


def detail_positions(columns: t.Iterable[str]) -> tuple[int, int]:
    """How many metric and component positions detail ``columns`` hold (``m<i>_score``,
    ``c<i>_score``)."""
    names = [c for c in columns if c.endswith("_score")]
    return sum(c.startswith("m") for c in names), sum(c.startswith("c") for c in names)


class DetailArchive:
    """The folder of detail files beside a DuckDB store, and its list in ``detail_files``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def layout(self, schema: pa.Schema) -> str:
        """The folder of files with ``schema`` (the store's detail columns), made with its
        empty layout file if it is not there."""
        metrics, components = detail_positions(schema.names)
        name = f"m{metrics}c{components}"
        path = self.folder / name / LAYOUT_FILE
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(schema.empty_table(), path)
            _sync(path)
            _sync_directory(path.parent)
            _sync_directory(self.folder)
        return name

    def layouts(self) -> list[str]:
        """The layout folders there are, narrowest first."""
        if not self.folder.is_dir():
            return []
        widths = {}
        for path in self.folder.iterdir():
            if match := _LAYOUT.fullmatch(path.name):
                widths[path.name] = (int(match[1]), int(match[2]))
        return sorted(widths, key=widths.__getitem__)

    def write(self, details: pa.Table, schema: pa.Schema) -> list[DetailFile]:
        """Write ``details`` (score_details rows of one model version) as one file per date
        with the store's detail columns ``schema``, durable on disk but listed nowhere yet."""
        layout = self.layout(schema)
        details = _widen(details, schema)
        days = pc.unique(details["as_of"]).to_pylist()
        written = []
        for day in sorted(days):
            # A one-day batch (the daily run, each day of a backfill) is written as it is.
            rows = details if len(days) == 1 else details.filter(pc.equal(details["as_of"], day))
            name = f"{layout}/{uuid.uuid4().hex}.parquet"
            # zstd level 1 with dictionaries: the smallest of the encodings measured, at
            # about the cost of the fastest (scores and shares repeat across accounts).
            pq.write_table(rows, self.folder / name, compression="zstd", compression_level=1)
            _sync(self.folder / name)
            written.append(DetailFile(day, name, rows.num_rows))
        _sync_directory(self.folder / layout)  # the new files' entries, once for all
        return written

    def replace(
        self, engine: Engine, version: str, first: dt.date, last: dt.date, new: list[DetailFile]
    ) -> None:
        """In the caller's transaction: unlist the files of ``version`` from ``first`` to
        ``last`` and list ``new``."""
        engine.sql(
            "DELETE FROM detail_files WHERE model_version = ? AND as_of BETWEEN ? AND ?",
            [version, first, last],
        )
        for f in new:
            engine.sql(
                "INSERT INTO detail_files VALUES (?, ?, ?, ?)",
                [version, f.as_of, f.file, f.row_count],
            )

    def sweep(self, engine: Engine) -> list[str]:
        """Delete the day files no transaction lists (replaced, or a failed or killed run's)
        once an hour old; returns them. Layout files and anything not named like a day file
        are left alone."""
        listed = {file for (file,) in engine.sql("SELECT file FROM detail_files")}
        cutoff = time.time() - ORPHAN_AGE_SECONDS
        swept = []
        for layout in self.layouts():
            for path in (self.folder / layout).iterdir():
                name = f"{layout}/{path.name}"
                if (
                    _DAY_FILE.fullmatch(path.name)
                    and name not in listed
                    and path.stat().st_mtime < cutoff
                ):
                    path.unlink(missing_ok=True)
                    swept.append(name)
        return swept

    def missing(self, engine: Engine) -> list[dt.date]:
        """The days whose listed file is not there (a store copied without its folder, files
        deleted by hand): their scores stay, without detail, until restored or rescored."""
        rows = engine.sql("SELECT as_of, file FROM detail_files")
        return sorted({day for day, file in rows if not (self.folder / file).is_file()})

    def selects(self) -> list[str]:
        """SELECTs of the listed rows, one per layout folder. Paths are absolute: the view is
        made again when the store is opened from another place."""
        return [
            f"SELECT * EXCLUDE (filename) FROM read_parquet("
            f"{_literal(str(self.folder / layout / '*.parquet'))}, filename = true) "
            f"WHERE filename IN (SELECT {_literal(str(self.folder) + os.sep)} || file "
            f"FROM detail_files)"
            for layout in self.layouts()
        ]


def archive_of(engine: Engine) -> DetailArchive | None:
    """The detail archive of a store that keeps one (a DuckDB file), else None."""
    folder = engine.detail_folder
    return DetailArchive(folder) if folder is not None else None


def _widen(details: pa.Table, schema: pa.Schema) -> pa.Table:
    """``details`` with every column of ``schema`` (null where the model has no such
    position), in its order."""
    return pa.table(
        {
            field.name: details[field.name]
            if field.name in details.column_names
            else pa.nulls(details.num_rows, field.type)
            for field in schema
        },
        schema=schema,
    )


def _literal(text: str) -> str:
    """A SQL string literal (the project's folder may hold any character)."""
    return sge.convert(text).sql("duckdb")


def _sync(path: Path) -> None:
    """Make a new file's content durable before a commit lists it (its directory entry is
    the caller's to sync)."""
    with open(path, "rb+") as file:
        os.fsync(file.fileno())


def _sync_directory(path: Path) -> None:
    if os.name == "posix":  # a directory can be fsynced only there
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
