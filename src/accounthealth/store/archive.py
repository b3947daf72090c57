"""Metric and component detail of scored days, kept as Parquet files beside a DuckDB store.

A day's detail is one wide row per account: sixteen metrics and three components make 74
columns, most of what a day of history weighs. DuckDB took about 0.6 s to insert one day of the
benchmark's 184,000 accounts and kept 29 MB of it; pyarrow writes the same rows to a
zstd-compressed Parquet file in 0.2 s, and the file is 5 MB. So a DuckDB store keeps each day's
detail as a file under ``<store>.details/`` (``accounthealth.details/`` beside
``accounthealth.duckdb``):

    model_version=<version>/as_of=<date>/<random id>.parquet

The store's ``detail_files`` table says which files are history. A batch writes its files
first, then, in the transaction that writes its scores, lists them and unlists the ones they
replace; once it commits, the replaced files are deleted, and if it fails, its own files are.
So a reader of the ``score_details`` view (``schema.define_details_view``) sees a day's detail
exactly when it sees its scores. A file listed nowhere is left by a run that was killed: it is
deleted when the store is next opened, once it is an hour old (a younger one may belong to a
run still writing in this process).
"""

from __future__ import annotations

import datetime as dt
import os
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
from accounthealth.errors import ProjectError

# The columns a file's path gives (hive partitioning), with their types.
PATH_COLUMNS = {"model_version": "VARCHAR", "as_of": "DATE"}
# Files that no transaction lists are deleted only after this long.
ORPHAN_AGE_SECONDS = 3600


@dataclass(frozen=True)
class DetailFile:
    """One day's detail file of one model version, by its path in the archive."""

    model_version: str
    as_of: dt.date
    file: str
    metrics: int
    components: int
    row_count: int


class DetailArchive:
    """The folder of detail files beside a DuckDB store, and its list in ``detail_files``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write(
        self, details: pa.Table, version: str, metrics: int, components: int
    ) -> list[DetailFile]:
        """Write ``details`` (score_details rows of one model version) as one file per date,
        durable on disk but listed nowhere yet."""
        written = []
        days = pc.unique(details.column("as_of")).to_pylist()
        for day in sorted(days):
            rows = details.filter(pc.equal(details.column("as_of"), day))
            rows = rows.drop_columns(list(PATH_COLUMNS))
            name = f"model_version={version}/as_of={day.isoformat()}/{uuid.uuid4().hex}.parquet"
            path = self.folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            # zstd level 1 with dictionaries: the smallest of the encodings measured, at
            # about the cost of the fastest (scores and shares repeat across accounts).
            pq.write_table(rows, path, compression="zstd", compression_level=1)
            _sync(path)
            written.append(DetailFile(version, day, name, metrics, components, rows.num_rows))
        return written

    def replace(
        self, engine: Engine, version: str, first: dt.date, last: dt.date, new: list[DetailFile]
    ) -> list[str]:
        """In the caller's transaction: unlist the files of ``version`` from ``first`` to
        ``last`` and list ``new``; returns the files unlisted, to delete after commit."""
        old = engine.sql(
            "SELECT file FROM detail_files WHERE model_version = ? AND as_of BETWEEN ? AND ?",
            [version, first, last],
        )
        engine.sql(
            "DELETE FROM detail_files WHERE model_version = ? AND as_of BETWEEN ? AND ?",
            [version, first, last],
        )
        for f in new:
            engine.sql(
                "INSERT INTO detail_files VALUES (?, ?, ?, ?, ?, ?)",
                [f.model_version, f.as_of, f.file, f.metrics, f.components, f.row_count],
            )
        return [file for (file,) in old]

    def delete(self, files: t.Iterable[str]) -> None:
        """Delete files that no committed transaction lists any more."""
        for file in files:
            (self.folder / file).unlink(missing_ok=True)

    def check(self, engine: Engine) -> None:
        """Refuse a store whose listed detail files are not all there (a store copied without
        its archive folder, or files deleted by hand)."""
        listed = [file for (file,) in engine.sql("SELECT file FROM detail_files")]
        missing = [file for file in listed if not (self.folder / file).is_file()]
        if missing:
            raise ProjectError(
                f"{len(missing)} of the {len(listed)} history detail files the store lists are "
                f"missing from {self.folder}, the first {missing[0]}",
                where=str(self.folder),
                fix="the store is its .duckdb file and this folder together: restore the "
                "folder from the same backup as the file",
            )

    def sweep(self, engine: Engine) -> list[str]:
        """Delete the files no transaction listed (a killed run's), once an hour old; returns
        them."""
        if not self.folder.is_dir():
            return []
        listed = {file for (file,) in engine.sql("SELECT file FROM detail_files")}
        cutoff = time.time() - ORPHAN_AGE_SECONDS
        orphans = [
            path.relative_to(self.folder).as_posix()
            for path in self.folder.rglob("*.parquet")
            if path.relative_to(self.folder).as_posix() not in listed
            and path.stat().st_mtime < cutoff
        ]
        self.delete(orphans)
        return orphans

    def source(self, engine: Engine) -> list[str]:
        """SELECTs reading the listed files, one per file layout (a wider model adds columns),
        or none when nothing is listed. Paths are absolute, so they are made again each time
        the store is opened, wherever its folder now is."""
        layouts: dict[tuple[int, int], list[str]] = {}
        rows = engine.sql(
            "SELECT metrics, components, file FROM detail_files ORDER BY model_version, as_of"
        )
        for metrics, components, file in rows:
            layouts.setdefault((metrics, components), []).append(str(self.folder / file))
        types = ", ".join(f"'{name}': {type_}" for name, type_ in PATH_COLUMNS.items())
        return [
            f"SELECT * FROM read_parquet([{', '.join(_literal(p) for p in paths)}], "
            f"hive_partitioning = true, hive_types = {{{types}}})"
            for paths in layouts.values()
        ]


def archive_of(engine: Engine) -> DetailArchive | None:
    """The detail archive of a store that keeps one (a DuckDB file), else None."""
    folder = engine.detail_folder
    return DetailArchive(folder) if folder is not None else None


def _literal(text: str) -> str:
    """A SQL string literal (the project's folder may hold any character)."""
    return sge.convert(text).sql("duckdb")


def _sync(path: Path) -> None:
    """Make a new file and its directory entry durable before a commit lists it."""
    for target, flags in ((path, os.O_RDONLY), (path.parent, os.O_RDONLY | os.O_DIRECTORY)):
        fd = os.open(target, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
