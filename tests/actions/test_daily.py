"""The daily run against the store: firings become tasks, notifications and audit entries;
escalations wait on unresolved tasks; running a day twice creates nothing; a day that fails
half-way leaves nothing of itself."""

from __future__ import annotations

import datetime as dt
import typing as t
from pathlib import Path

import pytest

import accounthealth as ah
from accounthealth.actions import outbox
from accounthealth.actions.daily import next_run, scheduled
from conftest import LAST, channels, day, set_notifications

TABLES = ("tasks", "notifications", "rule_firings", "audit_log", "rule_runs")


def counts(project: ah.Project) -> dict[str, int]:
    return {name: project.store.sql(f"SELECT count(*) FROM {name}")[0][0] for name in TABLES}


def test_run_creates_tasks_notifications_and_escalations_once(book: Path) -> None:
    with ah.open(book) as p:
        report = p.run(LAST, start=day(0))
        assert len(report.scored) == 15 and len(report.rules.days) == 15
        firings = p.store.execute(p.store.table("rule_firings").order_by(["as_of", "rule"]))
        got = [(r.rule, r.account_id, r.as_of.date()) for r in firings.itertuples()]
        assert got == [
            ("drop", "A", day(5)),
            ("red", "A", day(5)),
            ("drop", "C", day(6)),
            ("red", "C", day(6)),
            ("stuck", "A", day(11)),
        ]
        tasks = p.tasks(status="open")
        assert sorted(tasks["title"]) == ["Company A is Red (20)", "Company C is Red (25)"]
        assert set(tasks["owner"]) == {"Ana"} and set(tasks["priority"]) == {"urgent"}
        # A's task (day 5) and C's (day 6) were open 3 days on: both escalated to the VP.
        assert set(tasks["escalations"]) == {1}
        notes = p.notifications()
        by_rule = notes.groupby("rule")["recipient"].apply(sorted).to_dict()
        assert by_rule == {
            "drop": ["Ana", "Ana"],
            "red": ["Max", "Max", "vp", "vp"],
            "stuck": ["executive"],
        }
        # No channel is configured yet: held, with the reason, not lost.
        assert set(notes["status"]) == {"held"}
        reasons = set(notes.loc[notes["rule"] == "red", "last_error"])
        assert reasons == {f"no channel '{c}' in accounthealth.yaml notifications.channels"
                           for c in ("mail", "hook")}  # fmt: skip
        before = counts(p)
        again = p.run(LAST)
        assert again.rules.already == [LAST] and again.scored == ()
        assert counts(p) == before
        actions = p.audit()["action"].value_counts().to_dict()
        assert actions == {"rule.fired": 5, "task.created": 2, "task.escalated": 2}
        assert p.verify_audit() == (9, None)


def test_a_resolved_task_stops_the_time_in_red_escalation(book: Path) -> None:
    with ah.open(book) as p:
        p.run(day(8), start=day(0))
        task = p.tasks(account_id="A").iloc[0]
        p.update_task(task["task_id"], "start", by="Ana", today=day(8))
        p.update_task(task["task_id"], "resolve", by="Ana", note="Call held, plan agreed",
                      today=day(9))  # fmt: skip
        p.run(LAST)
        stuck = p.store.sql("SELECT account_id FROM rule_firings WHERE rule = 'stuck'")
        assert stuck == []  # A was Red 10 days, but its task was resolved on day 9
        audit = p.audit(account_id="A", action="task.")
        assert list(audit["action"])[:2] == ["task.resolve", "task.start"]
        assert set(audit["actor"]) == {"Ana", "accounthealth"}


def test_a_failing_day_leaves_nothing_and_the_rerun_is_complete(
    book: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = tmp_path / "clean"
    import shutil

    shutil.copytree(book, clean)
    with ah.open(clean) as p:
        p.run(LAST, start=day(0))
        expected = counts(p)
    real = outbox.enqueue

    def crash_on_day_6(store: t.Any, messages: t.Sequence[outbox.Message], now: t.Any) -> int:
        if any(m.account_id == "C" for m in messages):
            raise RuntimeError("killed")
        return real(store, messages, now)

    monkeypatch.setattr(outbox, "enqueue", crash_on_day_6)
    with ah.open(book) as p, pytest.raises(RuntimeError, match="killed"):
        p.run(LAST, start=day(0))
    with ah.open(book) as p:
        ran = [r[0] for r in p.store.sql("SELECT as_of FROM rule_runs ORDER BY as_of")]
        assert ran[-1] == day(5)  # day 6 rolled back whole: no firing, task or entry of it
        assert p.store.sql("SELECT count(*) FROM rule_firings WHERE as_of = ?", [day(6)]) == [(0,)]
        assert p.tasks(account_id="C").empty
    monkeypatch.setattr(outbox, "enqueue", real)
    with ah.open(book) as p:
        p.run(LAST)
        assert counts(p) == expected


def test_tasks_by_hand_and_their_rules(book: Path) -> None:
    with ah.open(book) as p:
        p.run(day(3), start=day(0))
        task_id = p.add_task("B", "QBR prep", by="Lee", due=day(20), priority="high")
        with pytest.raises(ah.AccountHealthError, match="outcome note"):
            p.update_task(task_id, "resolve", by="Lee")
        with pytest.raises(ah.AccountHealthError, match="date after today"):
            p.update_task(task_id, "snooze", by="Lee", until=dt.date(2000, 1, 1))
        with pytest.raises(ah.AccountHealthError, match="cannot be reopened"):
            p.update_task(task_id, "reopen", by="Lee")
        with pytest.raises(ah.AccountHealthError, match="no scored account"):
            p.add_task("ZZZ", "x", by="Lee")
        p.update_task(task_id, "snooze", by="Lee", until=day(6), today=day(3))
        assert p.task(task_id)["status"] == "snoozed"
        p.update_task(task_id, "reassign", by="Lee", owner="Kim")
        p.run(day(6))  # the snooze ends on day 6
        task = p.task(task_id)
        assert (task["status"], task["owner"], task["priority"]) == ("open", "Kim", "high")
        actions = list(p.audit(account_id="B")["action"])
        assert actions == ["task.woke", "task.reassigned", "task.snooze", "task.created"]


def test_the_scheduler_runs_the_job_each_day_at_its_time() -> None:
    assert next_run(dt.datetime(2026, 11, 23, 5, 0), "06:00") == dt.datetime(2026, 11, 23, 6)
    assert next_run(dt.datetime(2026, 11, 23, 6, 0), "06:00") == dt.datetime(2026, 11, 24, 6)
    now = [dt.datetime(2026, 11, 23, 7, 30)]
    slept, ran = [], []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += dt.timedelta(seconds=seconds)

    scheduled(ran.append, "06:00", clock=lambda: now[0], sleep=sleep, runs=2)
    assert ran == [dt.date(2026, 11, 24), dt.date(2026, 11, 25)]
    assert slept == [22.5 * 3600, 24 * 3600]


def test_channels_and_directory_are_checked(book: Path) -> None:
    set_notifications(book, channels(25, "http://127.0.0.1:1/x", "http://127.0.0.1:1/y"))
    model = (book / "model.yaml").read_text().replace("via: chat", "via: chatt")
    (book / "model.yaml").write_text(model)
    with ah.open(book) as p, pytest.raises(ah.ConfigError, match="did you mean 'chat'"):
        p.playbooks()


def test_the_same_day_on_a_postgresql_store(book: Path, postgres_server: t.Any) -> None:
    import yaml

    file = book / "accounthealth.yaml"
    config = yaml.safe_load(file.read_text())
    config["store"] = {"postgres": postgres_server.new_database()}
    file.write_text(yaml.safe_dump(config, sort_keys=False))
    with ah.open(book) as p:
        assert p.store.kind == "postgres"
        p.run(LAST, start=day(0))
        firings = p.store.sql("SELECT rule, account_id, as_of FROM rule_firings ORDER BY 3, 1")
        assert [(r, a, d) for r, a, d in firings] == [
            ("drop", "A", day(5)), ("red", "A", day(5)), ("drop", "C", day(6)),
            ("red", "C", day(6)), ("stuck", "A", day(11)),
        ]  # fmt: skip
        task = p.tasks(account_id="C").iloc[0]["task_id"]
        p.update_task(task, "resolve", by="Ana", note="Fixed the integration")
        oid = p.override("B", by="Ana", reason="Budget freeze", tier="Red", starts=day(14))
        p.score(LAST)
        b = p.accounts(LAST, tier="Red").set_index("account_id").loc["B"]
        assert (b["override_id"], b["computed_tier"]) == (oid, "Green")
        before = counts(p)
        p.run(LAST)
        assert counts(p) == before
        assert p.verify_audit() == (11, None)
