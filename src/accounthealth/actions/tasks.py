"""Tasks: what a CSM should do for an account, created by rules or by hand, and moved through
open -> in progress -> resolved (with an outcome note), or snoozed until a date. Every change
is written together with its audit entry."""

from __future__ import annotations

import datetime as dt
import typing as t
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from accounthealth.actions.audit import Entry, append
from accounthealth.config.playbooks import PRIORITIES
from accounthealth.engine.base import Engine
from accounthealth.errors import AccountHealthError, NotFoundError, did_you_mean

STATUSES = ("open", "in_progress", "resolved", "snoozed")
# Which status each verb moves a task to, and from which statuses it may.
MOVES = {
    "start": ("in_progress", ("open", "snoozed")),
    "resolve": ("resolved", ("open", "in_progress", "snoozed")),
    "snooze": ("snoozed", ("open", "in_progress")),
    "reopen": ("open", ("resolved", "snoozed", "in_progress")),
}


@dataclass(frozen=True)
class NewTask:
    """A task to create (by a rule firing, or by hand with no firing)."""

    account_id: str
    title: str
    owner: str | None
    priority: str
    created_on: dt.date
    due_on: dt.date
    kind: str
    rule: str | None = None
    firing_id: str | None = None


def next_ids(store: Engine, count: int) -> list[str]:
    """``count`` new task ids (T00001, T00002, ...), inside the caller's transaction."""
    last = store.sql("SELECT max(CAST(substr(task_id, 2) AS INTEGER)) FROM tasks")[0][0] or 0
    return [f"T{n:05d}" for n in range(last + 1, last + 1 + count)]


def create(store: Engine, tasks: t.Sequence[NewTask], actor: str) -> list[str]:
    """Write new tasks and their audit entries (inside the caller's transaction); returns ids."""
    if not tasks:
        return []
    now = dt.datetime.now()
    with store.transaction():
        ids = next_ids(store, len(tasks))
        rows = [
            {
                "task_id": task_id,
                "firing_id": task.firing_id,
                "rule": task.rule,
                "kind": task.kind,
                "account_id": task.account_id,
                "title": task.title,
                "owner": task.owner,
                "priority": task.priority,
                "status": "open",
                "created_on": task.created_on,
                "due_on": task.due_on,
                "snoozed_until": None,
                "resolved_on": None,
                "outcome": None,
                "escalations": 0,
                "created_at": now,
                "updated_at": now,
                "first_action_at": None,
            }
            for task_id, task in zip(ids, tasks, strict=True)
        ]
        store.write_arrow("tasks", pa.Table.from_pylist(rows, schema=_SCHEMA))
        append(
            store,
            [
                Entry(
                    actor,
                    "task.created",
                    task_id,
                    task.account_id,
                    {
                        "title": task.title,
                        "owner": task.owner,
                        "rule": task.rule,
                        "due_on": task.due_on,
                        "priority": task.priority,
                    },
                )
                for task_id, task in zip(ids, tasks, strict=True)
            ],
            now,
        )
    return ids


_SCHEMA = pa.schema(
    {
        "task_id": pa.string(),
        "firing_id": pa.string(),
        "rule": pa.string(),
        "kind": pa.string(),
        "account_id": pa.string(),
        "title": pa.string(),
        "owner": pa.string(),
        "priority": pa.string(),
        "status": pa.string(),
        "created_on": pa.date32(),
        "due_on": pa.date32(),
        "snoozed_until": pa.date32(),
        "resolved_on": pa.date32(),
        "outcome": pa.string(),
        "escalations": pa.int32(),
        "created_at": pa.timestamp("us"),
        "updated_at": pa.timestamp("us"),
        "first_action_at": pa.timestamp("us"),
    }
)


def add(
    store: Engine,
    account_id: str,
    title: str,
    *,
    by: str,
    owner: str | None,
    due: dt.date | None,
    priority: str,
    kind: str,
    known: t.Callable[[str], dict[str, t.Any]],
) -> str:
    """Create a task by hand for a scored account (owner: its CSM unless given)."""
    if not title.strip():
        raise AccountHealthError("a task needs a title", where="--title", fix="say what to do")
    if not by.strip():
        raise AccountHealthError("who is adding the task?", where="--by", fix="give your name")
    if priority not in PRIORITIES:
        raise AccountHealthError(
            f"no priority '{priority}'", where="--priority", fix=did_you_mean(priority, PRIORITIES)
        )
    account = known(account_id)
    today = dt.date.today()
    task = NewTask(
        account_id=account_id,
        title=title,
        owner=owner or account.get("owner"),
        priority=priority,
        created_on=today,
        due_on=due or today + dt.timedelta(days=7),
        kind=kind,
    )
    return create(store, [task], by)[0]


def get(store: Engine, task_id: str) -> dict[str, t.Any]:
    """One task as a dict; a clear error when there is no such task."""
    rows = store.execute(store.table("tasks").filter(lambda x: x.task_id == task_id.upper()))
    if rows.empty:
        raise NotFoundError(
            f"no task {task_id}", where="tasks", fix="list tasks with 'accounthealth tasks list'"
        )
    return rows.iloc[0].to_dict()


def move(
    store: Engine,
    task_id: str,
    verb: str,
    *,
    by: str,
    note: str | None = None,
    until: dt.date | None = None,
    today: dt.date | None = None,
) -> dict[str, t.Any]:
    """Start, resolve (with an outcome note), snooze (until a date) or reopen a task."""
    if verb not in MOVES:
        raise AccountHealthError(
            f"cannot '{verb}' a task", where="tasks", fix=did_you_mean(verb, MOVES)
        )
    if not by.strip():
        raise AccountHealthError("who is changing the task?", where="--by", fix="give your name")
    status, allowed = MOVES[verb]
    task = get(store, task_id)
    if task["status"] not in allowed:
        raise AccountHealthError(
            f"task {task['task_id']} is {task['status']}; it cannot be {verb}ed",
            where=task["task_id"],
            fix=f"'{verb}' applies to tasks that are {' or '.join(allowed)}",
        )
    if verb == "resolve" and not (note and note.strip()):
        raise AccountHealthError(
            "a resolved task needs an outcome note",
            where="--note",
            fix="say what was done and how it went, e.g. --note 'QBR held, renewal confirmed'",
        )
    today = today or dt.date.today()
    if verb == "snooze" and (until is None or until <= today):
        raise AccountHealthError(
            "snooze needs a date after today", where="--until", fix="e.g. --until 2026-12-01"
        )
    now = dt.datetime.now()
    first_action = task["first_action_at"]
    first_action = now if first_action is None or pd.isna(first_action) else first_action
    with store.transaction():
        store.sql(
            """UPDATE tasks SET status = ?, updated_at = ?, first_action_at = ?,
                   resolved_on = ?, outcome = ?, snoozed_until = ?
               WHERE task_id = ?""",
            [
                status,
                now,
                first_action,
                today if verb == "resolve" else None,
                note if verb == "resolve" else task["outcome"] if verb != "reopen" else None,
                until if verb == "snooze" else None,
                task["task_id"],
            ],
        )
        details = {"from": task["status"], "to": status, "note": note, "until": until}
        append(
            store,
            [
                Entry(
                    by,
                    f"task.{verb}",
                    task["task_id"],
                    task["account_id"],
                    {k: v for k, v in details.items() if v is not None},
                )
            ],
            now,
        )
    return get(store, task["task_id"])


def reassign(store: Engine, task_id: str, owner: str, *, by: str) -> dict[str, t.Any]:
    """Give a task to someone else."""
    task = get(store, task_id)
    now = dt.datetime.now()
    with store.transaction():
        store.sql(
            "UPDATE tasks SET owner = ?, updated_at = ? WHERE task_id = ?",
            [owner, now, task["task_id"]],
        )
        append(
            store,
            [
                Entry(
                    by,
                    "task.reassigned",
                    task["task_id"],
                    task["account_id"],
                    {"from": task["owner"], "to": owner},
                )
            ],
            now,
        )
    return get(store, task["task_id"])


def wake(store: Engine, day: dt.date) -> int:
    """Snoozed tasks whose date has come are open again (by the daily run)."""
    due = store.sql(
        "SELECT task_id, account_id FROM tasks WHERE status = 'snoozed' AND snoozed_until <= ?",
        [day],
    )
    if due:
        now = dt.datetime.now()
        with store.transaction():
            store.sql(
                "UPDATE tasks SET status = 'open', snoozed_until = NULL, updated_at = ? "
                "WHERE status = 'snoozed' AND snoozed_until <= ?",
                [now, day],
            )
            append(
                store,
                [
                    Entry("accounthealth", "task.woke", task_id, account, {"on": day})
                    for task_id, account in due
                ],
                now,
            )
    return len(due)


def listing(
    store: Engine,
    *,
    status: str | None = None,
    owner: str | None = None,
    account_id: str | None = None,
    rule: str | None = None,
) -> pd.DataFrame:
    """Tasks, most urgent first: by status, owner, account or rule. ``status`` may be 'active'
    (open, in progress or snoozed) or one status."""
    tasks = store.table("tasks")
    if status == "active":
        tasks = tasks.filter(tasks.status != "resolved")
    elif status:
        if status not in STATUSES:
            raise AccountHealthError(
                f"no task status '{status}'",
                where="--status",
                fix=did_you_mean(status, (*STATUSES, "active")),
            )
        tasks = tasks.filter(tasks.status == status)
    if owner:
        tasks = tasks.filter(tasks.owner.lower() == owner.lower())
    if account_id:
        tasks = tasks.filter(tasks.account_id == account_id)
    if rule:
        tasks = tasks.filter(tasks.rule == rule)
    rank = tasks.priority.cases(("urgent", 0), ("high", 1), ("normal", 2), else_=3)
    return store.execute(tasks.order_by([rank, tasks.due_on, tasks.task_id]))


def resolved_since(store: Engine) -> t.Callable[[pd.Series], pd.Series]:
    """For the time-in-tier trigger: per account (the index) and date (the values), whether a
    task of the account was resolved on or after that date."""
    resolved = store.execute(
        store.table("tasks")
        .filter(lambda x: x.resolved_on.notnull())
        .group_by("account_id")
        .aggregate(last=lambda x: x.resolved_on.max())
    )
    last = dict(zip(resolved["account_id"], pd.to_datetime(resolved["last"]).dt.date, strict=True))

    def check(since: pd.Series) -> pd.Series:
        return pd.Series(
            [
                a in last and isinstance(s, dt.date) and last[a] >= s
                for a, s in zip(since.index, since, strict=True)
            ],
            index=since.index,
        )

    return check
