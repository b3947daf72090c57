"""Evaluate playbook rules one day at a time over every account, vectorised.

A rule's trigger is a condition on the account's day (its stable tier, score moves, time in a
tier, or a filter over score, renewal, metrics and components). A rule *fires* on the day its
condition becomes true, unless the account is in the rule's cool-down or the firing's
de-duplication key has fired before; it then stays fired, without firing again, until the
condition clears.

`RuleBook` holds the state (stable tiers, which rules are active for whom, keys fired) in
memory; `actions.daily` loads it from the store and saves it back, and a simulation runs it
with no store at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import typing as t
from dataclasses import dataclass, field

import ibis
import numpy as np
import pandas as pd

from accounthealth.actions.stability import advance, empty_states, tier_bounds
from accounthealth.actions.templates import FIRING_FACTS, check, render
from accounthealth.config.playbooks import Playbooks, Rule, Stability
from accounthealth.errors import ConfigError, did_you_mean
from accounthealth.metrics.definitions import ResolvedModel
from accounthealth.metrics.filters import Filter, parse_filter

# Columns of the day frame a condition may name, besides metrics and components by name:
# `tier` is the stable tier rules act on, `daily_tier` the day's own.
DAY_COLUMNS = (
    "account_id",
    "name",
    "segment",
    "owner",
    "manager",
    "score",
    "computed_tier",
    "tier",
    "previous_tier",
    "days_in_tier",
    "days_to_renewal",
    "arr",
)


@dataclass
class Firing:
    """One rule firing for one account on one day, with the facts its templates use."""

    rule: str
    account_id: str
    day: dt.date
    key: str
    facts: dict[str, t.Any]

    @property
    def firing_id(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()[:16]


@dataclass
class DayOutcome:
    """What one day's evaluation produced: firings, and per rule the conditions that became
    true but were held back by a cool-down or an already-fired key."""

    day: dt.date
    firings: list[Firing] = field(default_factory=list)
    cooled: dict[str, int] = field(default_factory=dict)
    duplicate: dict[str, int] = field(default_factory=dict)


class RuleBook:
    """The rules of a model with their state, stepped one day at a time."""

    def __init__(
        self,
        resolved: ResolvedModel,
        playbooks: Playbooks,
        *,
        stability: Stability | None = None,
        where: t.Callable[..., str] = lambda *path: ".".join(map(str, path)),
    ) -> None:
        self.resolved = resolved
        self.playbooks = playbooks
        self.stability = stability or playbooks.stability
        self.rules = {n: r for n, r in playbooks.rules.items() if r.enabled}
        self.bounds = tier_bounds(resolved)
        self.states = empty_states()
        self.rule_states: dict[str, pd.DataFrame] = {n: _empty_rule_state() for n in self.rules}
        self.fired_keys: set[str] = set()
        self._con = ibis.duckdb.connect()
        self.filters = self._parse(where)

    # -- checks -----------------------------------------------------------------------------
    def _parse(self, where: t.Callable[..., str]) -> dict[str, dict[str, Filter]]:
        """Parse every condition and check every tier name, before any day is evaluated."""
        tiers = {name for _, name in self.bounds}
        columns = (*DAY_COLUMNS, "renewal_date", *self.resolved.metrics, *self._components())
        filters: dict[str, dict[str, Filter]] = {}
        for name, rule in self.rules.items():
            for tier in rule.when.tiers():
                if tier not in tiers:
                    raise ConfigError(
                        f"rule '{name}' names tier '{tier}', which the model does not have",
                        where=where("playbooks", "rules", name, "when"),
                        fix=did_you_mean(tier, tiers),
                    )
            base = ("playbooks", "rules", name)
            if rule.task:
                check(rule.task.title, (*columns, *FIRING_FACTS), where(*base, "task", "title"))
            for i, note in enumerate(rule.notify):
                if note.message:
                    check(note.message, (*columns, *FIRING_FACTS), where(*base, "notify", i))
            if rule.key:
                check(rule.key, (*columns, *FIRING_FACTS), where(*base, "key"))
            texts = {"condition": rule.when.condition, "if": rule.if_}
            filters[name] = {
                part: parse_filter(
                    text,
                    columns,
                    where(
                        "playbooks",
                        "rules",
                        name,
                        *(("when", "condition") if part == "condition" else ("if",)),
                    ),
                )
                for part, text in texts.items()
                if text
            }
        return filters

    def _components(self) -> list[str]:
        return sorted({c.name for seg in self.resolved.segments for c in seg.components})

    def needs_detail(self) -> bool:
        """Whether some condition reads metric values or component scores."""
        detail = set(self.resolved.metrics) | set(self._components())
        return any(f.columns & detail for fs in self.filters.values() for f in fs.values())

    def longest_window(self) -> int:
        """How many earlier days of scores the score-move triggers compare with."""
        moves = [m.within for r in self.rules.values() for m in (r.when.dropped, r.when.rose) if m]
        return max(moves, default=0)

    # -- one day ----------------------------------------------------------------------------
    def step(
        self,
        day: dt.date,
        today: pd.DataFrame,
        earlier: pd.DataFrame,
        resolved_since: t.Callable[[pd.Series], pd.Series] | None = None,
        act: bool = True,
    ) -> DayOutcome:
        """Advance every account by ``day``.

        ``today`` holds the day's scores (one row per account, with account facts and, when
        `needs_detail`, metric and component columns by name); ``earlier`` the scores of the
        `longest_window` days before (account_id, as_of, score). ``resolved_since`` answers,
        per account and date, whether a task of the account was resolved on or after it.
        With ``act`` false (a warm-up), conditions that are true become active without firing.
        """
        today = today.set_index("account_id", drop=False)
        self.states = advance(self.states, today, day, self.bounds, self.stability)
        frame = self._day_frame(day, today)
        outcome = DayOutcome(day)
        for name, rule in self.rules.items():
            condition = self._condition(name, rule, day, frame, earlier, resolved_since)
            self._fire(name, rule, day, frame, condition, act, outcome)
        return outcome

    def _day_frame(self, day: dt.date, today: pd.DataFrame) -> pd.DataFrame:
        states = self.states.reindex(today.index)
        frame = today.rename(columns={"tier": "daily_tier"}).assign(
            tier=states["stable_tier"],
            previous_tier=states["previous_tier"],
            days_in_tier=[
                (day - since).days if isinstance(since, dt.date) else None
                for since in states["stable_since"]
            ],
            stable_since=states["stable_since"],
        )
        renewal = pd.to_timedelta(frame["days_to_renewal"], unit="D") + pd.Timestamp(day)
        return frame.assign(renewal_date=renewal.dt.date.where(renewal.notna(), None))

    def _condition(
        self,
        name: str,
        rule: Rule,
        day: dt.date,
        frame: pd.DataFrame,
        earlier: pd.DataFrame,
        resolved_since: t.Callable[[pd.Series], pd.Series] | None,
    ) -> pd.Series:
        when = rule.when
        kind = when.kind
        tier, previous = frame["tier"], frame["previous_tier"]
        if kind == "entered":
            hit = (tier == when.entered) & previous.notna() & (previous != when.entered)
            if when.from_:
                hit &= previous.isin(when.from_)
        elif kind == "left":
            hit = (previous == when.left) & tier.notna() & (tier != when.left)
            if when.to:
                hit &= tier.isin(when.to)
        elif kind in ("dropped", "rose"):
            hit = self._moved(kind, when.dropped or when.rose, frame, earlier, day)
        elif kind == "in_tier":
            spec = when.in_tier
            hit = (tier == spec.tier) & (frame["days_in_tier"].fillna(-1) >= spec.days)
            if spec.without_resolved_task and resolved_since is not None and hit.any():
                since = frame.loc[hit, "stable_since"]
                hit.loc[hit] = ~resolved_since(since).reindex(since.index, fill_value=False)
        else:
            hit = self._filter(self.filters[name]["condition"], frame)
        if rule.if_:
            hit &= self._filter(self.filters[name]["if"], frame)
        return hit.fillna(False).astype(bool)

    @staticmethod
    def _moved(
        kind: str, move: t.Any, frame: pd.DataFrame, earlier: pd.DataFrame, day: dt.date
    ) -> pd.Series:
        """Score change against the highest (drop) or lowest (rise) score of the window; the
        points go into the facts as {drop} or {rise}."""
        dates = earlier["as_of"]
        window = earlier[(dates >= day - dt.timedelta(days=move.within)) & (dates < day)]
        grouped = window.groupby("account_id")["score"]
        if kind == "dropped":
            ref = grouped.max().reindex(frame.index)
            change = ref - frame["score"]
        else:
            ref = grouped.min().reindex(frame.index)
            change = frame["score"] - ref
        frame.loc[:, "drop" if kind == "dropped" else "rise"] = change.round().astype("Int64")
        return change >= move.points

    def _filter(self, condition: Filter, frame: pd.DataFrame) -> pd.Series:
        columns = ["account_id", *sorted(condition.columns - {"account_id"})]
        data = frame[columns].reset_index(drop=True)
        table = ibis.memtable(data)
        picked = self._con.execute(table.filter(condition.apply(table)).select("account_id"))
        return frame["account_id"].isin(picked["account_id"])

    def _fire(
        self,
        name: str,
        rule: Rule,
        day: dt.date,
        frame: pd.DataFrame,
        condition: pd.Series,
        act: bool,
        outcome: DayOutcome,
    ) -> None:
        state = self.rule_states[name].reindex(frame.index)
        was_active = state["active"].eq(True)
        rising = condition & ~was_active
        cooldown = rule.cooldown if rule.cooldown is not None else self.stability.cooldown
        last = state["last_fired"]
        cooling = last.notna() & last.map(
            lambda d: isinstance(d, dt.date) and (day - d).days < cooldown
        ).astype(bool)
        fires = rising & ~cooling & act
        outcome.cooled[name] = int((rising & cooling & act).sum())
        fired = pd.Series(False, index=frame.index)
        duplicates = 0
        template = rule.key or "{rule}:{account_id}:{episode}"
        for account in frame.index[fires.to_numpy()]:
            facts = _facts(frame.loc[account], name, day)
            key = render(template, facts)
            if key in self.fired_keys:
                duplicates += 1
                continue
            self.fired_keys.add(key)
            fired[account] = True
            outcome.firings.append(Firing(name, account, day, key, facts))
        outcome.duplicate[name] = duplicates
        new = pd.DataFrame(
            {
                "active": condition,
                "active_since": np.where(
                    rising, day, np.where(condition, state["active_since"], None)
                ),
                "last_fired": np.where(fired, day, last),
            },
            index=frame.index,
        )
        kept = self.rule_states[name]
        kept = kept.loc[kept.index.difference(frame.index)]
        merged = pd.concat([kept, new]) if not kept.empty else new
        # Only accounts with something to remember are kept.
        self.rule_states[name] = merged[merged["active"] | merged["last_fired"].notna()]


def _empty_rule_state() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "active": pd.Series(dtype=bool),
            "active_since": pd.Series(dtype=object),
            "last_fired": pd.Series(dtype=object),
        }
    ).rename_axis("account_id")


def _facts(row: pd.Series, rule: str, day: dt.date) -> dict[str, t.Any]:
    """What templates and the firing record know about the account on the day."""
    facts = {k: (None if _missing(v) else v) for k, v in row.items()}
    score = facts.get("score")
    facts.update(
        rule=rule,
        as_of=day,
        episode=day.isoformat(),
        score=None if score is None else round(float(score)),
        exact_score=score,
    )
    return facts


def _missing(value: t.Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
