"""Write scored batches to history and read them back.

A batch replaces the rows of its dates and model version in one transaction, so scoring the
same dates again changes no result, and a failed run leaves history as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import threading
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor, wait

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from accounthealth.engine.base import Engine
from accounthealth.metrics.definitions import ResolvedModel
from accounthealth.scoring.finish import FINAL_COLUMNS
from accounthealth.store.archive import DayFile, HistoryArchive, archive_of
from accounthealth.store.derived import DERIVED
from accounthealth.store.model_parts import Positions, detail_columns, record_model
from accounthealth.store.schema import stored_schema

T = t.TypeVar("T")

# The tables a batch replaces rows of. scores_stored and score_details_stored hold history
# where the store keeps no archive of files (PostgreSQL), or written before the archive took
# it (the eighth and seventh migrations); the legacy tables, detail written before the third.
SCORE_TABLES = (
    "scores_stored",
    "score_details_stored",
    "component_scores_legacy",
    "metric_values_legacy",
)


# From how many rows a segment's detail is written as soon as it is scored; smaller ones are
# written with the batch's other rows at ``begin`` (a file each of a few accounts a day would
# pile up in the archive).
PART_ROWS = 10_000
# From how many rows a part of a batch's detail, or a day's scores, is written as two files at
# once (a day of the benchmark's book without segments would be one part: writing it is the
# longest step after scoring, and a single pass ends when it is done).
SPLIT_ROWS = 100_000

# Columns of the scores table as the scoring query gives them, with their types.
SCORED_COLUMNS = {
    "account_id": pa.string(),
    "as_of": pa.date32(),
    "name": pa.string(),
    "segment_model": pa.string(),
    "own_score": pa.float64(),
    "base_score": pa.float64(),
    "renewal_adjustment": pa.float64(),
    "coverage": pa.float64(),
    "arr": pa.float64(),
    "days_to_renewal": pa.int32(),
    "segment": pa.string(),
    "owner": pa.string(),
    "manager": pa.string(),
    "parent_account_id": pa.string(),
}


def _details_table(
    scored: pa.Table, resolved: ResolvedModel, at: Positions, lean: bool = False
) -> pa.Table:
    """score_details rows straight from the scored Arrow rows (no trip through pandas), the
    detail at the version's positions ``at``. ``lean``: without the columns an archive's view
    works out (store/derived.py)."""
    details = {
        "account_id": scored.column("account_id"),
        "as_of": scored.column("as_of").cast(pa.date32()),
        "model_version": pa.repeat(pa.scalar(resolved.version, pa.string()), scored.num_rows),
        "segment_model": scored.column("segment_model"),
    }
    for column, source in detail_columns(at).items():
        if lean and DERIVED.fullmatch(column):
            continue
        values = scored.column(source)
        details[column] = pc.fill_null(values, False) if column.endswith("_present") else values
    return pa.table(details)


def _scores_table(scored: pa.Table, final: pa.Table, resolved: ResolvedModel) -> pa.Table:
    """scores rows: the query's columns from ``scored`` as they are, the final ones from
    ``final`` (the same rows in the same order)."""
    scores = {column: scored.column(column).cast(type_) for column, type_ in SCORED_COLUMNS.items()}
    scores |= {column: final.column(column) for column in FINAL_COLUMNS}
    n = scored.num_rows
    scores["model_version"] = pa.repeat(pa.scalar(resolved.version, pa.string()), n)
    scores["computed_at"] = pa.repeat(pa.scalar(dt.datetime.now(), pa.timestamp("us")), n)
    return pa.table(scores)


class HistoryWriter:
    """Records the model version that scores (``record_model``), then replaces the history of
    each scored batch in one transaction, on a second connection
    to the store (``Engine.writer``) in background threads: while a backfill computes the next
    batch, the last one is written (writing is mostly one core's work; the queries use the
    rest), and within a batch each segment's metric detail is written as soon as the segment
    is scored, while the next is scored and while rollups, trend tiers and overrides are
    applied.

    For each batch: ``segment_scored`` with each segment's scored rows as they come (optional),
    ``begin`` with all the scored rows, then ``finish`` with the final scores. Batches are
    written one after another: ``begin`` waits until the one before is committed, and raises
    its error if it failed. If the caller fails, a batch in flight that has its scores is still
    committed (the days before the failure stay intact), one without them is rolled back, and
    the caller's error is the one raised.
    """

    def __init__(self, store: Engine, resolved: ResolvedModel) -> None:
        self.store, self.resolved = store, resolved
        self.rows = 0
        self._pending: tuple[Future[int], Future[pa.Table]] | None = None
        # The next batch's detail files being written, how many of its first rows they hold,
        # and how many rows of it were handed over (``segment_scored``).
        self._parts: list[Future[list[DayFile]]] = []
        self._parted = self._handed = 0

    def __enter__(self) -> HistoryWriter:
        self._writer = self.store.writer()
        self._archive = archive_of(self.store)
        self._pool = ThreadPoolExecutor(
            1, thread_name_prefix="accounthealth-history", initializer=_yielding
        )
        # The model version recorded (the store's detail columns widened for it), then its
        # positions looked up, on the writer's thread and connection while the caller reads
        # and scores: on the caller's they took 14 ms before a daily run's scoring began. The
        # store's columns are looked up after it (the pool's one thread takes them in turn).
        self._positions = self._pool.submit(record_model, self._writer, self.resolved)
        if self._archive is not None:
            self._schemas = self._pool.submit(self._stored_schemas)
        # A store with an archive writes a batch's detail files in these, beside the scores
        # file written by the batch's own thread.
        self._files = ThreadPoolExecutor(
            2, thread_name_prefix="accounthealth-files", initializer=_yielding
        )
        # And the second half of a large day's scores, beside the first (``_write_scores``).
        self._scores_half = ThreadPoolExecutor(
            1, thread_name_prefix="accounthealth-scores", initializer=_yielding
        )
        return self

    def reading(self, read: t.Callable[[Engine], T]) -> Future[T]:
        """``read`` run with the store on the writer's connection, in its thread, after what
        it looks up for itself: what the caller needs later and can have read meanwhile.
        Before the first batch only: the thread then waits for each batch's final scores."""
        assert self._pending is None, "read before the first batch is begun"
        return self._pool.submit(read, self._writer)

    @property
    def shares(self) -> bool:
        """Whether the detail written holds the metrics' and components' shares and which
        metrics had data (``scoring.combine.SHARES``): not where the store's archive works
        them out as it is read (store/derived.py), so scoring need not."""
        return self._archive is None

    def _stored_schemas(self) -> dict[str, pa.Schema]:
        schemas = {
            table: stored_schema(self._writer, table)
            for table in ("scores_stored", "score_details_stored")
        }
        # Their folders made now, before the detail's threads write into one.
        archive = t.cast(HistoryArchive, self._archive)
        archive.layout(schemas["score_details_stored"])
        archive.scores_layout(schemas["scores_stored"])
        return schemas

    def segment_scored(self, rows: pa.Table) -> None:
        """Hand over the next batch's next rows: one segment's, scored while the others are
        (``scoring.run.scored_rows``, the largest first). Their detail is written now if they
        are ``PART_ROWS`` or more and all rows handed over before them are being written too
        (what is written early is the batch's first rows); else with the rest at ``begin``. A
        store without an archive inserts the whole batch's detail at ``begin``."""
        early = (
            self._archive is not None
            and rows.num_rows >= PART_ROWS
            and self._parted == self._handed
        )
        self._handed += rows.num_rows
        if early:
            self._write_part(rows)

    def _write_part(self, rows: pa.Table) -> None:
        # A large part as two halves at once: a model without segments has one part a day.
        self._parts += [self._files.submit(self._write_detail, half) for half in _halves(rows)]
        self._parted += rows.num_rows

    def _write_detail(self, rows: pa.Table) -> list[DayFile]:
        """Write the detail of some scored ``rows``: made here, not by the caller, whose
        thread scores the next segment (2-6 ms a segment of the benchmark's daily run)."""
        details = _details_table(rows, self.resolved, self._positions.result(), lean=True)
        schema = self._schemas.result()["score_details_stored"]
        return t.cast(HistoryArchive, self._archive).write_detail(details, schema)

    def begin(self, scored: pa.Table, dates: t.Sequence[dt.date], last: bool = False) -> None:
        """Start replacing the history of ``dates`` (consecutive days) with ``scored``, the
        batch's rows from the scoring query (those handed to ``segment_scored`` first): their
        detail now, their scores at ``finish``. ``last``: the run's last batch, whose writes
        it waits for at its end (``_write_scores``)."""
        # What the writer's set-up failed with, raised here before a batch is handed over.
        self._positions.result()
        if self._archive is not None:
            self._schemas.result()
        self._settle()
        assert self._handed <= scored.num_rows, "the rows handed over are the batch's first"
        if self._archive is not None and scored.num_rows > self._parted:
            self._write_part(scored.slice(self._parted))
        parts, self._parts, self._parted, self._handed = self._parts, [], 0, 0
        scores: Future[pa.Table] = Future()
        details = (
            _details_table(scored, self.resolved, self._positions.result())
            if self._archive is None
            else None
        )
        scored = scored.select(list(SCORED_COLUMNS))
        done = self._pool.submit(self._write, details, parts, scored, scores, list(dates), last)
        self._pending = (done, scores)

    def finish(self, final: pa.Table) -> None:
        """Hand over the batch's final columns (scoring/finish.py); the batch commits in the
        background."""
        assert self._pending is not None, "finish() follows begin()"
        self._pending[1].set_result(final)

    def _write(
        self,
        details: pa.Table | None,
        parts: list[Future[list[DayFile]]],
        scored: pa.Table,
        scores: Future[pa.Table],
        dates: list[dt.date],
        last_batch: bool,
    ) -> int:
        engine, version, archive = self._writer, self.resolved.version, self._archive
        first, last = min(dates), max(dates)
        # Files a failure leaves unlisted are the next opening's to delete (store/archive.py):
        # deleting them here could delete what a commit that raised had listed all the same.
        if archive is not None:
            # The scores file is written here as soon as the scores are final, while the
            # detail files may still be being written: a single pass waits for both.
            try:
                rows = self._final(scored, scores)
                schema = self._schemas.result()["scores_stored"]
                halved = last_batch and first == last
                files = [] if rows is None else self._write_scores(rows, schema, halved)
            finally:
                wait(parts)  # none is still writing once the batch is over
            for part in parts:
                files += part.result()
        with engine.transaction():
            for name in SCORE_TABLES:
                # One statement per table: a scan per day would read history 31 times a batch.
                engine.sql(
                    f"DELETE FROM {name} WHERE model_version = ? AND as_of BETWEEN ? AND ?",
                    [version, first, last],
                )
            if archive is not None:
                archive.replace(engine, version, first, last, files)
            else:
                details = t.cast(pa.Table, details)
                if details.num_rows:
                    engine.write_arrow("score_details_stored", details)
                rows = self._final(scored, scores)
                if rows is not None:
                    engine.write_arrow("scores_stored", rows)
        return scored.num_rows

    def _write_scores(self, rows: pa.Table, schema: pa.Schema, halved: bool) -> list[DayFile]:
        """A batch's scores files; where ``halved`` (a run's last batch, of one day), a day of
        ``SPLIT_ROWS`` or more as two halves written at once. Its scores are final only once
        the whole day is scored, so a daily run waits for their file alone at its end, with
        a core to spare (on the benchmark's book one file took 41-42 ms of CPU, 47-58 ms from
        the final scores); a backfill's other days are written while the next is scored,
        both cores busy, as one file each."""
        archive = t.cast(HistoryArchive, self._archive)
        first, *second = _halves(rows) if halved else [rows]
        if not second:
            return archive.write_scores(first, schema)
        # Submitted while the caller is still in the batch (it waits for it in __exit__).
        other = self._scores_half.submit(archive.write_scores, second[0], schema)
        try:
            files = archive.write_scores(first, schema)
        finally:
            wait([other])
        return files + other.result()

    def _final(self, scored: pa.Table, scores: Future[pa.Table]) -> pa.Table | None:
        """The batch's scores rows, once the caller has handed them over (None if the batch
        has none); raises the caller's failure, so the batch is not committed."""
        final = scores.result()
        return None if final.num_rows == 0 else _scores_table(scored, final, self.resolved)

    def _settle(self) -> None:
        if self._pending is not None:
            done, _ = self._pending
            self._pending = None
            self.rows += done.result()

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if self._pending is not None:
                done, scores = self._pending
                if not scores.done():
                    scores.set_exception(RuntimeError("the batch's scores were not handed over"))
                if kind is None:
                    self._settle()
                else:
                    wait([done])
        finally:
            self._pool.shutdown()
            self._files.shutdown()  # with any part of a batch never begun (files unlisted)
            self._scores_half.shutdown()
            self._writer.close()


def _halves(rows: pa.Table) -> list[pa.Table]:
    """``rows`` as two halves to write at once if they are ``SPLIT_ROWS`` or more, else
    whole."""
    if rows.num_rows < SPLIT_ROWS:
        return [rows]
    half = rows.num_rows // 2
    return [rows[:half], rows[half:]]


# How much lower the history writer's threads run than the scoring thread (a nice value).
WRITER_NICENESS = 5


def _yielding() -> None:
    """Lower the calling thread's priority (Linux, where a thread has its own): scoring the
    next day waits for nothing but the CPU, and the writer's three threads took turns with it
    on the benchmark's 2 cores, so a backfill's day took as long as scoring it at half speed;
    a lower priority leaves the writer the time scoring does not use."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):  # not allowed here: the threads run as they are
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICENESS)


def current(engine: Engine, version: str) -> ir.Table:
    """Score history with one row per account and date: the given (live) model version where it
    has scored that date, else the most recently computed version."""
    scores = engine.table("scores")
    rank = ibis.row_number().over(
        ibis.window(
            group_by=[scores.account_id, scores.as_of],
            order_by=[(scores.model_version == version).desc(), scores.computed_at.desc()],
        )
    )
    return scores.mutate(_rank=rank).filter(ibis._._rank == 0).drop("_rank")


def history_for(engine: Engine, version: str, dates: t.Sequence[dt.date]) -> pd.DataFrame:
    """Stored scores on the given dates (for trend comparisons), as_of as dates."""
    if not dates:
        return pd.DataFrame(columns=["account_id", "as_of", "score"])
    table = current(engine, version)
    table = table.filter(table.as_of.isin(list(dates))).select("account_id", "as_of", "score")
    frame = engine.execute(table)
    frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
    return frame
