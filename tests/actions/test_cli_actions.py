"""The action commands as a user runs them: run, rules, tasks, notifications, audit."""

from __future__ import annotations

import os
import subprocess
import sys
import typing as t
from pathlib import Path

from accounthealth.cli.actions import ingest_summary
from accounthealth.sources.ingest import TableReport
from conftest import LAST, day


def cli(*args: str, cwd: Path, ok: bool = True) -> str:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    cmd = [sys.executable, "-c", "from accounthealth.cli.app import main; main()", *args]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_a_csm_day_from_the_command_line(book: Path) -> None:
    out = cli("run", "--date", str(LAST), "--from", str(day(0)), cwd=book)
    assert "rules: 15 day(s), 5 firings, 2 tasks, 7 notifications queued (2 for tasks" in out
    assert "7 held" in out
    assert "ingest: 51 rows loaded in 3 tables\n" in out
    again = cli("run", "--date", str(LAST), cwd=book)
    assert "already ran" in again
    # Only accounts are read again: the other sources have no new file.
    assert "ingest: 3 rows loaded in 1 table; no new file: contracts, events" in again
    assert "3 playbook rule(s)" in cli("check", cwd=book)
    rules = cli("rules", "list", cwd=book)
    assert "escalate to vp after 3d via hook" in rules
    sim = cli("rules", "simulate", "--from", str(day(0)), "--to", str(LAST), cwd=book)
    assert "all rules" in sim and "Firings without stability" in sim
    tasks = cli("tasks", "list", cwd=book)
    assert "T00001" in tasks and "Company A is Red (20)" in tasks
    refused = cli("tasks", "resolve", "T00001", "--note", " ", "--by", "Ana", cwd=book, ok=False)
    assert "a resolved task needs an outcome note" in refused
    cli("tasks", "resolve", "T00001", "--note", "Call held", "--by", "Ana", cwd=book)
    shown = cli("tasks", "show", "T00001", cwd=book)
    assert "status: resolved" in shown and "Ana: task.resolve" in shown
    held = cli("notifications", "list", "--status", "held", cwd=book)
    assert "no channel 'mail'" in held
    audit = cli("audit", "--actor", "Ana", cwd=book)
    assert "task.resolve" in audit and "rule.fired" not in audit
    assert "hash chain verified" in cli("audit", "--verify", cwd=book)


def test_overrides_from_the_command_line(book: Path) -> None:
    cli("ingest", cwd=book)
    cli("score", "--from", str(day(0)), "--to", str(LAST), cwd=book)
    refused = cli("overrides", "set", "B", "--tier", "Red", "--reason", "", "--by", "Ana", cwd=book,
                  ok=False)  # fmt: skip
    assert "an override needs a written reason" in refused
    out = cli("overrides", "set", "B", "--tier", "Red", "--reason", "Champion left", "--by", "Ana",
              "--from", str(day(10)), cwd=book)  # fmt: skip
    assert "Earlier scored days keep their scores" in out
    listed = cli("overrides", "list", cwd=book)
    assert "tier Red" in listed and "Champion left" in listed
    accounts = cli("accounts", "--tier", "red", cwd=book)
    assert "(computed Green, override)" in accounts
    assert "Overridden by Ana" in cli("explain", "B", cwd=book)
    review = cli("overrides", "review", cwd=book)
    assert "Overrides by author" in review


def test_an_altered_audit_entry_is_found(book: Path) -> None:
    import accounthealth as ah

    with ah.open(book) as p:
        p.run(LAST, start=day(0))
        assert p.verify_audit() == (9, None)
        p.store.sql("UPDATE audit_log SET actor = 'someone else' WHERE entry_id = 4")
        assert p.verify_audit() == (9, 4)
        p.store.sql("DELETE FROM audit_log WHERE entry_id = 6")
        assert p.verify_audit()[1] == 4
    out = cli("audit", "--verify", cwd=book, ok=False)
    assert "the audit log was altered at entry 4" in out


def test_a_failed_scheduled_day_does_not_stop_the_schedule(tmp_path: Path, capsys: t.Any) -> None:
    import datetime as dt

    from accounthealth.actions.daily import scheduled
    from accounthealth.cli.actions import _run_once

    now = [dt.datetime(2026, 11, 23, 7)]

    def sleep(seconds: float) -> None:
        now[0] += dt.timedelta(seconds=seconds)

    missing = tmp_path / "no-project"
    scheduled(lambda d: _run_once(missing, d, None, keep_going=True), "06:00",
              clock=lambda: now[0], sleep=sleep, runs=2)  # fmt: skip
    out = capsys.readouterr().out
    assert out.count("failed:") == 2 and "no accounthealth.yaml" in out


def test_the_daily_runs_ingest_line_names_the_tables_read_in_place() -> None:
    tables = [
        TableReport("accounts", ("accounts.csv",), 3, 3, 0, {}),
        TableReport("contracts", ("contracts.csv",), 0, 0, 0, {}, "unchanged"),
        # Checked where it is: 20 rows "loaded" but none copied.
        TableReport("events", (), 20, 20, 0, {}, "read in place"),
    ]
    assert ingest_summary(tables) == (
        "3 rows loaded in 1 table; no new file: contracts; read in place: events"
    )
