"""The command line end to end on a small demo project, as a user runs it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

END = dt.date(2026, 6, 30)


def run(
    *args: str, cwd: Path, ok: bool = True, columns: int = 200
) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI (the same entry point a user gets) in a terminal ``columns``
    wide."""
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1"}
    cmd = [sys.executable, "-c", "from accounthealth.cli.app import main; main()", *args]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    if ok:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    run("init", "demo", "--demo", "--accounts", "150", "--years", "1", "--end", str(END), cwd=root)
    project = root / "demo"
    out = run("ingest", cwd=project).stdout
    assert "events" in out and "tickets" in out
    # The demo ships 4 deliberately bad ticket rows; ingest reports and keeps them.
    assert "tickets: " in out and "rejected" in out
    return project


def test_init_creates_a_project(demo: Path) -> None:
    assert (demo / "accounthealth.yaml").exists()
    assert (demo / "model.yaml").exists()
    ignored = (demo / ".gitignore").read_text().splitlines()
    assert {".accounthealth-cache/", "*.duckdb", "*.details/"} <= set(ignored)
    assert (demo / "accounthealth.duckdb").exists()
    assert run("check", cwd=demo).stdout.startswith("OK: model")


def test_rejects_are_listed_with_file_line_and_reason(demo: Path) -> None:
    out = run("rejects", cwd=demo).stdout
    assert "tickets.csv" in out
    assert "unknown account_id" in out


def test_score_backfill_accounts_explain_export(demo: Path) -> None:
    out = run("score", "--as-of", str(END), cwd=demo).stdout
    assert f"for {END}" in out
    out = run(
        "score", "--from", str(END - dt.timedelta(days=40)), "--to", str(END), cwd=demo
    ).stdout
    assert "(41 days)" in out

    out = run("accounts", "--limit", "0", cwd=demo).stdout
    assert f"Accounts on {END}" in out
    assert "Δ30d" in out
    # An 80-column terminal: within it, the same figures, a note for what is left out.
    narrow = run("accounts", "--limit", "0", cwd=demo, columns=80).stdout
    assert max(len(line) for line in narrow.splitlines()) <= 80
    # Whole: every line of the table ends with its right border, none cut by the terminal.
    framed = [line for line in narrow.splitlines() if line[:1] in "┏┃┡│└"]
    assert framed and all(line.rstrip()[-1] in "┓┃┩│┘" for line in framed)
    assert "Left out to fit 80 columns: Segment" in " ".join(narrow.split())
    wide_rows, narrow_rows = _rows(out), _rows(narrow)
    assert wide_rows.keys() == narrow_rows.keys() and len(wide_rows) > 100
    for account, cells in narrow_rows.items():
        for column in ("Score", "Tier", "Δ7d", "ARR"):
            assert cells[column] == wide_rows[account][column], (account, column)
    red = run("accounts", "--tier", "red", "--limit", "0", cwd=demo).stdout
    for tier in ("Green", "Yellow"):
        assert tier not in red

    account = out.split("A0", 1)[1][:4]
    out = run("explain", f"A0{account}", cwd=demo).stdout
    assert "Score" in out and "coverage" in out
    assert "since" in out  # drivers of change vs the previous day and 30 days ago
    assert "Latest data:" in out

    target = demo / "export" / "scores.parquet"
    run(
        "export",
        "scores",
        "--format",
        "parquet",
        "-o",
        str(target),
        "--from",
        str(END - dt.timedelta(days=6)),
        cwd=demo,
    )
    frame = pd.read_parquet(target)
    assert sorted(set(frame["as_of"].astype(str))) == [
        str(END - dt.timedelta(days=i)) for i in range(6, -1, -1)
    ]
    assert frame["score"].between(0, 100).all()

    # The backfill kept its running values: the next day carries them on, and says so.
    out = run("score", "--as-of", str(END + dt.timedelta(days=1)), cwd=demo).stdout
    assert f"Carried on from the running values kept of {END}." in out


def _rows(out: str) -> dict[str, dict[str, str]]:
    """A printed table's rows by their first cell, each cell by its column's header."""
    lines = out.splitlines()
    headers = [h.strip() for h in next(x for x in lines if x.startswith("┃")).split("┃")[1:-1]]
    return {
        cells[0]: dict(zip(headers, cells, strict=True))
        for line in lines
        if line.startswith("│")
        for cells in [[c.strip() for c in line.split("│")[1:-1]]]
    }


def test_rerunning_ingest_and_score_changes_nothing(demo: Path) -> None:
    def snapshot() -> pd.DataFrame:
        target = demo / "snapshot.csv"
        run("export", "metrics", "--format", "csv", "-o", str(target), cwd=demo)
        return pd.read_csv(target).sort_values(["as_of", "account_id", "metric"])

    run("score", "--as-of", str(END), cwd=demo)
    before = snapshot()
    run("ingest", cwd=demo)
    run("score", "--as-of", str(END), cwd=demo)
    after = snapshot()
    pd.testing.assert_frame_equal(before.reset_index(drop=True), after.reset_index(drop=True))


def test_errors_print_what_where_and_how_without_traceback(demo: Path) -> None:
    model = demo / "model.yaml"
    original = model.read_text()
    try:
        model.write_text(original.replace("count: tickets", "count: tickts", 1))
        result = run("score", cwd=demo, ok=False)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert "model.yaml:" in result.stderr
        assert "unknown table 'tickts'" in result.stderr
        assert "did you mean 'tickets'" in result.stderr
    finally:
        model.write_text(original)
    result = run("explain", "NOPE", cwd=demo, ok=False)
    assert "'NOPE' is not a known account" in result.stderr
