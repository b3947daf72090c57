"""Run the playbooks over scored days, with state kept in the store.

Each day is one transaction: the rule firings, the tasks and notifications they create,
escalations of tasks left unresolved, the new stable tiers and rule states, the audit entries,
and the record that the day ran. A day that ran is never run again, so a second run for the
same day creates nothing; a crash mid-day leaves the day unrun and the next run does it whole.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from accounthealth.actions import outbox, overrides, tasks
from accounthealth.actions.audit import Entry, append
from accounthealth.actions.rules import DayOutcome, Firing, RuleBook
from accounthealth.actions.stability import STATE_COLUMNS
from accounthealth.actions.templates import render
from accounthealth.config.playbooks import Rule
from accounthealth.engine.base import Engine
from accounthealth.errors import ProjectError
from accounthealth.metrics.definitions import ResolvedModel
from accounthealth.store.scores import current

# The day's facts rules read from the scores table.
SCORE_FACTS = (
    "account_id",
    "as_of",
    "name",
    "segment",
    "segment_model",
    "owner",
    "manager",
    "score",
    "tier",
    "days_to_renewal",
    "arr",
)
# Days replayed without acting before the first run, so tiers have a history to change from.
WARMUP_DAYS = 30
ACTOR = "accounthealth"


@dataclass
class RulesReport:
    """What a run of the playbooks did, per rule."""

    days: list[dt.date] = field(default_factory=list)
    already: list[dt.date] = field(default_factory=list)
    firings: Counter = field(default_factory=Counter)
    tasks: Counter = field(default_factory=Counter)
    notifications: Counter = field(default_factory=Counter)
    escalations: int = 0
    cooled: Counter = field(default_factory=Counter)
    duplicate: Counter = field(default_factory=Counter)
    woke: int = 0


class ScoreSource:
    """Scores of the live model from the store, a day at a time (with the earlier days the
    score-move triggers compare with, and metric and component detail when conditions need
    it)."""

    def __init__(self, store: Engine, resolved: ResolvedModel) -> None:
        self.store = store
        self.version = resolved.version
        self.history = current(store, resolved.version)

    def dates(self, start: dt.date, end: dt.date) -> list[dt.date]:
        h = self.history
        got = self.store.execute(
            h.filter((h.as_of >= start) & (h.as_of <= end)).select("as_of").distinct()
        )
        return sorted(pd.to_datetime(got["as_of"]).dt.date)

    def day(self, day: dt.date, detail: bool) -> pd.DataFrame:
        h = self.history
        frame = self.store.execute(h.filter(h.as_of == day).select(*SCORE_FACTS))
        frame["as_of"] = day
        if detail and not frame.empty:
            frame = frame.merge(self._detail(day), on="account_id", how="left")
        return frame

    def step(
        self,
        book: RuleBook,
        day: dt.date,
        resolved_since: t.Callable[[pd.Series], pd.Series] | None = None,
        act: bool = True,
    ) -> DayOutcome:
        """Advance ``book`` by ``day`` with the day's scores and the earlier ones it needs."""
        today = self.day(day, book.needs_detail())
        earlier = self.earlier(day, book.longest_window())
        return book.step(day, today, earlier, resolved_since=resolved_since, act=act)

    def earlier(self, day: dt.date, days: int) -> pd.DataFrame:
        if days == 0:
            return pd.DataFrame({"account_id": [], "as_of": [], "score": []})
        h = self.history
        start = day - dt.timedelta(days=days)
        frame = self.store.execute(
            h.filter((h.as_of >= start) & (h.as_of < day)).select("account_id", "as_of", "score")
        )
        frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
        return frame

    def _detail(self, day: dt.date) -> pd.DataFrame:
        """Metric values and component scores of the day, one column per name."""
        parts = []
        for view, name, value in (
            ("metric_values", "metric", "value"),
            ("component_scores", "component", "score"),
        ):
            t_ = self.store.table(view)
            long = self.store.execute(
                t_.filter((t_.as_of == day) & (t_.model_version == self.version)).select(
                    "account_id", name, value
                )
            )
            parts.append(
                long.pivot_table(index="account_id", columns=name, values=value, aggfunc="first")
            )
        return pd.concat(parts, axis=1).reset_index()


def run_rules(
    store: Engine,
    resolved: ResolvedModel,
    through: dt.date,
    where: t.Callable[..., str],
    start: dt.date | None = None,
) -> RulesReport:
    """Run the playbooks for every scored day after the last one run, up to ``through``
    (from ``start`` on a first run, else ``through``: the days before are a warm-up)."""
    playbooks = resolved.model.effective_playbooks()
    book = RuleBook(resolved, playbooks, where=where)
    source = ScoreSource(store, resolved)
    report = RulesReport()
    last = store.sql("SELECT max(as_of) FROM rule_runs")[0][0]
    if last is not None and last >= through:
        report.already.append(through)
        return report
    if last is None:
        first = start or through
        warm = source.dates(first - dt.timedelta(days=WARMUP_DAYS), first - dt.timedelta(days=1))
        for day in warm:
            source.step(book, day, act=False)
    else:
        _load_state(store, book)
        first = last + dt.timedelta(days=1)
    days = source.dates(first, through)
    missing = sorted(set(_span(first, through)) - set(days))
    if missing:
        raise ProjectError(
            f"{len(missing)} day(s) between {first} and {through} have no scores "
            f"(first: {missing[0]})",
            where="rules",
            fix=f"score them first: accounthealth score --from {missing[0]} --to {missing[-1]}",
        )
    version = resolved.model.playbooks_version()
    # Read once: a run resolves no task, so the answer holds for all its days.
    resolved_since = tasks.resolved_since(store)
    for day in days:
        report.woke += tasks.wake(store, day)
        outcome = source.step(book, day, resolved_since)
        with store.transaction():
            queued = _act(store, playbooks.rules, outcome, version, report)
            escalated = _escalate(store, playbooks.rules, day)
            report.escalations += escalated
            overrides.log_expired(store, day)
            _save_state(store, book)
            store.sql(
                "INSERT INTO rule_runs VALUES (?, ?, ?, ?, ?, ?)",
                [day, resolved.version, version, dt.datetime.now(), len(outcome.firings),
                 queued + escalated],
            )  # fmt: skip
        report.days.append(day)
        report.cooled.update(outcome.cooled)
        report.duplicate.update(outcome.duplicate)
    return report


def _span(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _act(
    store: Engine,
    rules: t.Mapping[str, Rule],
    outcome: DayOutcome,
    version: str,
    report: RulesReport,
) -> int:
    """Record the day's firings with their tasks, notifications and audit entries; returns
    how many notifications were queued."""
    if not outcome.firings:
        return 0
    now = dt.datetime.now()
    store.write_arrow(
        "rule_firings",
        pa.Table.from_pylist(
            [_firing_row(f, rules[f.rule].when.kind, version, now) for f in outcome.firings]
        ),
    )
    new_tasks = [
        (
            f,
            tasks.NewTask(
                account_id=f.account_id,
                title=render(rule.task.title, f.facts),
                owner=_person(rule.task.owner, f.facts),
                priority=rule.task.priority,
                created_on=f.day,
                due_on=f.day + dt.timedelta(days=rule.task.due),
                kind=rule.task.kind or f.rule,
                rule=f.rule,
                firing_id=f.firing_id,
            ),
        )
        for f in outcome.firings
        if (rule := rules[f.rule]).task is not None
    ]
    ids = tasks.create(store, [task for _, task in new_tasks], ACTOR)
    task_of = {f.firing_id: task_id for (f, _), task_id in zip(new_tasks, ids, strict=True)}
    messages = []
    for f in outcome.firings:
        rule = rules[f.rule]
        task_id = task_of.get(f.firing_id)
        for i, note in enumerate(rule.notify):
            messages.append(
                _message(f, rule, f"{f.key}:notify:{i}", note.via, note.to, note.message, task_id)
            )
        for i, step in enumerate(rule.escalate):
            if step.after == 0:
                messages.append(
                    _message(
                        f,
                        rule,
                        f"{f.key}:escalate:{i}",
                        step.via,
                        step.to,
                        None,
                        task_id,
                        escalation=True,
                    )
                )
        report.firings[f.rule] += 1
        report.tasks[f.rule] += 1 if task_id else 0
    if task_of:
        immediate = {r: sum(1 for s in rule.escalate if s.after == 0) for r, rule in rules.items()}
        for f in outcome.firings:
            if f.firing_id in task_of and immediate[f.rule]:
                store.sql(
                    "UPDATE tasks SET escalations = ? WHERE task_id = ?",
                    [immediate[f.rule], task_of[f.firing_id]],
                )
    outbox.enqueue(store, messages, now)
    for m in messages:
        report.notifications[m.rule] += 1
    append(
        store,
        [
            Entry(
                ACTOR,
                "rule.fired",
                f.rule,
                f.account_id,
                {
                    "on": f.day,
                    "key": f.key,
                    "score": f.facts.get("score"),
                    "tier": f.facts.get("tier"),
                    "previous_tier": f.facts.get("previous_tier"),
                },
            )
            for f in outcome.firings
        ],
        now,
    )
    return len(messages)


def _firing_row(f: Firing, trigger: str, version: str, now: dt.datetime) -> dict[str, t.Any]:
    facts = {k: v for k, v in f.facts.items() if k in _RECORDED}
    return {
        "firing_id": f.firing_id,
        "dedupe_key": f.key,
        "rule": f.rule,
        "account_id": f.account_id,
        "as_of": f.day,
        "trigger": trigger,
        "score": f.facts.get("exact_score"),
        "tier": f.facts.get("tier"),
        "previous_tier": f.facts.get("previous_tier"),
        "details": json.dumps(facts, default=str, sort_keys=True),
        "playbooks_version": version,
        "fired_at": now,
    }


_RECORDED = (
    "name",
    "score",
    "tier",
    "previous_tier",
    "daily_tier",
    "days_in_tier",
    "days_to_renewal",
    "arr",
    "owner",
    "manager",
    "drop",
    "rise",
    "segment",
)


def _person(who: str, facts: t.Mapping[str, t.Any]) -> str | None:
    """The CSM, the manager, or a named role."""
    if who == "csm":
        return facts.get("owner")
    if who == "manager":
        return facts.get("manager")
    return who


def _message(
    f: Firing,
    rule: Rule,
    key: str,
    via: str,
    to: str,
    template: str | None,
    task_id: str | None,
    escalation: bool = False,
) -> outbox.Message:
    title = rule.description or f.rule.replace("_", " ")
    lines = [
        render(template, f.facts) if template else title,
        "",
        render("Account: {name} ({account_id}), CSM {owner}", f.facts),
        render("Health: {score}, {tier} (was {previous_tier})", f.facts),
        render("Renewal in {days_to_renewal} days; ARR {arr}", f.facts),
    ]
    if task_id:
        lines.append(f"Task {task_id}")
    return outbox.Message(
        key=key,
        channel=via,
        recipient=_person(to, f.facts) or f"no {to} for {f.account_id}",
        subject=("Escalation: " if escalation else "") + f"{title}: {f.facts.get('name')}",
        body="\n".join(lines),
        rule=f.rule,
        account_id=f.account_id,
        firing_id=f.firing_id,
        task_id=task_id,
    )


def _escalate(store: Engine, rules: t.Mapping[str, Rule], day: dt.date) -> int:
    """Escalation steps due today for tasks still unresolved (snoozed ones wait)."""
    later = {name: rule for name, rule in rules.items() if any(s.after > 0 for s in rule.escalate)}
    if not later:
        return 0
    table = store.table("tasks")
    firings = store.table("rule_firings").select("firing_id", "details")
    open_ = store.execute(
        table.filter(table.rule.isin(list(later)) & table.status.isin(["open", "in_progress"]))
        .left_join(firings, "firing_id")
        .drop("firing_id_right")
    )
    messages, entries, sent = [], [], 0
    for task in open_.to_dict("records"):
        rule = later[task["rule"]]
        created = pd.Timestamp(task["created_on"]).date()
        level = int(task["escalations"])
        for i, step in enumerate(rule.escalate):
            if step.after == 0 or i < level or (day - created).days < step.after:
                continue
            details = task["details"]
            recorded = json.loads(details) if isinstance(details, str) else {}
            facts = {**recorded, "account_id": task["account_id"]}
            f = Firing(task["rule"], task["account_id"], day, str(task["firing_id"]), facts)
            messages.append(
                _message(
                    f,
                    rule,
                    f"{task['task_id']}:escalate:{i}",
                    step.via,
                    step.to,
                    None,
                    task["task_id"],
                    escalation=True,
                )
            )
            store.sql(
                "UPDATE tasks SET escalations = ? WHERE task_id = ?", [i + 1, task["task_id"]]
            )
            entries.append(
                Entry(
                    ACTOR,
                    "task.escalated",
                    task["task_id"],
                    task["account_id"],
                    {"to": step.to, "after_days": step.after, "on": day},
                )
            )
            sent += 1
            level = i + 1
    outbox.enqueue(store, messages, dt.datetime.now())
    append(store, entries)
    return sent


def _save_state(store: Engine, book: RuleBook) -> None:
    store.sql("DELETE FROM health_states")
    states = book.states.reset_index()
    states["as_of"] = None
    if not states.empty:
        store.write_arrow(
            "health_states",
            pa.Table.from_pandas(
                states[["account_id", "as_of", *STATE_COLUMNS]],
                preserve_index=False,
                schema=_STATE_SCHEMA,
            ),
        )
    store.sql("DELETE FROM rule_states")
    rows = [
        frame.reset_index().assign(rule=name)
        for name, frame in book.rule_states.items()
        if not frame.empty
    ]
    if rows:
        data = pd.concat(rows)[["rule", "account_id", "active", "active_since", "last_fired"]]
        store.write_arrow(
            "rule_states",
            pa.Table.from_pandas(data, preserve_index=False, schema=_RULE_STATE_SCHEMA),
        )


_STATE_SCHEMA = pa.schema(
    {
        "account_id": pa.string(),
        "as_of": pa.date32(),
        "stable_tier": pa.string(),
        "stable_since": pa.date32(),
        "previous_tier": pa.string(),
        "pending_tier": pa.string(),
        "pending_days": pa.int32(),
    }
)
_RULE_STATE_SCHEMA = pa.schema(
    {
        "rule": pa.string(),
        "account_id": pa.string(),
        "active": pa.bool_(),
        "active_since": pa.date32(),
        "last_fired": pa.date32(),
    }
)


def _load_state(store: Engine, book: RuleBook) -> None:
    states = store.execute(store.table("health_states"))
    for column in ("stable_since",):
        states[column] = pd.to_datetime(states[column]).dt.date
    book.states = states.set_index("account_id")[list(STATE_COLUMNS)]
    book.states["pending_days"] = book.states["pending_days"].astype("int64")
    rule_states = store.execute(store.table("rule_states"))
    for column in ("active_since", "last_fired"):
        rule_states[column] = [
            None if pd.isna(v) else pd.Timestamp(v).date() for v in rule_states[column]
        ]
    for name in book.rules:
        mine = rule_states[rule_states["rule"] == name]
        if not mine.empty:
            book.rule_states[name] = mine.set_index("account_id")[
                ["active", "active_since", "last_fired"]
            ]
    keys = store.table("rule_firings").select("dedupe_key")
    book.fired_keys = set(store.execute(keys)["dedupe_key"])
