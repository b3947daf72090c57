"""Scored days kept as Parquet files beside a DuckDB store: each day's scores and its metric
and component detail.

A day's detail is one wide row per account: sixteen metrics and three components make 74
columns, most of what a day of history weighs. DuckDB took about 0.67 s to insert one day of
the benchmark's 184,000 accounts and kept 29 MB of it; pyarrow writes the same rows to a
Parquet file in about 0.14 s of CPU, and the file is 7 MB. A day's scores (23 columns) took
DuckDB 0.33-0.41 s to insert and a checkpoint's share more; as a file they take about 0.05 s
and 8 MB. So a DuckDB store keeps each day as files in the folder named after it
(``accounthealth.duckdb.details/``):

    scores/<random id>.parquet                    the day's scores (two for a run's large last day)
    m<metrics>c<components>-lean/<random id>.parquet  the day's detail (a file or more)

one detail folder per width of the store's detail columns (a model with more metrics widens
them); each folder has an empty ``_layout.parquet`` that gives its columns when no day has
one yet. A day's detail may be in several files, each of some of its accounts: the history
writer (store/scores.py) writes each segment's as soon as it is scored, a large one as two
halves at once.

A detail file holds each metric's value and score and each component's score, not what
follows from them and the model: whether a metric had data and the shares of the score, which
the view works out as it reads (store/derived.py). They were 35 of a day's 74 columns and a
third of the CPU of writing them; one-day runs of the benchmark's book took 0.474 s without
them against 0.498 s (medians of ten, in turns). Folders without ``-lean``, written before,
hold them and are read as they are.

The store's ``detail_files`` table says which files are history (both kinds: its name is
older than the scores' files). A batch writes its files first, then lists them and unlists
the ones they replace in one transaction. The ``scores`` and ``score_details`` views
(``schema.define_archive_views``) read only listed files, so a reader sees a day's scores
and detail together or not at all, and the views themselves change only when the store
widens or moves (a catalog write in every batch would conflict with anything else writing
the catalog in the process). Files listed nowhere (replaced ones, a failed or killed run's)
are deleted when the store is next opened, once an hour old: a reader may still be reading a
file just replaced, and a run in the same process may be about to list a new one.
"""

from __future__ import annotations

import contextlib
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
from accounthealth.store.derived import LEAN, derived_select, lean

# Files listed nowhere are deleted only after this long.
ORPHAN_AGE_SECONDS = 3600
LAYOUT_FILE = "_layout.parquet"
SCORES_FOLDER = "scores"
_LAYOUT = re.compile(rf"m(\d+)c(\d+)({LEAN})?")
_COMPONENT_SCORE = re.compile(r"c\d+_score")
# A day file, or one being written: files get their name only once complete, since the views
# read every file their pattern matches (a torn one there would break every read).
_DAY_FILE = re.compile(r"[0-9a-f]{32}\.parquet(\.partial)?")
# The history files' compression. Writing them is most of a backfill's CPU, and its days wait
# for the writer: on the benchmark's book Snappy wrote a day's detail in 133 ms of CPU and its
# scores in 46 ms, where zstd at level 1 took 162 and 62 ms, and 90-day backfills took
# 22.5-23.5 s against 24.8-25.9 s (three each, in turns). The files are a quarter larger (a day
# 15.6 MB against 12.4 MB). LZ4 did about as well; every Parquet reader reads Snappy.
CODEC = "snappy"
# Columns of a detail row before the metric and component ones.
KEY_COLUMNS = ("account_id", "as_of", "model_version", "segment_model")
# The columns whose Parquet statistics a day file keeps: the views' filters on a date or a
# model version skip whole files by them. A file is one row group whose other columns span
# every account and value, so their statistics would skip nothing; the strings' cost most to
# compute (a day's scores file took 0.083 s of CPU without them against 0.095 s).
STATISTICS = ("as_of", "model_version", "segment_model")


@dataclass(frozen=True)
class DayFile:
    """One day's scores or detail file, by its path in the archive."""

    as_of: dt.date
    file: str
    row_count: int


@dataclass(frozen=True)
class MissingDays:
    """Listed days whose files are not there, by what they held."""

    scores: list[dt.date]
    detail: list[dt.date]


def detail_positions(columns: t.Iterable[str]) -> tuple[int, int]:
    """How many metric and component positions detail ``columns`` hold (``m<i>_score``,
    ``c<i>_score``)."""
    names = [c for c in columns if c.endswith("_score")]
    return sum(c.startswith("m") for c in names), sum(c.startswith("c") for c in names)


class HistoryArchive:
    """The folder of score and detail files beside a DuckDB store, and its list in
    ``detail_files``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def layout(self, schema: pa.Schema) -> str:
        """The folder of detail files of the store's detail columns ``schema`` (less those
        derived, ``lean``), made with its empty layout file if it is not there."""
        metrics, components = detail_positions(schema.names)
        return self._made(f"m{metrics}c{components}{LEAN}", lean(schema))

    def scores_layout(self, schema: pa.Schema) -> str:
        """The folder of score files (``schema``: the store's score columns), made with its
        empty layout file if it is not there."""
        return self._made(SCORES_FOLDER, schema)

    def _made(self, name: str, schema: pa.Schema) -> str:
        path = self.folder / name / LAYOUT_FILE
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_whole(schema.empty_table(), path)
            _sync_directory(path.parent)
            _sync_directory(self.folder)
        return name

    def layouts(self) -> list[str]:
        """The detail layout folders there are, narrowest first."""
        if not self.folder.is_dir():
            return []
        widths = {}
        for path in self.folder.iterdir():
            if match := _LAYOUT.fullmatch(path.name):
                widths[path.name] = (int(match[1]), int(match[2]))
        return sorted(widths, key=widths.__getitem__)

    def write_detail(self, details: pa.Table, schema: pa.Schema) -> list[DayFile]:
        """Write ``details`` (score_details rows of one model version, without the derived
        columns) as a file per date with the store's detail columns ``schema`` but those,
        durable on disk but listed nowhere yet."""
        folder, rows = self.layout(schema), _widen(details, lean(schema))
        # Dictionaries where values repeat across accounts (metric values and scores): a
        # fraction of the size for little time. Not on account ids and component scores,
        # nearly all distinct: there a dictionary cost twice the time and made the file larger
        # (on half a day of the benchmark's detail: 23 and 28 ms against 10 and 16 ms).
        repeating = [
            name
            for name in rows.column_names
            if name != "account_id" and not _COMPONENT_SCORE.fullmatch(name)
        ]
        return self._write_days(folder, rows, repeating)

    def write_scores(self, scores: pa.Table, schema: pa.Schema) -> list[DayFile]:
        """Write ``scores`` (scores rows of one model version) as one file per date with the
        store's score columns ``schema``, durable on disk but listed nowhere yet."""
        # Dictionaries only where values repeat across accounts (tiers, owners, segments):
        # on ids, names and continuous scores they cost time and save nothing (0.14 s a day
        # of the benchmark with them everywhere, 0.08 s without them there, and smaller; both
        # measured with zstd).
        repeating = [
            field.name
            for field in schema
            if field.name not in ("account_id", "name") and not pa.types.is_floating(field.type)
        ]
        return self._write_days(self.scores_layout(schema), _widen(scores, schema), repeating)

    def _write_days(self, folder: str, rows: pa.Table, dictionaries: list[str]) -> list[DayFile]:
        days = pc.unique(rows["as_of"]).to_pylist()
        written = []
        for day in sorted(days):
            # A one-day batch (the daily run, each day of a backfill) is written as it is.
            day_rows = rows if len(days) == 1 else rows.filter(pc.equal(rows["as_of"], day))
            name = f"{folder}/{uuid.uuid4().hex}.parquet"
            _write_whole(
                _required_where_full(day_rows),
                self.folder / name,
                compression=CODEC,
                use_dictionary=dictionaries,
                write_statistics=[c for c in STATISTICS if c in day_rows.column_names],
            )
            written.append(DayFile(day, name, day_rows.num_rows))
        _sync_directory(self.folder / folder)  # the new files' entries, once for all
        return written

    def replace(
        self, engine: Engine, version: str, first: dt.date, last: dt.date, new: list[DayFile]
    ) -> None:
        """In the caller's transaction: unlist the files of ``version`` from ``first`` to
        ``last`` (scores and detail) and list ``new``."""
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
        folders = self.layouts() + (
            [SCORES_FOLDER] if (self.folder / SCORES_FOLDER).is_dir() else []
        )
        for folder in folders:
            for path in (self.folder / folder).iterdir():
                name = f"{folder}/{path.name}"
                if (
                    _DAY_FILE.fullmatch(path.name)
                    and name not in listed
                    and path.stat().st_mtime < cutoff
                ):
                    path.unlink(missing_ok=True)
                    swept.append(name)
        return swept

    def missing(self, engine: Engine) -> MissingDays:
        """The days whose listed files are not there (a store copied without its folder,
        files deleted by hand), scores and detail apart: until restored or rescored, a day
        without its scores file has no scores, and one without its detail file has scores
        without detail."""
        rows = engine.sql("SELECT as_of, file FROM detail_files")
        gone = [(day, file) for day, file in rows if not (self.folder / file).is_file()]
        scores = {day for day, file in gone if file.startswith(f"{SCORES_FOLDER}/")}
        detail = {day for day, file in gone if not file.startswith(f"{SCORES_FOLDER}/")}
        return MissingDays(scores=sorted(scores), detail=sorted(detail))

    def selects(self) -> list[str]:
        """SELECTs of the listed detail rows, one per layout folder. Paths are absolute: the
        view is made again when the store is opened from another place."""
        selects = []
        for layout in self.layouts():
            match = t.cast(re.Match[str], _LAYOUT.fullmatch(layout))
            listed = self._listed(layout)
            selects.append(
                derived_select(listed, int(match[1]), int(match[2])) if match[3] else listed
            )
        return selects

    def scores_selects(self) -> list[str]:
        """The SELECT of the listed score rows (their folder made with ``scores_layout``)."""
        return [self._listed(SCORES_FOLDER)]

    def _listed(self, folder: str) -> str:
        return (
            f"SELECT * EXCLUDE (filename) FROM read_parquet("
            f"{_literal(str(self.folder / folder / '*.parquet'))}, filename = true) "
            f"WHERE filename IN (SELECT {_literal(str(self.folder) + os.sep)} || file "
            f"FROM detail_files)"
        )


def archive_of(engine: Engine) -> HistoryArchive | None:
    """The history archive of a store that keeps one (a DuckDB file), else None."""
    folder = engine.detail_folder
    return HistoryArchive(folder) if folder is not None else None


def _widen(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """``rows`` with every column of ``schema`` (null where, say, the model has no such
    detail position), in its order."""
    return pa.table(
        {
            field.name: rows[field.name]
            if field.name in rows.column_names
            else pa.nulls(rows.num_rows, field.type)
            for field in schema
        },
        schema=schema,
    )


def _required_where_full(rows: pa.Table) -> pa.Table:
    """``rows`` with the columns that hold no NULL marked required (the same data): a file
    then stores no definition levels for them. Writing half a day of the benchmark's detail
    took a median of 160 ms of CPU against 179 ms, and its scores 114 ms against 131 ms (30
    writes each, in turns), the files no larger. Readers take a required column for a
    nullable one of its type, so days written either way read as one."""
    fields = [
        field.with_nullable(rows.column(i).null_count > 0) for i, field in enumerate(rows.schema)
    ]
    return pa.Table.from_arrays(rows.columns, schema=pa.schema(fields, rows.schema.metadata))


def _literal(text: str) -> str:
    """A SQL string literal (the project's folder may hold any character)."""
    return sge.convert(text).sql("duckdb")


def _write_whole(table: pa.Table, path: Path, **options: t.Any) -> None:
    """Write a Parquet file under a name the views do not read, make its content durable,
    then give it its own name: a run killed while writing leaves no torn file where the
    views read (the caller syncs the directory entry before a commit lists the file). Once
    durable, its pages leave the system's file cache (where it can say so): history is read
    later, if at all, and a backfill's 1.4 GB of it would otherwise push out what the engine
    reads (the store, the sources). The next file then reuses those pages. On the benchmark's
    virtual machine, which hands the pages no one uses back to its host, new ones cost about
    2.4 ms a MB to take: 90-day backfills took 20.2-20.7 s with it against 20.8-21.5 s, with
    3.2-3.4 s of system time against 5.1-5.6 s (three each, in turns). What reads a day just
    written (the daily job's playbooks) reads its 15 MB from disk."""
    partial = path.with_name(path.name + ".partial")
    pq.write_table(table, partial, **options)
    with open(partial, "rb+") as file:
        os.fsync(file.fileno())
        # Only advice: not on macOS or Windows, and a refusal fails nothing.
        if hasattr(os, "posix_fadvise"):
            with contextlib.suppress(OSError):
                os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    os.replace(partial, path)


def _sync_directory(path: Path) -> None:
    if os.name == "posix":  # a directory can be fsynced only there
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
