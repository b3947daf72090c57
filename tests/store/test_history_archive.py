"""A DuckDB store keeps each scored day's scores, and its metric and component detail, as
Parquet files beside it, listed in the store's transaction: readers see exactly the committed
days, a failed or killed run leaves no file that counts (and its files go at a later opening),
another opening in the same process does not conflict with a run, and the store and its
folder move together."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
import typing as t
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import accounthealth as ah
from accounthealth.actions import overrides
from accounthealth.scoring import run as run_module
from accounthealth.scoring.finish import final_scores
from accounthealth.store import archive as archive_module
from accounthealth.store import schema
from accounthealth.store import scores as history
from accounthealth.store.archive import CODEC, LAYOUT_FILE, ORPHAN_AGE_SECONDS, HistoryArchive

from builders import (
    CHURNERS,
    ENTERPRISE,
    RETAINERS,
    TRAJECTORY_START,
    Notes,
    churn_book,
    day_files,
    trajectory_project,
)

DAYS = [TRAJECTORY_START + dt.timedelta(days=i) for i in range(4)]
ARCHIVE = "accounthealth.duckdb.details"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = trajectory_project(tmp_path / "p", {"A": [3, 4, 5, 6], "B": [8, 7, 6, 5]})
    with ah.open(path) as p:
        p.ingest()
    return path


def listed(p: ah.Project) -> set[str]:
    return {file for (file,) in p.store.sql("SELECT file FROM detail_files")}


def metric_rows(p: ah.Project) -> dict[tuple[str, dt.date, str], float]:
    rows = p.store.sql("SELECT account_id, as_of, metric, value FROM metric_values")
    return {(a, d, m): v for a, d, m, v in rows}


def score_rows(p: ah.Project) -> dict[tuple[str, dt.date], tuple[float, str, dt.datetime]]:
    rows = p.store.sql("SELECT account_id, as_of, score, tier, computed_at FROM scores")
    return {(a, d): (s, tier, at) for a, d, s, tier, at in rows}


def test_each_day_is_a_scores_file_and_a_detail_file_of_its_version_and_date(
    folder: Path,
) -> None:
    with ah.open(folder) as p:
        p.score(start=DAYS[0], end=DAYS[2])
        version = p.model.version
        files = listed(p)
        values = metric_rows(p)
        scores = score_rows(p)
        assert p.store.sql("SELECT count(*) FROM scores_stored") == [(0,)]
    assert files == day_files(folder)
    keys: dict[str, set[tuple[str, dt.date]]] = {"scores": set(), "m1c1-lean": set()}
    for file in files:
        rows = pq.read_table(folder / ARCHIVE / file).to_pylist()
        assert len(rows) == 2
        keys[file.split("/")[0]] |= {(r["model_version"], r["as_of"]) for r in rows}
        if file.startswith("scores/"):
            assert {(r["account_id"], r["as_of"]): r["score"] for r in rows} == {
                (r["account_id"], r["as_of"]): scores[(r["account_id"], r["as_of"])][0]
                for r in rows
            }
    assert keys["scores"] == keys["m1c1-lean"] == {(version, day) for day in DAYS[:3]}
    # The files hold the detail the scores were computed from (each day's quantity) and
    # the scores themselves: A's use rises day by day, B's falls.
    assert values[("A", DAYS[1], "use_today")] == 4.0
    assert values[("B", DAYS[2], "use_today")] == 6.0
    assert scores[("A", DAYS[0])][0] < scores[("A", DAYS[2])][0]
    assert scores[("B", DAYS[0])][0] > scores[("B", DAYS[2])][0]


def test_each_days_files_keep_the_statistics_that_let_a_read_of_a_date_skip_them(
    folder: Path,
) -> None:
    with ah.open(folder) as p:
        p.score(start=DAYS[0], end=DAYS[1])
        version = p.model.version
    for file in day_files(folder):
        group = pq.ParquetFile(folder / ARCHIVE / file).metadata.row_group(0)
        stats = {
            group.column(i).path_in_schema: group.column(i).statistics
            for i in range(group.num_columns)
        }
        day = pq.read_table(folder / ARCHIVE / file).column("as_of")[0].as_py()
        assert (stats["as_of"].min, stats["as_of"].max) == (day, day)
        assert (stats["model_version"].min, stats["model_version"].max) == (version, version)
        # Compressed as the writer's CPU was measured (store/archive.py).
        codecs = {group.column(i).compression for i in range(group.num_columns)}
        assert codecs == {CODEC.upper()}, file


def test_a_large_days_detail_is_two_files_and_a_runs_last_days_scores_too(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each large day's detail is two files; its scores are, on the run's last day only (the
    one a run waits for at its end). Both read as one day."""
    whole = trajectory_project(tmp_path / "whole", {"A": [3, 4, 5, 6], "B": [8, 7, 6, 5]})
    with ah.open(whole) as p:
        p.ingest()
        p.score(start=DAYS[0], end=DAYS[2])
        expected, scores = metric_rows(p), score_rows(p)
    # Every day "large": its two accounts' detail goes to two files, one row each.
    monkeypatch.setattr(history, "SPLIT_ROWS", 1)
    with ah.open(folder) as p:
        p.score(start=DAYS[0], end=DAYS[2])
        assert metric_rows(p) == expected
        assert _without_times(score_rows(p)) == _without_times(scores)
        files = listed(p)
        p.score(DAYS[1])  # a day alone is its run's last: all four halves replace its files
        assert metric_rows(p) == expected
        assert _without_times(score_rows(p)) == _without_times(scores)
        again = listed(p)
    detail = sorted(f for f in files if not f.startswith("scores/"))
    assert [pq.read_metadata(folder / ARCHIVE / f).num_rows for f in detail] == [1] * 6
    assert _scores_files(folder, files) == {DAYS[0]: [2], DAYS[1]: [2], DAYS[2]: [1, 1]}
    assert _scores_files(folder, again) == {DAYS[0]: [2], DAYS[1]: [1, 1], DAYS[2]: [1, 1]}
    replaced = files - again
    assert len(replaced) == 3  # the day's scores file and its two detail files
    assert len(again) == len(files) + 1


def _scores_files(folder: Path, files: set[str]) -> dict[dt.date, list[int]]:
    """The rows of each scores file of ``files``, by their day."""
    rows: dict[dt.date, list[int]] = {}
    for file in files:
        if file.startswith("scores/"):
            table = pq.read_table(folder / ARCHIVE / file)
            rows.setdefault(table.column("as_of")[0].as_py(), []).append(table.num_rows)
    return {day: sorted(counts) for day, counts in rows.items()}


def _without_times(
    scores: dict[tuple[str, dt.date], tuple[float, str, dt.datetime]],
) -> dict[tuple[str, dt.date], tuple[float, str]]:
    return {key: (score, tier) for key, (score, tier, _) in scores.items()}


DEFAULT, ENTERPRISE_ROWS = ["default"] * 7, ["enterprise"] * 3


@pytest.mark.parametrize(
    ("part_rows", "parts_written", "files"),
    [
        # Each segment's detail written as soon as it is scored, the largest first.
        (1, [1, 3], [DEFAULT, ENTERPRISE_ROWS]),
        # The smaller segment's with the batch's other rows.
        (4, [1, 4], [DEFAULT, ENTERPRISE_ROWS]),
        # Both small: one file of the day's detail.
        (history.PART_ROWS, [3], [DEFAULT + ENTERPRISE_ROWS]),
    ],
)
def test_each_segments_detail_is_written_once_scored_the_largest_first(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    part_rows: int,
    parts_written: list[int],
    files: list[list[str]],
) -> None:
    """A segment's detail files are written while the next segment is scored, the largest
    segment's first since it takes longest to write; those of segments under ``PART_ROWS``
    rows together, with the batch."""
    folder = churn_book(tmp_path / "book")
    day = dt.date(2026, 3, 15)  # every account a customer: 7 by default, 3 enterprise
    steps: list[tuple[str, object]] = []
    real_score, real_part = run_module.score_segment, history.HistoryWriter._write_part
    real_begin = history.HistoryWriter.begin

    def score(grid: t.Any, rows: slice, model: t.Any, *shares: bool) -> t.Any:
        steps.append(("scored", (model.segment, rows.stop - rows.start)))
        return real_score(grid, rows, model, *shares)

    def part(self: history.HistoryWriter, rows: t.Any) -> None:
        steps.append(("part", sorted(rows.column("segment_model").to_pylist())))
        real_part(self, rows)

    def begin(self: history.HistoryWriter, *args: t.Any, **kwargs: t.Any) -> None:
        steps.append(("begin", None))
        real_begin(self, *args, **kwargs)

    monkeypatch.setattr(history, "PART_ROWS", part_rows)
    monkeypatch.setattr(run_module, "score_segment", score)
    monkeypatch.setattr(history.HistoryWriter, "_write_part", part)
    monkeypatch.setattr(history.HistoryWriter, "begin", begin)
    with ah.open(folder) as p:
        p.ingest()
        p.score(day)
        detail = p.store.sql("SELECT account_id, segment_model FROM score_details")
        listed_detail = sorted(f for f in listed(p) if not f.startswith("scores/"))
    assert [step for step in steps if step[0] != "part"] == [
        ("scored", ("default", 7)),
        ("scored", ("enterprise", 3)),
        ("begin", None),
    ]
    assert [i for i, step in enumerate(steps) if step[0] == "part"] == parts_written
    by_file = [
        sorted(pq.read_table(folder / ARCHIVE / f).column("segment_model").to_pylist())
        for f in listed_detail
    ]
    assert sorted(by_file) == files
    assert sorted(detail) == sorted(
        (a, "enterprise" if a in ENTERPRISE else "default") for a in CHURNERS + RETAINERS
    )


def test_rows_handed_over_after_some_too_few_to_write_early_are_written_with_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Detail written early is the batch's first rows: after rows too few to write early, the
    next rows handed over wait for the batch too, however many, and every account's detail
    is written once."""
    folder = churn_book(tmp_path / "book")
    day = dt.date(2026, 3, 15)
    monkeypatch.setattr(history, "PART_ROWS", 4)
    written: list[int] = []
    real_part = history.HistoryWriter._write_part

    def part(self: history.HistoryWriter, rows: t.Any) -> None:
        written.append(rows.num_rows)
        real_part(self, rows)

    monkeypatch.setattr(history.HistoryWriter, "_write_part", part)
    with ah.open(folder) as p:
        p.ingest()
        p.score(day)  # the store's model and layouts
        scored = run_module.score_table(p.compute, p.model, [day])
        assert scored.num_rows == 10
        written.clear()
        with history.HistoryWriter(p.store, p.model) as writer:
            writer.segment_scored(scored.slice(0, 2))  # under PART_ROWS: not written now
            writer.segment_scored(scored.slice(2, 5))  # enough, but after rows waiting
            assert written == []
            writer.begin(scored, [day])
            assert written == [10]  # all the batch's rows, once
            in_force = overrides.in_force(p.store, day, day)
            writer.finish(final_scores(scored, p.model, in_force=in_force))
        detail = p.store.sql("SELECT account_id FROM score_details WHERE as_of = ?", [day])
    assert sorted(a for (a,) in detail) == sorted(CHURNERS + RETAINERS)


@pytest.mark.parametrize(
    ("setting", "write"),
    [
        ("PART_ROWS", "write_detail"),  # a segment's detail, written as soon as it is scored
        ("SPLIT_ROWS", "write_scores"),  # the second half of a run's last day's scores
    ],
)
def test_a_file_of_the_day_failing_to_write_keeps_the_days_history_as_it_was(
    folder: Path, monkeypatch: pytest.MonkeyPatch, setting: str, write: str
) -> None:
    with ah.open(folder) as p:
        p.score(DAYS[0])
        before = (listed(p), metric_rows(p), score_rows(p))
    monkeypatch.setattr(history, setting, 1)
    real = getattr(HistoryArchive, write)

    def full_for_b(archive: HistoryArchive, rows: pa.Table, schema: pa.Schema) -> t.Any:
        if "B" in rows.column("account_id").to_pylist():
            raise OSError("No space left on device")
        return real(archive, rows, schema)

    monkeypatch.setattr(HistoryArchive, write, full_for_b)
    with ah.open(folder) as p, pytest.raises(OSError, match="No space left"):
        p.score(DAYS[0])
    monkeypatch.undo()
    with ah.open(folder) as p:
        assert (listed(p), metric_rows(p), score_rows(p)) == before


def test_a_day_that_fails_to_write_keeps_its_old_scores_and_detail(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ah.open(folder) as p:
        p.score(start=DAYS[0], end=DAYS[1])
        before = (listed(p), metric_rows(p), score_rows(p))
    # The second day fails after its detail file was written, as its scores file is.
    real = history._scores_table
    calls = []

    def fails_second(*args: t.Any) -> t.Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("writing scores failed")
        return real(*args)

    monkeypatch.setattr(history, "_scores_table", fails_second)
    with ah.open(folder) as p, pytest.raises(RuntimeError, match="writing scores failed"):
        p.score(start=DAYS[0], end=DAYS[1])
    monkeypatch.undo()
    with ah.open(folder) as p:
        after = (listed(p), metric_rows(p), score_rows(p))
    # The first day was rescored (new files listed); the second kept its scores and detail.
    assert after[1] == before[1]
    assert after[2][("A", DAYS[1])] == before[2][("A", DAYS[1])]
    assert after[2][("A", DAYS[0])][2] > before[2][("A", DAYS[0])][2]
    assert len(after[0]) == 4 and len(after[0] & before[0]) == 2
    # The replaced files and the failed day's detail file are listed nowhere: an opening an
    # hour later deletes them.
    assert len(day_files(folder, age=ORPHAN_AGE_SECONDS + 60) - after[0]) == 3
    with ah.open(folder) as p:
        p.store  # noqa: B018 - opening the store sweeps
    assert day_files(folder) == after[0]


@pytest.mark.parametrize(
    ("view", "insert"),
    [
        # Rows as a store upgraded from before its seventh migration holds them.
        (
            "score_details",
            "INSERT INTO score_details_stored (account_id, as_of, model_version, "
            "segment_model) VALUES ('A', ?, ?, 'default')",
        ),
        # And from before its eighth.
        (
            "scores",
            "INSERT INTO scores_stored (account_id, as_of, model_version, score) "
            "VALUES ('A', ?, ?, 1.0)",
        ),
    ],
)
def test_rescoring_replaces_history_kept_in_the_table_before_the_archive(
    folder: Path, view: str, insert: str
) -> None:
    with ah.open(folder) as p:
        p.score(DAYS[0])
        version = p.model.version
        for model_version in (version, "older"):
            p.store.sql(insert, [DAYS[1], model_version])
        assert p.store.sql(f"SELECT count(*) FROM {view} WHERE as_of = ?", [DAYS[1]]) == [(2,)]
        p.score(DAYS[1])
        rows = p.store.sql(
            f"SELECT model_version, count(*) FROM {view} WHERE as_of = ? GROUP BY 1", [DAYS[1]]
        )
        in_table = p.store.sql(f"SELECT model_version FROM {view}_stored")
    # This version's day now comes from its file (both accounts); the other version's row stays.
    assert dict(rows) == {version: 2, "older": 1}
    assert in_table == [("older",)]


@pytest.mark.parametrize("kind", ["m1c1-lean", "scores"])
def test_only_old_files_listed_nowhere_are_deleted(folder: Path, kind: str) -> None:
    with ah.open(folder) as p:
        p.score(DAYS[0])
    layout = folder / ARCHIVE / kind
    killed, writing = (layout / f"{uuid.uuid4().hex}.parquet" for _ in range(2))
    notes = layout / "notes.parquet"
    for path in (killed, writing, notes):
        shutil.copy(layout / LAYOUT_FILE, path)
    an_hour_ago = time.time() - ORPHAN_AGE_SECONDS - 60
    for path in (killed, notes, layout / LAYOUT_FILE):
        os.utime(path, (an_hour_ago, an_hour_ago))
    with ah.open(folder) as p:
        assert p.store.sql("SELECT count(*) FROM score_details") == [(2,)]
        assert p.store.sql("SELECT count(*) FROM scores") == [(2,)]
    # A run in this process may be about to list the young file; the others are not day files.
    assert not killed.exists()
    assert writing.exists() and notes.exists() and (layout / LAYOUT_FILE).exists()


def test_another_opening_during_a_run_reads_without_conflict(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ah.open(folder) as p:
        p.score(DAYS[0])
    seen = []
    real = HistoryArchive.replace

    def read_elsewhere(self: HistoryArchive, *args: t.Any) -> None:
        real(self, *args)
        # In the writer thread, the batch's files listed in its transaction, not committed.
        with ah.open(folder) as q:
            seen.append(q.store.sql("SELECT count(*) FROM metric_values")[0][0])
            seen.append(q.store.sql("SELECT count(*) FROM scores")[0][0])

    monkeypatch.setattr(HistoryArchive, "replace", read_elsewhere)
    with ah.open(folder) as p:
        assert p.score(DAYS[1]).rows == 2
        assert p.store.sql("SELECT count(DISTINCT as_of) FROM metric_values") == [(2,)]
        assert p.store.sql("SELECT count(DISTINCT as_of) FROM scores") == [(2,)]
    # The other opening saw the committed day only: not the one being written.
    assert seen == [2, 2]


def test_opening_the_store_again_leaves_its_views_as_they_are(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ah.open(folder) as p:
        p.score(DAYS[0])
    # Redefining a view writes the catalog, which conflicts with another opening's writes.
    defined = []
    real = schema._union_view
    monkeypatch.setattr(
        schema, "_union_view", lambda name, selects: defined.append(name) or real(name, selects)
    )
    with ah.open(folder) as p:
        p.score(DAYS[1])
    assert defined == []
    moved = folder.parent / "moved"
    shutil.move(folder, moved)
    with ah.open(moved) as p:
        assert len(score_rows(p)) == 4
    assert sorted(defined) == ["score_details", "scores"]


def test_a_file_cut_short_by_a_failed_write_breaks_no_read_and_goes_later(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ah.open(folder) as p:
        p.score(DAYS[0])
        before = score_rows(p)

    def cut_short(table: t.Any, where: Path, **options: t.Any) -> None:
        # As a run killed while writing leaves it: a few bytes of a Parquet file.
        Path(where).write_bytes(b"PAR1 cut short")
        raise OSError("killed")

    monkeypatch.setattr(archive_module.pq, "write_table", cut_short)
    with ah.open(folder) as p, pytest.raises(OSError, match="killed"):
        p.score(DAYS[1])
    monkeypatch.undo()
    # The day's scores and detail files, both cut short, under names the views do not read.
    torn = sorted((folder / ARCHIVE).glob("*/*.partial"))
    assert [path.parent.name for path in torn] == ["m1c1-lean", "scores"]
    with ah.open(folder) as p:
        assert score_rows(p) == before
    an_hour_ago = time.time() - ORPHAN_AGE_SECONDS - 60
    for path in torn:
        os.utime(path, (an_hour_ago, an_hour_ago))
    with ah.open(folder) as p:
        assert score_rows(p) == before
    assert not any(path.exists() for path in torn)


def test_a_lost_layout_file_is_made_again_and_the_scores_stay_readable(folder: Path) -> None:
    with ah.open(folder) as p:
        p.score(DAYS[0])
        before = score_rows(p)
    # Copying tools skip files whose names start with an underscore.
    (folder / ARCHIVE / "scores" / LAYOUT_FILE).unlink()
    with ah.open(folder) as p:
        assert score_rows(p) == before
    assert (folder / ARCHIVE / "scores" / LAYOUT_FILE).is_file()


def test_a_model_with_more_metrics_adds_a_layout_and_both_read(folder: Path) -> None:
    with ah.open(folder) as p:
        p.score(DAYS[0])
    model = (folder / "model.yaml").read_text()
    (folder / "model.yaml").write_text(
        model.rstrip()
        + "\n      use_week: {sum: events.quantity, window: 7d,"
        + " score: {linear: {bad: 0, good: 100}}, missing: {default: 0}}\n"
    )
    with ah.open(folder) as p:
        p.score(DAYS[1])
        values = metric_rows(p)
    assert sorted(path.name for path in (folder / ARCHIVE).iterdir()) == [
        "m1c1-lean",
        "m2c1-lean",
        "scores",
    ]
    assert values[("A", DAYS[0], "use_today")] == 3.0
    assert values[("A", DAYS[1], "use_today")] == 4.0
    assert values[("A", DAYS[1], "use_week")] == 7.0


def test_the_store_and_its_folder_move_together(folder: Path, tmp_path: Path) -> None:
    with ah.open(folder) as p:
        p.score(DAYS[0])
        before = (metric_rows(p), score_rows(p))
    moved = tmp_path / "it's moved"
    shutil.move(folder, moved)
    with ah.open(moved) as p:
        assert (metric_rows(p), score_rows(p)) == before
        p.score(DAYS[1])
        assert len(listed(p)) == 4


def test_a_store_copied_without_its_folder_says_what_is_missing_and_rescoring_restores_it(
    folder: Path,
) -> None:
    with ah.open(folder) as p:
        p.score(start=DAYS[0], end=DAYS[1])
        before = metric_rows(p), {k: v[:2] for k, v in score_rows(p).items()}
    shutil.rmtree(folder / ARCHIVE)
    notes = Notes()
    with ah.open(folder, progress=notes) as p:
        assert score_rows(p) == {}
        assert metric_rows(p) == {}
        said_scores, said_detail = notes.lines
        assert "the scores of 2 scored day(s) are missing" in said_scores
        assert "they show no scores" in said_scores
        assert "the metric detail of 2 scored day(s) is missing" in said_detail
        for said in notes.lines:
            assert f"accounthealth score --from {DAYS[0]} --to {DAYS[1]}" in said
        p.score(start=DAYS[0], end=DAYS[1])
        assert (metric_rows(p), {k: v[:2] for k, v in score_rows(p).items()}) == before
    notes = Notes()
    with ah.open(folder, progress=notes) as p:
        p.store  # noqa: B018
    assert notes.lines == []


def test_a_column_full_on_a_day_is_required_in_its_file_and_reads_back_beside_nulls(
    tmp_path: Path,
) -> None:
    # B has a day without a quantity: that day's detail holds a NULL value, the others none.
    path = trajectory_project(tmp_path / "p", {"A": [3, 4, 5], "B": [8, None, 6]})
    with ah.open(path) as p:
        p.ingest()
        p.score(start=DAYS[0], end=DAYS[2])
        values = metric_rows(p)
    assert values == {
        ("A", DAYS[0], "use_today"): 3.0,
        ("A", DAYS[1], "use_today"): 4.0,
        ("A", DAYS[2], "use_today"): 5.0,
        ("B", DAYS[0], "use_today"): 8.0,
        ("B", DAYS[1], "use_today"): None,
        ("B", DAYS[2], "use_today"): 6.0,
    }
    required = {}
    for file in day_files(path):
        if file.startswith("m"):
            schema = pq.ParquetFile(path / ARCHIVE / file).schema
            day = pq.read_table(path / ARCHIVE / file).column("as_of")[0].as_py()
            required[day] = {
                schema.column(i).name
                for i in range(len(schema))
                if schema.column(i).max_definition_level == 0
            }
    assert {day: "m0_value" in names for day, names in required.items()} == {
        DAYS[0]: True,
        DAYS[1]: False,
        DAYS[2]: True,
    }
    assert all({"account_id", "as_of", "m0_score"} <= names for names in required.values())
