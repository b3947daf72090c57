"""The validation commands: `accounthealth backtest | signals | calibrate | plan | apply`
(docs/validation.md), registered on the app of cli/app.py."""

from __future__ import annotations

import datetime as dt
import typing as t
from pathlib import Path

import typer

from accounthealth.cli.app import DateOpt, ProjectOpt, app, date_option, open_project, to_date
from accounthealth.cli.console import console, number, table
from accounthealth.errors import AccountHealthError


def _days(value: str, option: str) -> int:
    from accounthealth.config.durations import parse_days

    try:
        return parse_days(int(value) if value.isdigit() else value)
    except ValueError as exc:
        raise AccountHealthError(str(exc), where=option, fix="give e.g. 90d, 4w or 3m") from None


def _ci(estimate: dict, percent: bool = False) -> str:
    """'0.80 (0.78 to 0.82)': a figure with its bootstrap interval."""
    from accounthealth.validation.report import format_estimate

    value, interval = format_estimate(estimate, percent)
    return f"{value} [dim]({interval})[/]" if interval else value


Horizon = t.Annotated[str, typer.Option(help="Churn within this long after a date counts.")]
Every = t.Annotated[str, typer.Option(help="Days between observation dates.")]
Segment = t.Annotated[str | None, typer.Option(help="Only this segment of the model.")]
Outcomes = t.Annotated[str, typer.Option(help="auto, contracts or table.")]
Grace = t.Annotated[int, typer.Option(help="Days a late renewal may start after the end.")]


def _backtest_options(
    horizon: str,
    every: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    segment: str | None,
    outcomes: str,
    grace: int,
    reps: int,
) -> t.Any:
    from accounthealth.validation.backtest import BacktestOptions

    return BacktestOptions(
        horizon=_days(horizon, "--horizon"),
        every=_days(every, "--every"),
        start=to_date(start),
        end=to_date(end),
        segment=segment,
        outcomes=outcomes,
        grace=grace,
        reps=reps,
    )


@app.command()
def backtest(
    project: ProjectOpt = Path("."),
    horizon: Horizon = "90d",
    every: Every = "14d",
    start: DateOpt = date_option("--from", help="First observation date."),
    end: DateOpt = date_option("--to", help="Last observation date (default: last data)."),
    segment: Segment = None,
    outcomes: Outcomes = "auto",
    grace: Grace = 30,
    bootstrap: int = typer.Option(200, help="Bootstrap replicates for the intervals."),
    report: Path = typer.Option(None, help="Folder for the HTML and JSON report."),
) -> None:
    """Score past dates point-in-time and measure how well the score predicted churn."""
    from accounthealth.validation.report import write_report

    options = _backtest_options(horizon, every, start, end, segment, outcomes, grace, bootstrap)
    with open_project(project) as p:
        result = p.backtest(options)
        folder = report or p.folder / "reports"
    f = result.figures
    counts = ", ".join(f"{n:,} {o}" for o, n in f["outcome_counts"].items())
    console.print(
        f"[bold]Backtest[/] of model {f['model_version']}: {f['dates']['count']} dates from "
        f"{f['dates']['first']} to {f['dates']['last']} every {f['every_days']} days; churn "
        f"within {f['horizon_days']} days. Outcomes from {f['outcomes_source']} known until "
        f"{f['outcomes_known_until']}: {counts}."
    )
    segments = f["segments"]
    ranks = table(
        "Segment", "Accounts", "Churned", "AUC", "Top-decile lift", "C-index",
        title=f"How well the score ranks churn within {f['horizon_days']} days", wrap=True,
    )  # fmt: skip
    for name, g in segments.items():
        r = g["ranking"]
        ranks.add_row(
            name,
            f"{g['counts']['accounts']:,}",
            f"{g['counts']['churned_accounts']:,}",
            _ci(r["auc"]),
            _ci(r["top_decile_lift"]),
            number(r["concordance"]["value"], 2),
        )
    console.print(ranks)
    tiers = segments["all"]["tiers"]
    by_tier = table("Segment", *tiers, title="Churn rate within the horizon, by tier", wrap=True)
    for name, g in segments.items():
        rates = {row["tier"]: row["churn_rate"] for row in g["by_tier"]}
        by_tier.add_row(name, *[_ci(rates.get(t, {}), percent=True) for t in tiers])
    console.print(by_tier)
    leads = [str(k) for k in options.days_before]
    ahead = table(
        "Segment",
        *[f"{tiers[0]} {k}d before" for k in leads],
        f"{tiers[-1]} at churn",
        "Median lead",
        title=f"Churned accounts: in {tiers[0]} before churning, in {tiers[-1]} when they churned",
        wrap=True,
    )
    scores = table(
        "Segment",
        *[f"{k}d {kind}" for k in leads for kind in ("churned", "retained")],
        title="Average score before the outcome (churn, or renewal for retained accounts)",
    )
    for name, g in segments.items():
        b, lead = g["before_outcome"], g["lead_time"]
        ahead.add_row(
            name,
            *[_ci(b["churned_in_top_tier"][k], percent=True) for k in leads],
            "-" if lead["share_warned"] is None else f"{lead['share_warned']:.0%}",
            "-" if lead["median_days"] is None else f"{lead['median_days']:.0f}d",
        )
        means = b["mean_score"]
        scores.add_row(
            name,
            *[number(means[kind][k]["value"]) for k in leads for kind in ("churned", "retained")],
        )
    console.print(ahead)
    console.print(scores)
    bands = table("Score band", "Observations", "Churned", "Churn rate", title="Calibration (all)")
    for row in segments["all"]["calibration"]:
        rate = "-" if row["churn_rate"] is None else f"{row['churn_rate']:.1%}"
        bands.add_row(row["band"], f"{row['observations']:,}", f"{row['churned']:,}", rate)
    console.print(bands)
    for name, g in segments.items():
        for warning in g["warnings"]:
            console.print(f"[yellow]{name}: {warning}[/]")
    html, data = write_report(result, folder)
    console.print(f"Report: {html} (figures as JSON: {data})")


@app.command()
def signals(
    project: ProjectOpt = Path("."),
    horizon: Horizon = "90d",
    every: Every = "14d",
    start: DateOpt = date_option("--from", help="First observation date."),
    end: DateOpt = date_option("--to", help="Last observation date (default: last data)."),
    segment: Segment = None,
    outcomes: Outcomes = "auto",
    grace: Grace = 30,
) -> None:
    """Which metrics vary, which predict churn alone, which duplicate each other, and whether
    the scores spread out (on the backtest's observations)."""
    options = _backtest_options(horizon, every, start, end, segment, outcomes, grace, 0)
    with open_project(project) as p:
        found = p.backtest(options).figures["signals"]
    for title, rows in (("Metrics", found["metrics"]), ("Components", found["components"])):
        out = table(
            "Name", "Coverage", "Distinct", "Same value", "Std", "AUC alone", "Flagged",
            title=f"{title}: spread and power against churn within {options.horizon} days",
        )  # fmt: skip
        for r in rows:
            out.add_row(
                r["label"],
                f"{r['coverage']:.0%}",
                f"{r['distinct_values']:,}",
                "-" if r["same_value_share"] is None else f"{r['same_value_share']:.0%}",
                number(r["std"], 2),
                number(r["auc"], 2),
                "[yellow]yes[/]" if r["flags"] else "",
            )
        console.print(out)
        for r in rows:
            for flag in r["flags"]:
                console.print(f"[yellow]{r['label']}: {flag}[/]")
    if found["correlated"]:
        pairs = table("Metric", "Metric", "Spearman", title="Metrics that measure the same thing")
        for pair in found["correlated"]:
            pairs.add_row(pair["a"], pair["b"], number(pair["spearman"], 2))
        console.print(pairs)
    dist = found["scores"]
    bands = "  ".join(f"{b['band']}: {b['share']:.0%}" for b in dist["bands"])
    console.print(f"Scores: mean {number(dist['mean'])}, std {number(dist['std'])}.  {bands}")
    for warning in dist["warnings"]:
        console.print(f"[yellow]{warning}[/]")


@app.command()
def calibrate(
    train_until: DateOpt = date_option("--train-until", help="Fit on outcomes up to this date."),
    project: ProjectOpt = Path("."),
    horizon: Horizon = "90d",
    every: Every = "14d",
    start: DateOpt = date_option("--from", help="First observation date."),
    end: DateOpt = date_option("--to", help="Last observation date (default: last data)."),
    outcomes: Outcomes = "auto",
    grace: Grace = 30,
    bootstrap: int = typer.Option(200, help="Bootstrap replicates for the intervals."),
) -> None:
    """Fit suggested weights, tier bounds, renewal proximity and a churn probability on
    outcomes up to --train-until, write model.proposed.yaml, and compare it with the live
    model on the period after that date."""
    import json

    if train_until is None:
        raise AccountHealthError(
            "calibrate needs --train-until", where="calibrate", fix="e.g. --train-until 2026-05-01"
        )
    options = _backtest_options(horizon, every, start, end, None, outcomes, grace, bootstrap)
    with open_project(project) as p:
        result = p.calibrate(to_date(train_until), options)
        folder = p.folder / "reports"
    train = result["train"]
    console.print(
        f"[bold]Calibration[/] on {train['observations']:,} observations from {train['first']} "
        f"to {train['last']} ({train['churned_accounts']} churned accounts), outcomes known "
        f"by {result['train_until']}."
    )
    for fit in result["fits"]:
        out = table("Component", "Current", "Proposed", "90% interval", title=fit["segment"])
        for name, weight in fit["current"].items():
            proposed = (fit["proposed"] or {}).get(name)
            low_high = fit["intervals"].get(name)
            out.add_row(
                name,
                number(weight),
                number(proposed),
                f"{low_high[0]:.0f} to {low_high[1]:.0f}" if low_high else "-",
            )
        console.print(out)
        if fit["reason"]:
            console.print(f"[yellow]{fit['segment']}: weights unchanged: {fit['reason']}[/]")
    bounds = result["tiers"]
    if bounds["proposed"]:
        moves = ", ".join(
            f"{a['name']} from {a['min']:g} to {b['min']:g}"
            for a, b in zip(bounds["current"], bounds["proposed"], strict=True)
            if a["min"] != b["min"]
        )
        console.print(f"Tier bounds (keeping each tier's share of accounts): {moves}")
    else:
        console.print(f"Tier bounds unchanged: {bounds['reason']}")
    renewal = result["renewal"]
    now = renewal["current"]
    if renewal["proposed"]:
        new = renewal["proposed"]
        console.print(
            f"Renewal proximity: within {now['within_days']} days x{1 + now['amplify']:g} -> "
            f"within {new['within_days']} days x{1 + new['amplify']:g} (training AUC "
            f"{now['train_auc']:.3f} -> {new['train_auc']:.3f})"
        )
    else:
        console.print(f"Renewal proximity unchanged: {renewal['reason']}")
    held = result["held_out"]
    compare = table(
        "Model", "AUC", "Top-decile lift", "Churned in top tier 30d before", "Bottom tier churn",
        title=f"Held out: {held['first']} to {held['last']} ({held['churned_accounts']} churned)",
        wrap=True,
    )  # fmt: skip
    for name, figures in result["compared"].items():
        compare.add_row(
            name.replace("_", " "),
            _ci(figures["auc"]),
            _ci(figures["top_decile_lift"]),
            _ci(figures["churned_in_top_tier_30d"] or {}, percent=True),
            _ci(figures["bottom_tier_churn_rate"], percent=True),
        )
    console.print(compare)
    prob = result["probability"]
    if "brier" in prob:
        console.print(
            f"Churn probability beside each score (proposed): Brier {prob['brier']:.4f} on the "
            f"held-out period (the base rate alone: {prob['brier_of_base_rate']:.4f})."
        )
        rel = table("Predicted", "Observed", "Observations", title="Reliability (held out)")
        for row in prob["reliability"]:
            rel.add_row(
                f"{row['predicted']:.1%}", f"{row['observed']:.1%}", f"{row['observations']:,}"
            )
        console.print(rel)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"calibration-{to_date(train_until)}.json"
    data.write_text(json.dumps(result, indent=2, default=str))
    if result["proposed_file"]:
        console.print(f"Proposed model: {result['proposed_file']} (the live model is unchanged)")
    else:
        console.print("No change proposed: the live model stays as it is.")
    console.print(f"Figures as JSON: {data}")


def _setting(value: t.Any) -> str:
    return "-" if value is None else str(value)


@app.command()
def plan(
    proposed: Path = typer.Option(None, help="Proposed model file (default model.proposed.yaml)."),
    project: ProjectOpt = Path("."),
    horizon: Horizon = "90d",
    every: Every = "14d",
    start: DateOpt = date_option("--from", help="First observation date."),
    end: DateOpt = date_option("--to", help="Last observation date (default: last data)."),
    outcomes: Outcomes = "auto",
    grace: Grace = 30,
    bootstrap: int = typer.Option(200, help="Bootstrap replicates for the intervals."),
) -> None:
    """Show what a proposed model changes and how it backtests against the live one."""
    options = _backtest_options(horizon, every, start, end, None, outcomes, grace, bootstrap)
    with open_project(project) as p:
        result = p.plan(proposed, options)
    diff = table(
        "Setting", "Live", "Proposed",
        title=f"{result['live_version']} (live) -> {result['proposed_version']} "
        f"({Path(result['proposed_file']).name})",
    )  # fmt: skip
    for change in result["changes"]:
        diff.add_row(change["setting"], _setting(change["live"]), _setting(change["proposed"]))
    console.print(diff)
    live, new = result["backtest"]["live"], result["backtest"]["proposed"]
    compare = table(
        "Segment", "AUC live", "AUC proposed", "Lift live", "Lift proposed",
        title=f"Backtest on {live['dates']['count']} dates, {live['dates']['first']} to "
        f"{live['dates']['last']}",
    )  # fmt: skip
    for name, before in live["segments"].items():
        after = new["segments"].get(name)
        if after is None:
            continue
        compare.add_row(
            name,
            _ci(before["ranking"]["auc"]),
            _ci(after["ranking"]["auc"]),
            _ci(before["ranking"]["top_decile_lift"]),
            _ci(after["ranking"]["top_decile_lift"]),
        )
    console.print(compare)
    console.print("Apply it with: accounthealth apply --by NAME")


@app.command()
def apply(
    by: str = typer.Option(..., help="Who applies the change (recorded)."),
    proposed: Path = typer.Option(None, help="Proposed model file (default model.proposed.yaml)."),
    note: str = typer.Option("", help="Why (recorded with the change)."),
    project: ProjectOpt = Path("."),
) -> None:
    """Make the proposed model the live one; who and when are recorded, history keeps its
    model versions."""
    with open_project(project) as p:
        result = p.apply(proposed, by=by, note=note)
    console.print(
        f"Applied model {result['to_version']} (was {result['from_version']}) to "
        f"{result['model_file']} by {result['applied_by']} at {result['applied_at']}: "
        f"{len(result['changes'])} setting(s) changed. Scores already computed keep their "
        "version; run 'accounthealth score' to score with the new one, with --from/--to over "
        "recent weeks so that trends compare scores of the same model."
    )
