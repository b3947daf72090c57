"""The commands that act on health: `accounthealth run | rules | tasks | notifications | audit`
(docs/playbooks.md), registered on the app of cli/app.py."""

from __future__ import annotations

import datetime as dt
import typing as t
from pathlib import Path

import pandas as pd
import typer

from accounthealth.cli.app import DateOpt, ProjectOpt, app, date_option, open_project, to_date
from accounthealth.cli.console import console, number, table
from accounthealth.sources.ingest import TableReport

rules_app = typer.Typer(help="Playbook rules: list them, or replay them over past days.")
tasks_app = typer.Typer(help="Tasks for CSMs: list, add, start, resolve, snooze, reopen.")
notes_app = typer.Typer(help="The notification outbox: list, deliver, retry.")
app.add_typer(rules_app, name="rules")
app.add_typer(tasks_app, name="tasks")
app.add_typer(notes_app, name="notifications")

By = t.Annotated[str, typer.Option("--by", help="Your name (recorded in the audit log).")]


def _day(value: t.Any) -> str:
    return "" if value is None or pd.isna(value) else str(pd.Timestamp(value).date())


def _rule_counts(title: str, rows: dict[str, tuple[t.Any, ...]], headers: tuple[str, ...]) -> None:
    out = table("Rule", *headers, title=title, numbers=headers)
    for name, values in rows.items():
        out.add_row(name, *(number(v) for v in values))
    totals = [sum(v[i] for v in rows.values()) for i in range(len(headers))]
    out.add_row("[bold]all rules[/]", *(f"[bold]{number(v)}[/]" for v in totals))
    console.print(out)


def ingest_summary(tables: t.Sequence[TableReport]) -> str:
    """The daily run's line on its ingest: rows loaded, from which tables, and the tables
    with no new file and those read in place (checked, not copied)."""
    in_place = [r.table for r in tables if r.how == "read in place"]
    copied = [r for r in tables if r.how != "read in place"]
    unchanged = [r.table for r in copied if r.how == "unchanged"]
    appended = [r.table for r in copied if r.how == "appended"]
    loaded = sum(r.rows_loaded for r in copied)
    read = len(copied) - len(unchanged)
    summary = f"{loaded:,} rows loaded in {read} table{'' if read == 1 else 's'}"
    if appended:
        summary += f" (new files only: {', '.join(appended)})"
    if unchanged:
        summary += f"; no new file: {', '.join(unchanged)}"
    if in_place:
        summary += f"; read in place: {', '.join(in_place)}"
    return summary


@app.command()
def run(
    project: ProjectOpt = Path("."),
    day: DateOpt = date_option("--date", help="The day to run for (default today)."),
    start: DateOpt = date_option(
        "--from", help="First run only: act from this day (the 30 days before warm up)."
    ),
    schedule: bool = typer.Option(
        False, "--schedule", help="Keep running: once a day at schedule.at of accounthealth.yaml."
    ),
) -> None:
    """The daily job: ingest, score, run the playbooks, deliver notifications."""
    if schedule:
        from accounthealth.actions.daily import scheduled

        with open_project(project) as p:
            at = p.loaded.config.schedule.at
        console.print(f"Running every day at {at}; Ctrl-C stops.")
        scheduled(lambda today: _run_once(project, today, None, keep_going=True), at)
        return
    _run_once(project, to_date(day), to_date(start))


def _run_once(
    project: Path, day: dt.date | None, start: dt.date | None, keep_going: bool = False
) -> None:
    """One daily run and its summary; on the schedule, any failure (a database down, bad data)
    is printed and the next day runs anyway."""
    try:
        with open_project(project) as p:
            report = p.run(day, start=start)
    except Exception as exc:
        if not keep_going:
            raise
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        console.print(f"[bold red]Run for {day} failed:[/] {message}")
        return
    rules = report.rules
    console.print(f"[bold]Daily run for {report.day}[/] ({report.seconds:.1f}s)")
    console.print(f"  ingest: {ingest_summary(report.ingest.tables)}")
    scored = f"{len(report.scored)} day(s)" if report.scored else "nothing new (already scored)"
    console.print(f"  score: {scored}")
    if rules.already:
        console.print(f"  rules: already ran for {rules.already[0]}: nothing new")
    else:
        queued = sum(rules.notifications.values()) + rules.escalations
        console.print(
            f"  rules: {len(rules.days)} day(s), {sum(rules.firings.values()):,} firings, "
            f"{sum(rules.tasks.values()):,} tasks, {queued:,} notifications queued "
            f"({rules.escalations} for tasks unresolved past an escalation step)"
        )
    d = report.delivery
    console.print(
        f"  deliver: {d.delivered} delivered, {d.retrying} to retry, {d.failed} failed, "
        f"{d.held} held"
    )
    for error, count in d.errors.items():
        console.print(f"    [red]{count} x {error}[/]")
    if d.held:
        console.print(
            "    [yellow]held notifications wait for a channel or an address:[/] "
            "'accounthealth notifications list --status held' says why"
        )


@rules_app.command("list")
def rules_list(project: ProjectOpt = Path(".")) -> None:
    """The playbook rules in force, with their triggers and actions."""
    with open_project(project) as p:
        playbooks = p.playbooks()
        default = p.model.model.playbooks is None
    s = playbooks.stability
    console.print(
        f"{'Default playbooks' if default else 'Playbooks of the model'}: hysteresis "
        f"{s.hysteresis:g} points, {s.min_days} day(s) in a new tier, cool-down {s.cooldown} days"
    )
    out = table("Rule", "When", "If", "Actions")
    for name, rule in playbooks.rules.items():
        when = rule.when.model_dump(by_alias=True, exclude_none=True)
        actions = []
        if rule.task:
            actions.append(f"task ({rule.task.priority}, due {rule.task.due}d, {rule.task.owner})")
        actions += [f"notify {n.to} via {n.via}" for n in rule.notify]
        actions += [f"escalate to {e.to} after {e.after}d via {e.via}" for e in rule.escalate]
        out.add_row(name, str(when), rule.if_ or "", "; ".join(actions))
    console.print(out)


@rules_app.command("simulate")
def rules_simulate(
    project: ProjectOpt = Path("."),
    start: DateOpt = date_option("--from", help="First day (default 90 days before --to)."),
    end: DateOpt = date_option("--to", help="Last day (default the latest scored date)."),
    compare: bool = typer.Option(
        True, "--compare/--no-compare", help="Also replay without the stability settings."
    ),
) -> None:
    """Replay the playbooks over stored scores and count what they would have done (nothing is
    written or sent)."""
    with open_project(project) as p:
        last = to_date(end) or p.latest_scored_date()
        first = to_date(start) or last - dt.timedelta(days=89)
        runs = [p.simulate_rules(first, last)]
        if compare:
            runs.append(p.simulate_rules(first, last, stability=False))
        rules = list(p.playbooks().rules)
    sim = runs[0]
    headers = ("Firings", "Tasks", "Notifications", "Held by cool-down")
    rows = {r: (sim.firings[r], sim.tasks[r], sim.notifications[r], sim.cooled[r]) for r in rules}
    if compare:
        headers += ("Firings without stability",)
        rows = {r: (*v, runs[1].firings[r]) for r, v in rows.items()}
    _rule_counts(f"{first} to {last} ({sim.days} days, {sim.accounts:,} accounts)", rows, headers)


@tasks_app.command("list")
def tasks_list(
    project: ProjectOpt = Path("."),
    status: str = typer.Option("active", help="active, open, in_progress, resolved, snoozed."),
    owner: str | None = typer.Option(None, help="Only this owner's tasks."),
    account: str | None = typer.Option(None, help="Only this account's tasks."),
    rule: str | None = typer.Option(None, help="Only tasks this rule created."),
    limit: int = typer.Option(50, help="At most this many."),
) -> None:
    """Tasks, most urgent first."""
    with open_project(project) as p:
        found = p.tasks(status=status, owner=owner, account_id=account, rule=rule)
    out = table(
        "Task",
        "Account",
        "Title",
        "Owner",
        "Priority",
        "Status",
        "Due",
        title=f"{len(found):,} task(s)",
    )
    for row in found.head(limit).itertuples():
        status_ = row.status + (
            f" until {_day(row.snoozed_until)}" if row.status == "snoozed" else ""
        )
        out.add_row(
            row.task_id,
            row.account_id,
            row.title,
            row.owner or "",
            row.priority,
            status_,
            _day(row.due_on),
        )
    console.print(out)


@tasks_app.command("show")
def tasks_show(task_id: str, project: ProjectOpt = Path(".")) -> None:
    """One task with its history from the audit log."""
    with open_project(project) as p:
        task = p.task(task_id)
        history = p.audit(account_id=task["account_id"])
    for key in (
        "task_id",
        "account_id",
        "title",
        "owner",
        "priority",
        "status",
        "rule",
        "created_on",
        "due_on",
        "snoozed_until",
        "resolved_on",
        "outcome",
        "escalations",
    ):
        value = task[key]
        if value is not None and not (isinstance(value, float) and pd.isna(value)):
            console.print(f"[bold]{key.replace('_', ' ')}:[/] {value}")
    mine = history[history["subject"] == task["task_id"]].iloc[::-1]
    for row in mine.itertuples():
        console.print(f"  {row.logged_at:%Y-%m-%d %H:%M} {row.actor}: {row.action} {row.details}")


@tasks_app.command("add")
def tasks_add(
    account: str,
    title: str = typer.Option(..., help="What to do."),
    by: By = "",
    owner: str | None = typer.Option(None, help="Who does it (default the account's CSM)."),
    due: DateOpt = date_option("--due", help="Due date (default in 7 days)."),
    priority: str = typer.Option("normal", help="low, normal, high or urgent."),
    project: ProjectOpt = Path("."),
) -> None:
    """Create a task by hand."""
    with open_project(project) as p:
        task_id = p.add_task(
            account, title, by=by, owner=owner, due=to_date(due), priority=priority
        )
    console.print(f"Created task {task_id}.")


def _move(verb: str, task_id: str, by: str, project: Path, **options: t.Any) -> None:
    with open_project(project) as p:
        task = p.update_task(task_id, verb, by=by, **options)
    console.print(f"Task {task['task_id']} is now {task['status']}.")


@tasks_app.command("start")
def tasks_start(task_id: str, by: By = "", project: ProjectOpt = Path(".")) -> None:
    """Mark a task in progress."""
    _move("start", task_id, by, project)


@tasks_app.command("resolve")
def tasks_resolve(
    task_id: str,
    note: str = typer.Option(..., "--note", help="The outcome: what was done, how it went."),
    by: By = "",
    project: ProjectOpt = Path("."),
) -> None:
    """Resolve a task with an outcome note (it counts as action for the time-in-Red rule)."""
    _move("resolve", task_id, by, project, note=note)


@tasks_app.command("snooze")
def tasks_snooze(
    task_id: str,
    until: DateOpt = date_option("--until", help="Snoozed until this date."),
    by: By = "",
    project: ProjectOpt = Path("."),
) -> None:
    """Put a task aside until a date (it reopens then)."""
    _move("snooze", task_id, by, project, until=to_date(until))


@tasks_app.command("reopen")
def tasks_reopen(task_id: str, by: By = "", project: ProjectOpt = Path(".")) -> None:
    """Open a resolved or snoozed task again."""
    _move("reopen", task_id, by, project)


@tasks_app.command("assign")
def tasks_assign(
    task_id: str,
    owner: str = typer.Option(..., "--to", help="The new owner."),
    by: By = "",
    project: ProjectOpt = Path("."),
) -> None:
    """Give a task to someone else."""
    _move("reassign", task_id, by, project, owner=owner)


@tasks_app.command("effectiveness")
def tasks_effectiveness(project: ProjectOpt = Path(".")) -> None:
    """How scores and tiers moved after each kind of task, against accounts in the same tier
    with no task, and how long accounts waited for a first action."""
    with open_project(project) as p:
        found = p.effectiveness()
    if found.empty:
        console.print("No tasks yet.")
        return
    out = table("Kind", "Rule", "Tasks", "Resolved", "Days to 1st action", "Waiting",
                *(f"Score +{d}d (baseline)" for d in (30, 60, 90)), "Tier better +90d",
                title="After the tasks")  # fmt: skip
    for r in found.to_dict("records"):
        changes = [
            f"{number(r[f'score_change_{d}d'], 1, signed=True)} "
            f"({number(r[f'baseline_change_{d}d'], 1, signed=True)}) n={r[f'n_{d}d']}"
            for d in (30, 60, 90)
        ]
        out.add_row(
            r["kind"],
            r["rule"],
            str(r["tasks"]),
            f"{r['resolved']:.0%}",
            number(r["median_days_to_first_action"], 1),
            str(r["waiting"]),
            *changes,
            "" if pd.isna(r["tier_improved_90d"]) else f"{r['tier_improved_90d']:.0%}",
        )
    console.print(out)
    console.print(
        "Score change: mean points from the day the task was created; baseline: accounts in "
        "the same tier on the same days with no task. What followed, not proof of cause."
    )


@notes_app.command("list")
def notifications_list(
    project: ProjectOpt = Path("."),
    status: str | None = typer.Option(None, help="pending, delivered, failed or held."),
    account: str | None = typer.Option(None, help="Only this account's."),
    limit: int = typer.Option(50, help="At most this many."),
) -> None:
    """Notifications, newest first, with why any is held or failing."""
    with open_project(project) as p:
        found = p.notifications(status, account)
    counts = found["status"].value_counts().to_dict()
    summary = ", ".join(f"{counts[s]:,} {s}" for s in counts)
    out = table(
        "Id",
        "Rule",
        "Account",
        "Channel",
        "To",
        "Status",
        "Tries",
        "Why",
        title=f"{len(found):,} notification(s): {summary}",
        optional=("Why", "Tries", "To"),
    )
    for row in found.head(limit).itertuples():
        out.add_row(
            row.notification_id,
            row.rule or "",
            row.account_id or "",
            row.channel,
            row.recipient,
            row.status,
            str(row.attempts),
            row.last_error or "",
        )
    console.print(out)


@notes_app.command("deliver")
def notifications_deliver(project: ProjectOpt = Path(".")) -> None:
    """Send what is due now (the daily run does this too)."""
    with open_project(project) as p:
        d = p.deliver()
    console.print(
        f"{d.delivered} delivered, {d.retrying} to retry, {d.failed} failed, {d.held} held"
    )


@notes_app.command("retry")
def notifications_retry(
    notification_id: str | None = typer.Argument(None, help="One notification (default all)."),
    project: ProjectOpt = Path("."),
) -> None:
    """Queue failed notifications again."""
    with open_project(project) as p:
        count = p.retry_notifications(notification_id)
    console.print(f"{count} failed notification(s) queued again.")


@app.command()
def audit(
    project: ProjectOpt = Path("."),
    account: str | None = typer.Option(None, help="Only this account."),
    actor: str | None = typer.Option(None, help="Only changes by this person."),
    action: str | None = typer.Option(None, help="Action or prefix: task., override., rule."),
    since: DateOpt = date_option("--since", help="From this date."),
    until: DateOpt = date_option("--until", help="To this date."),
    limit: int = typer.Option(50, help="At most this many."),
    verify: bool = typer.Option(False, "--verify", help="Check that no entry was altered."),
) -> None:
    """The append-only audit log, newest first."""
    with open_project(project) as p:
        if verify:
            count, broken = p.verify_audit()
            if broken is None:
                console.print(f"Audit log intact: {count:,} entries, hash chain verified.")
                return
            from accounthealth.errors import ProjectError

            raise ProjectError(
                f"the audit log was altered at entry {broken}",
                where="audit_log",
                fix="restore the store from a backup; entries are never to be updated or deleted",
            )
        found = p.audit(
            account_id=account,
            actor=actor,
            action=action,
            since=to_date(since),
            until=to_date(until),
            limit=limit,
        )
    out = table(
        "#", "When", "Who", "Action", "Subject", "Account", "Details", optional=("Details", "Who")
    )
    for row in found.itertuples():
        out.add_row(
            str(row.entry_id),
            f"{row.logged_at:%Y-%m-%d %H:%M}",
            row.actor,
            row.action,
            row.subject,
            row.account_id or "",
            row.details,
        )
    console.print(out)


overrides_app = typer.Typer(help="Score overrides: set (with a reason), list, remove, review.")
app.add_typer(overrides_app, name="overrides")


@overrides_app.command("set")
def overrides_set(
    account: str,
    reason: str = typer.Option(..., "--reason", help="Why the computed health is wrong."),
    by: By = "",
    score: float | None = typer.Option(None, help="The score to use instead (0-100)."),
    tier: str | None = typer.Option(None, help="The tier to use instead."),
    component: str | None = typer.Option(None, help="Override this component's score."),
    starts: DateOpt = date_option("--from", help="First day (default today)."),
    expires: DateOpt = date_option("--expires", help="Ends on this day (default: expiry)."),
    project: ProjectOpt = Path("."),
) -> None:
    """Override an account's score, tier or one component's score, with a written reason."""
    with open_project(project) as p:
        override_id = p.override(
            account, by=by, reason=reason, score=score, tier=tier, component=component,
            starts=to_date(starts), expires=to_date(expires),
        )  # fmt: skip
        row = p.overrides(account_id=account).iloc[0]
        latest = p.latest_scored_date()
        first, end = pd.Timestamp(row["starts_on"]).date(), pd.Timestamp(row["expires_on"]).date()
        if first <= latest < end:
            p.score(latest)  # the latest day shows it at once; later days as they are scored
    console.print(f"Override {override_id} on {account} from {first} until {end} (not included).")
    if first < latest:
        console.print(
            f"Earlier scored days keep their scores: rescore them with 'accounthealth score "
            f"--from {first} --to {latest}' to show the override in history."
        )


@overrides_app.command("list")
def overrides_list(
    project: ProjectOpt = Path("."),
    active: bool = typer.Option(False, "--active", help="Only those in force today."),
    author: str | None = typer.Option(None, help="Only this author's."),
    account: str | None = typer.Option(None, help="Only this account's."),
) -> None:
    """Overrides, newest first."""
    with open_project(project) as p:
        found = p.overrides(
            active_on=dt.date.today() if active else None, author=author, account_id=account
        )
    out = table("Id", "Account", "Sets", "Reason", "Author", "From", "Until", "Removed",
                title=f"{len(found):,} override(s)")  # fmt: skip
    for row in found.itertuples():
        sets = (
            f"tier {row.tier}" if row.target == "tier"
            else f"{row.component} {row.score:g}" if row.target == "component"
            else f"score {row.score:g}"
        )  # fmt: skip
        removed = f"{_day(row.removed_at)} by {row.removed_by}" if row.removed_by else ""
        out.add_row(row.override_id, row.account_id, sets, row.reason, row.author,
                    _day(row.starts_on), _day(row.expires_on), removed)  # fmt: skip
    console.print(out)


@overrides_app.command("remove")
def overrides_remove(
    override_id: str,
    reason: str = typer.Option(..., "--reason", help="Why it ends now."),
    by: By = "",
    project: ProjectOpt = Path("."),
) -> None:
    """End an override now (it stays on record)."""
    with open_project(project) as p:
        p.remove_override(override_id, by=by, reason=reason)
    console.print(f"Override {override_id} removed; rescore to update the latest day.")


@overrides_app.command("review")
def overrides_review(
    project: ProjectOpt = Path("."),
    horizon: int = typer.Option(90, help="Days after an override's start its outcome counts."),
) -> None:
    """Overrides by CSM: how many, how far they moved health, and who was right about churn."""
    with open_project(project) as p:
        rows, by_author = p.override_review(horizon)
    if rows.empty:
        console.print("No overrides yet.")
        return
    out = table("Author", "Active", "Expired", "Removed", "Mean points moved", "Judged",
                "Override right", "Computed right", title="Overrides by author")  # fmt: skip
    for r in by_author.itertuples():
        out.add_row(r.author, str(r.active), str(r.expired), str(r.removed),
                    number(r.mean_points, 1, signed=True), str(r.judged),
                    str(r.override_right), str(r.computed_right))  # fmt: skip
    console.print(out)
    console.print(
        f"Judged: overrides whose account churned within {horizon} days of the start, or "
        f"stayed {horizon} days; an override that lowered health was right if it churned."
    )
