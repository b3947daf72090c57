"""The facade's methods for acting on health (docs/playbooks.md): the daily run, playbooks,
tasks, notifications, overrides and the audit log. `Project` inherits them; they use its
store, model and project files, and its score history."""

from __future__ import annotations

import datetime as dt
import typing as t

import pandas as pd

from accounthealth.actions import audit, outbox, overrides, tasks
from accounthealth.actions.daily import DailyReport, daily_run
from accounthealth.actions.outbox import DeliveryReport
from accounthealth.actions.playbook_run import RulesReport, run_rules
from accounthealth.actions.rules import RuleBook
from accounthealth.actions.simulate import Simulation, simulate
from accounthealth.config.playbooks import Playbooks
from accounthealth.errors import ConfigError, NotFoundError, did_you_mean

if t.TYPE_CHECKING:
    from accounthealth.config.loader import LoadedProject
    from accounthealth.engine.base import Engine
    from accounthealth.metrics.definitions import ResolvedModel


class ActingOnHealth:
    """Acting on health, as part of `Project`."""

    if t.TYPE_CHECKING:
        loaded: LoadedProject
        store: Engine
        model: ResolvedModel

        def latest_scored_date(self) -> dt.date: ...
        def latest_data_date(self) -> dt.date: ...
        def scores(
            self, start: dt.date | None = ..., end: dt.date | None = ...
        ) -> pd.DataFrame: ...
        def _history(self) -> t.Any: ...

    def run_rules(
        self, through: dt.date | None = None, *, start: dt.date | None = None
    ) -> RulesReport:
        """Run the playbooks for each scored day since the last run, up to ``through`` (default
        the latest scored date): firings, tasks, notifications (queued), escalations."""
        through = through or self.latest_scored_date()
        # The rule book run_rules builds checks the rules against the model; channels here.
        self._check_channels(self.model.model.effective_playbooks())
        return run_rules(self.store, self.model, through, self.loaded.health.where, start)

    def playbooks(self) -> Playbooks:
        """The playbooks in force, checked against the model (tier names, conditions,
        templates) and, when channels are configured, against the channels."""
        playbooks = self.model.model.effective_playbooks()
        RuleBook(self.model, playbooks, where=self.loaded.health.where)
        self._check_channels(playbooks)
        return playbooks

    def _check_channels(self, playbooks: Playbooks) -> None:
        """Every channel a rule sends through is configured (when any channel is)."""
        channels = self.loaded.config.notifications.channels
        if not channels:
            return
        for name, rule in playbooks.rules.items():
            for via in [n.via for n in rule.notify] + [e.via for e in rule.escalate]:
                if via not in channels:
                    raise ConfigError(
                        f"rule '{name}' sends via '{via}', which is not a channel",
                        where=self.loaded.health.where("playbooks", "rules", name),
                        fix=did_you_mean(via, channels),
                    )

    def simulate_rules(self, start: dt.date, end: dt.date, *, stability: bool = True) -> Simulation:
        """What the playbooks would have done from ``start`` to ``end`` on the stored scores,
        without writing anything; ``stability=False`` turns hysteresis, minimum days and
        cool-downs off, to show what they hold back."""
        return simulate(self.store, self.model, start, end, self.loaded.health.where, stability)

    def deliver(self) -> DeliveryReport:
        """Send queued notifications that are due (retries with backoff)."""
        return outbox.deliver(self.store, self.loaded.config.notifications)

    def run(self, day: dt.date | None = None, *, start: dt.date | None = None) -> DailyReport:
        """The daily job: ingest, score the day (and any day missed since the last run), run
        the playbooks, deliver. Running it twice for a day creates nothing new."""
        return daily_run(self, day, start)

    def tasks(self, **filters: t.Any) -> pd.DataFrame:
        """Tasks (status='active' for all but resolved; owner, account_id, rule)."""
        return tasks.listing(self.store, **filters)

    def task(self, task_id: str) -> dict:
        """One task."""
        return tasks.get(self.store, task_id)

    def add_task(
        self,
        account_id: str,
        title: str,
        *,
        by: str,
        owner: str | None = None,
        due: dt.date | None = None,
        priority: str = "normal",
        kind: str = "manual",
    ) -> str:
        """Create a task by hand; returns its id."""
        return tasks.add(
            self.store,
            account_id,
            title,
            by=by,
            owner=owner,
            due=due,
            priority=priority,
            kind=kind,
            known=self._known_account,
        )

    def update_task(self, task_id: str, action: str, *, by: str, **options: t.Any) -> dict:
        """start, resolve (note=...), snooze (until=...), reopen or reassign (owner=...)."""
        if action == "reassign":
            return tasks.reassign(self.store, task_id, options["owner"], by=by)
        return tasks.move(self.store, task_id, action, by=by, **options)

    def effectiveness(self) -> pd.DataFrame:
        """Per task kind and rule: how scores and tiers moved 30/60/90 days after the tasks,
        against accounts in the same tier on the same days without one, and how long accounts
        waited for a first action."""
        from accounthealth.actions.effectiveness import AFTER, effectiveness

        found = tasks.listing(self.store)
        if found.empty:
            return pd.DataFrame()
        first = pd.Timestamp(found["created_on"].min()).date()
        last = pd.Timestamp(found["created_on"].max()).date() + dt.timedelta(days=max(AFTER))
        columns = ["account_id", "as_of", "score", "tier", "segment_model"]
        return effectiveness(found, self.scores(first, last)[columns], self.model)

    def notifications(
        self, status: str | None = None, account_id: str | None = None
    ) -> pd.DataFrame:
        """The notification outbox, newest first."""
        return outbox.listing(self.store, status, account_id)

    def retry_notifications(self, notification_id: str | None = None) -> int:
        """Queue failed notifications again."""
        return outbox.retry(self.store, notification_id)

    def audit(self, **filters: t.Any) -> pd.DataFrame:
        """The audit log, newest first (account_id, actor, action prefix, since, until, limit)."""
        return audit.entries(self.store, **filters)

    def verify_audit(self) -> tuple[int, int | None]:
        """Check the audit log's hash chain: (entries, first broken entry or None)."""
        return audit.verify(self.store)

    def override(
        self,
        account_id: str,
        *,
        by: str,
        reason: str,
        score: float | None = None,
        tier: str | None = None,
        component: str | None = None,
        starts: dt.date | None = None,
        expires: dt.date | None = None,
    ) -> str:
        """Override an account's score, tier or one component's score from ``starts`` (default
        today) until ``expires`` (default the model's overrides.expiry later); returns its id.
        Rescore the days it covers (the daily run does today) for history to show it."""
        latest = self._known_account(account_id)
        computed = {**latest}
        if latest.get("override_id") is not None and not pd.isna(latest["override_id"]):
            computed |= {"score": latest["computed_score"], "tier": latest["computed_tier"]}
        part = None
        if component is not None:
            parts = self.store.table("component_scores")
            found = self.store.execute(
                parts.filter(
                    (parts.account_id == account_id)
                    & (parts.as_of == latest["as_of"])
                    & (parts.model_version == latest["model_version"])
                    & (parts.component == component)
                ).select("score")
            )
            part = (
                None if found.empty or pd.isna(found["score"].iloc[0]) else found["score"].iloc[0]
            )
        return overrides.create(
            self.store,
            self.model,
            computed,
            by=by,
            reason=reason,
            score=score,
            tier=tier,
            component=component,
            starts=starts,
            expires=expires,
            component_score=part,
        )

    def remove_override(self, override_id: str, *, by: str, reason: str) -> None:
        """End an override now."""
        overrides.remove(self.store, override_id, by=by, reason=reason)

    def overrides(self, **filters: t.Any) -> pd.DataFrame:
        """Overrides, newest first (active_on=date, author, account_id)."""
        return overrides.listing(self.store, **filters)

    def override_review(self, horizon: int = 90) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(per override, per author): active, expired and removed overrides, how far they
        moved the score, and whether the override or the computed score was right about churn
        within ``horizon`` days where that is known."""
        from accounthealth.actions.override_review import review
        from accounthealth.validation.backtest import load_outcomes

        known_until = self.latest_data_date()
        outcomes, _ = load_outcomes(self, "auto", known_until, 30)
        return review(self.store, self.model, outcomes, known_until, dt.date.today(), horizon)

    def _known_account(self, account_id: str) -> dict:
        history = self._history()
        row = self.store.execute(
            history.filter(history.account_id == account_id).order_by(history.as_of.desc()).limit(1)
        )
        if row.empty:
            raise NotFoundError(
                f"no scored account {account_id}",
                where="account",
                fix="check the id with 'accounthealth accounts'",
            )
        return row.iloc[0].to_dict()
