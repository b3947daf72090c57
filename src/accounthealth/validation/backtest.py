"""The backtest: score every account point-in-time on a grid of past dates with one model,
pair each score with what happened afterwards, and report how well the score predicted it.

The model under test rescores the whole period, so a model changed mid-period is judged as if
it had always been live; the stored history (with its own model versions) is not read.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t
from dataclasses import dataclass, field

import pandas as pd

from accounthealth.errors import AccountHealthError, did_you_mean
from accounthealth.metrics.definitions import ResolvedModel
from accounthealth.validation import measures
from accounthealth.validation.observations import before_outcomes, label
from accounthealth.validation.outcomes import OUTCOMES, from_contracts, from_table
from accounthealth.validation.signals import analyse

if t.TYPE_CHECKING:
    from accounthealth.project import Project

SOURCES = ("auto", "contracts", "table")
ALL = "all"


@dataclass(frozen=True)
class BacktestOptions:
    """What to backtest: observation dates every ``every`` days from ``start`` to ``end``
    (default: from the first data plus the model's longest window, to the last data), churn
    within ``horizon`` days, and where outcomes come from."""

    horizon: int = 90
    start: dt.date | None = None
    end: dt.date | None = None
    every: int = 14
    segment: str | None = None
    outcomes: str = "auto"
    grace: int = 30
    reps: int = 200
    days_before: tuple[int, ...] = (90, 60, 30)
    seed: int = 0


@dataclass
class Backtest:
    """The figures (JSON-ready) and the labelled observations they were computed from."""

    figures: dict
    observations: pd.DataFrame = field(repr=False)
    outcomes: pd.DataFrame = field(repr=False)

    def to_json(self) -> str:
        return json.dumps(self.figures, indent=2, default=str)


def _check(options: BacktestOptions) -> None:
    for name in ("horizon", "every"):
        if getattr(options, name) <= 0:
            raise AccountHealthError(
                f"{name} must be at least one day", where=f"--{name}", fix="give e.g. 90d"
            )
    if options.grace < 0:
        raise AccountHealthError(
            "grace cannot be negative", where="--grace", fix="give 0 or more days"
        )
    if options.outcomes not in SOURCES:
        raise AccountHealthError(
            f"unknown outcome source '{options.outcomes}'",
            where="--outcomes",
            fix=did_you_mean(options.outcomes, SOURCES),
        )


def load_outcomes(project: Project, source: str, known_until: dt.date, grace: int) -> tuple:
    """Outcomes known on ``known_until`` and where they came from ('contracts' or 'table')."""
    compute = project.compute
    has_table = compute.has_table("outcomes") and int(
        compute.execute(compute.table("outcomes").count())
    )
    if source == "table" or (source == "auto" and has_table):
        if not has_table:
            raise AccountHealthError(
                "there is no outcomes data",
                where="--outcomes table",
                fix="map an outcomes source in accounthealth.yaml and ingest, or use contracts",
            )
        return from_table(compute.execute(compute.table("outcomes")), known_until), "table"
    if not compute.has_table("contracts"):
        raise AccountHealthError(
            "there are no contracts or outcomes to learn churn from",
            where="backtest",
            fix="map a contracts (or outcomes) source in accounthealth.yaml and ingest",
        )
    contracts = compute.execute(compute.table("contracts"))
    return from_contracts(contracts, known_until, grace), "contracts"


def observation_dates(
    project: Project, resolved: ResolvedModel, options: BacktestOptions
) -> tuple[list[dt.date], dt.date]:
    """The grid of observation dates and the day outcomes are known until."""
    first, known_until = project.data_span()
    end = options.end or known_until
    start = options.start or min(first + dt.timedelta(days=resolved.lookback_days), end)
    if start > end:
        raise AccountHealthError(
            f"--from {start} is after --to {end}", where="backtest", fix="swap the two dates"
        )
    if end > known_until:
        raise AccountHealthError(
            f"--to {end} is after the last data ({known_until})",
            where="backtest",
            fix=f"end the observations on or before {known_until}",
        )
    count = (end - start).days // options.every + 1
    return [start + dt.timedelta(days=i * options.every) for i in range(count)], known_until


@dataclass
class Observations:
    """Labelled observations of one model over a grid of dates, with the outcomes used."""

    frame: pd.DataFrame
    outcomes: pd.DataFrame
    source: str
    dates: list[dt.date]
    known_until: dt.date

    def after(self, day: dt.date) -> Observations:
        """Only the observations after ``day`` (a held-out period)."""
        dates = [d for d in self.dates if d > day]
        if not dates:
            raise AccountHealthError(
                f"no observation date after {day}",
                where="--train-until",
                fix=f"train until a date before {self.dates[-1]}",
            )
        frame = self.frame[self.frame["as_of"] > day].reset_index(drop=True)
        return Observations(frame, self.outcomes, self.source, dates, self.known_until)


def observe(project: Project, options: BacktestOptions, resolved: ResolvedModel) -> Observations:
    """Score the grid of dates with ``resolved`` and pair every score with its outcome."""
    _check(options)
    segments = [seg.segment for seg in resolved.segments]
    if options.segment and options.segment not in segments:
        raise AccountHealthError(
            f"the model has no segment '{options.segment}'",
            where="--segment",
            fix=did_you_mean(options.segment, segments),
        )
    dates, known_until = observation_dates(project, resolved, options)
    outcomes, source = load_outcomes(project, options.outcomes, known_until, options.grace)
    scores = project.evaluate(dates, resolved)
    observed = label(scores, outcomes, options.horizon, known_until)
    if options.segment:
        observed = observed[observed["segment_model"] == options.segment].reset_index(drop=True)
    return Observations(observed, outcomes, source, dates, known_until)


def measure(seen: Observations, resolved: ResolvedModel, options: BacktestOptions) -> dict:
    """Every backtest figure of a set of observations (scored with ``resolved``)."""
    observed, outcomes = seen.frame, seen.outcomes
    before = before_outcomes(observed, outcomes, options.days_before, options.every)
    segments = [seg.segment for seg in resolved.segments]
    tiers = {seg.segment: tier_names(resolved, seg.tiers) for seg in resolved.segments}
    tiers[ALL] = tiers[segments[-1]]
    boot = measures.Bootstrap.draw(
        pd.concat([observed["account_id"], outcomes["account_id"]]), options.reps, options.seed
    )
    groups = [ALL, *sorted(observed["segment_model"].dropna().unique())]
    return {
        "model_version": resolved.version,
        "horizon_days": options.horizon,
        "every_days": options.every,
        "dates": {"first": seen.dates[0], "last": seen.dates[-1], "count": len(seen.dates)},
        "outcomes_known_until": seen.known_until,
        "outcomes_source": seen.source,
        "outcome_counts": {o: int((outcomes["outcome"] == o).sum()) for o in OUTCOMES},
        "bootstrap_replicates": options.reps,
        "segments": {
            g: _figures(observed, before, outcomes, g, tiers[g], options, boot) for g in groups
        },
        "signals": analyse(
            observed,
            {name: metric.label for name, metric in resolved.metrics.items()},
            list(dict.fromkeys(c.name for seg in resolved.segments for c in seg.components)),
        ),
    }


def backtest(
    project: Project, options: BacktestOptions, resolved: ResolvedModel | None = None
) -> Backtest:
    """Score the grid of dates with ``resolved`` (default: the live model) and measure it."""
    resolved = resolved or project.model
    seen = observe(project, options, resolved)
    return Backtest(measure(seen, resolved, options), seen.frame, seen.outcomes)


def tier_names(resolved: ResolvedModel, tiers: t.Sequence[t.Any]) -> list[str]:
    """Tier names from the healthiest to the most at risk, with the 4-tier split applied."""
    names = [tier.name for tier in tiers]
    spec = resolved.model.trend_tiers
    if spec is not None and spec.split in names:
        at = names.index(spec.split)
        names[at : at + 1] = [spec.stable, spec.declining]
    return names


# Below this many churned accounts a segment's figures are flagged as too thin to read alone.
FEW_CHURNS = 20


def _figures(
    observed: pd.DataFrame,
    before: pd.DataFrame,
    outcomes: pd.DataFrame,
    group: str,
    tiers: list[str],
    options: BacktestOptions,
    boot: measures.Bootstrap,
) -> dict:
    obs = observed if group == ALL else observed[observed["segment_model"] == group]
    ahead = before if group == ALL else before[before["segment_model"] == group]
    known = obs[obs["known"]].reset_index(drop=True)
    churned_accounts = known.loc[known["churned"], "account_id"].nunique()
    churns = outcomes[
        (outcomes["outcome"] == "churned") & outcomes["account_id"].isin(obs["account_id"])
    ]
    warnings = []
    if churned_accounts < FEW_CHURNS:
        warnings.append(
            f"only {churned_accounts} account(s) churned within the horizon here: "
            "read these figures with their intervals, not alone"
        )
    if known.empty:
        warnings.append("no observation is old enough to know its outcome")
    return {
        "tiers": tiers,
        "counts": {
            "accounts": int(obs["account_id"].nunique()),
            "observations": len(obs),
            "known_observations": len(known),
            "churned_observations": int(known["churned"].sum()),
            "churned_accounts": int(churned_accounts),
        },
        "ranking": measures.ranking(obs.reset_index(drop=True), boot),
        "by_tier": measures.by_tier(known, tiers, boot),
        "calibration": measures.calibration(known),
        "before_outcome": measures.before_outcome(
            ahead.reset_index(drop=True), tiers[0], options.days_before, boot
        ),
        "lead_time": measures.lead_time(obs, churns, tiers[-1], options.every),
        "warnings": warnings,
    }
