"""What the playbooks would have done over past days, on stored scores, writing nothing: the
way to try a rule or a stability setting before it reaches anyone's inbox."""

from __future__ import annotations

import datetime as dt
import typing as t
from collections import Counter
from dataclasses import dataclass, field

from accounthealth.actions import tasks
from accounthealth.actions.playbook_run import WARMUP_DAYS, ScoreSource
from accounthealth.actions.rules import RuleBook
from accounthealth.actions.stability import NO_STABILITY
from accounthealth.engine.base import Engine
from accounthealth.errors import NotFoundError
from accounthealth.metrics.definitions import ResolvedModel


@dataclass
class Simulation:
    """Per rule: firings, tasks and notifications, and conditions held back by cool-downs or
    de-duplication keys."""

    start: dt.date
    end: dt.date
    days: int
    stability: bool
    firings: Counter = field(default_factory=Counter)
    tasks: Counter = field(default_factory=Counter)
    notifications: Counter = field(default_factory=Counter)
    cooled: Counter = field(default_factory=Counter)
    duplicate: Counter = field(default_factory=Counter)
    accounts: int = 0


def simulate(
    store: Engine,
    resolved: ResolvedModel,
    start: dt.date,
    end: dt.date,
    where: t.Callable[..., str],
    stability: bool = True,
) -> Simulation:
    """Replay the playbooks from ``start`` to ``end`` (after a warm-up of the days before)."""
    playbooks = resolved.model.effective_playbooks()
    book = RuleBook(resolved, playbooks, stability=None if stability else NO_STABILITY, where=where)
    source = ScoreSource(store, resolved)
    days = source.dates(start, end)
    if not days:
        raise NotFoundError(
            f"no scores between {start} and {end}",
            where="rules simulate",
            fix=f"score those days first: accounthealth score --from {start} --to {end}",
        )
    result = Simulation(start, end, len(days), stability)
    warm = source.dates(start - dt.timedelta(days=WARMUP_DAYS), start - dt.timedelta(days=1))
    resolved_since = tasks.resolved_since(store)
    fired_accounts: set[str] = set()
    for day in [*warm, *days]:
        outcome = source.step(book, day, resolved_since, act=day >= start)
        for f in outcome.firings:
            rule = playbooks.rules[f.rule]
            result.firings[f.rule] += 1
            result.tasks[f.rule] += rule.task is not None
            result.notifications[f.rule] += len(rule.notify) + sum(
                1 for s in rule.escalate if s.after == 0
            )
            fired_accounts.add(f.account_id)
        result.cooled.update(outcome.cooled)
        result.duplicate.update(outcome.duplicate)
    result.accounts = len(fired_accounts)
    return result
