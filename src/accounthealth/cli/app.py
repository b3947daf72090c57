"""The Typer app: `accounthealth init | ingest | score | accounts | explain | export | rejects |
check`, the validation commands of cli/validation.py and the action commands of
cli/actions.py. Every command is a few lines over the Project facade."""

from __future__ import annotations

import datetime as dt
import sys
import typing as t
from pathlib import Path

import typer

from accounthealth.cli.console import RichProgress, console, errors, number, table, tier_text
from accounthealth.errors import AccountHealthError
from accounthealth.project import SORTS, Project

app = typer.Typer(
    help="Customer health scores you can explain and test against churn.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"debug": False}

ProjectOpt = t.Annotated[
    Path, typer.Option("--project", "-p", help="Project folder.", show_default=False)
]
DateOpt = dt.datetime | None


def date_option(*names: str, help: str) -> t.Any:
    """A YYYY-MM-DD option."""
    return typer.Option(None, *names, formats=["%Y-%m-%d"], help=help, show_default=False)


def to_date(value: dt.datetime | None) -> dt.date | None:
    """The date of a parsed YYYY-MM-DD option."""
    return value.date() if value else None


def open_project(folder: Path) -> Project:
    """The project in ``folder``, reporting progress on the terminal."""
    return Project(folder, RichProgress())


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks.")) -> None:
    _state["debug"] = debug


@app.command()
def init(
    folder: Path = typer.Argument(..., help="Folder to create."),
    demo: bool = typer.Option(False, "--demo", help="Fill it with realistic demo data."),
    accounts: int = typer.Option(3000, help="Demo accounts."),
    years: float = typer.Option(2.0, help="Years of demo history."),
    end: DateOpt = date_option(help="Last day of demo data (default today)."),
    seed: int = typer.Option(7, help="Demo random seed."),
) -> None:
    """Create a project folder with accounthealth.yaml, a health model and (--demo) data."""
    from accounthealth.demo.project import create

    with RichProgress().task("creating project" + (" and demo data" if demo else "")):
        create(folder, demo=demo, accounts=accounts, years=years, end=to_date(end), seed=seed)
    console.print(f"Created [bold]{folder}[/]. Next: cd {folder} && accounthealth ingest")


@app.command()
def ingest(project: ProjectOpt = Path(".")) -> None:
    """Load the sources named in accounthealth.yaml into the store."""
    with open_project(project) as p:
        report = p.ingest()
    out = table("Table", "Read", "Loaded", "Rejected", "How", title="Ingested")
    for r in report.tables:
        rejected = f"[red]{r.rows_rejected:,}[/]" if r.rows_rejected else "0"
        how = r.how
        if r.how == "appended":
            how = f"appended ({r.files_read} new file{'s' if r.files_read > 1 else ''})"
        out.add_row(r.table, f"{r.rows_read:,}", f"{r.rows_loaded:,}", rejected, how)
    console.print(out)
    for r in report.tables:
        for reason, count in r.reasons.items():
            console.print(f"[yellow]{r.table}: {count} row(s) rejected: {reason}[/]")
    if report.rows_rejected:
        console.print("See them with: accounthealth rejects")


@app.command()
def score(
    project: ProjectOpt = Path("."),
    as_of: DateOpt = date_option("--as-of", help="Score as of this date (default today)."),
    start: DateOpt = date_option("--from", help="Backfill from this date..."),
    end: DateOpt = date_option("--to", help="...to this date, inclusive."),
) -> None:
    """Score every account as of a date, or backfill every day of a range."""
    with open_project(project) as p:
        report = p.score(to_date(as_of), start=to_date(start), end=to_date(end))
        latest = p.latest_data_date()
    stale = (report.dates[-1] - latest).days
    if stale > 2:
        console.print(
            f"[yellow]Warning: the newest data is from {latest}, {stale} days before "
            f"{report.dates[-1]}: windows ending on that date see no recent activity. "
            f"Ingest fresh data or score --as-of {latest}.[/]"
        )
    span = (
        str(report.dates[0])
        if len(report.dates) == 1
        else f"{report.dates[0]} to {report.dates[-1]} ({len(report.dates)} days)"
    )
    console.print(
        f"Scored {report.rows:,} account-days for {span} with model {report.model_version} "
        f"in {report.seconds:.1f}s."
    )
    if report.carried_from is not None:
        console.print(f"Carried on from the running values kept of {report.carried_from}.")
    if report.not_carried is not None:
        console.print(
            f"[yellow]Read all history again where the kept running values no longer held: "
            f"{report.not_carried}.[/]"
        )


@app.command()
def accounts(
    project: ProjectOpt = Path("."),
    as_of: DateOpt = date_option("--as-of", help="Date (default: latest scored)."),
    tier: str | None = typer.Option(None, help="Only this tier."),
    segment: str | None = typer.Option(None, help="Only this segment."),
    owner: str | None = typer.Option(None, help="Only this CSM."),
    sort: str = typer.Option("score", help=f"One of: {', '.join(SORTS)}."),
    limit: int = typer.Option(25, help="Rows to show (0 = all)."),
) -> None:
    """List accounts with score, tier, change, coverage, ARR and renewal."""
    with open_project(project) as p:
        day = to_date(as_of) or p.latest_scored_date()
        frame = p.accounts(
            day, tier=tier, segment=segment, owner=owner, sort=sort, limit=limit or None
        )
        trends = p.model.model.trends
    # The churn probability column appears once a calibrated model has scored these dates.
    churn = "churn_probability" in frame and frame["churn_probability"].notna().any()
    out = table(
        "Account",
        "Name",
        "Score",
        "Tier",
        *[f"Δ{d}d" for d in trends],
        *(["Churn"] if churn else []),
        "Coverage",
        "ARR",
        "Renewal",
        "Owner",
        "Segment",
        title=f"Accounts on {day}",
        # What a narrow terminal leaves out first: who and what kind of account, then the
        # longer trends; the score, tier, ARR and the first trend stay.
        optional=(
            "Segment",
            "Coverage",
            "Owner",
            *[f"Δ{d}d" for d in reversed(trends[1:])],
            "Churn",
            "Renewal",
        ),
    )
    for row in frame.itertuples(index=False):
        r = row._asdict()
        renewal = r["days_to_renewal"]
        out.add_row(
            r["account_id"],
            str(r["name"] or ""),
            _overridden(r, "score", number),
            _overridden(r, "tier", tier_text),
            *[number(r[f"change_{d}d"], signed=True) for d in trends],
            *([_percent(r["churn_probability"])] if churn else []),
            f"{r['coverage']:.0%}",
            number(r["arr"]),
            "-" if renewal is None or renewal != renewal else f"{int(renewal)}d",
            str(r["owner"] or ""),
            str(r["segment"] or ""),
        )
    console.print(out)


def _percent(value: t.Any) -> str:
    return "-" if value is None or value != value else f"{value:.0%}"


def _overridden(row: dict, field: str, show: t.Callable[[t.Any], str]) -> str:
    """The score or tier shown, and the computed one beside it when an override set it."""
    override = row.get("override_id")
    computed = row.get(f"computed_{field}")
    if override is None or override != override or computed == row[field]:
        return show(row[field])
    return f"{show(row[field])} [dim](computed {show(computed)}, override)[/]"


@app.command()
def explain(
    account_id: str = typer.Argument(..., help="Account id."),
    project: ProjectOpt = Path("."),
    as_of: DateOpt = date_option("--as-of", help="Date (default: latest scored)."),
) -> None:
    """Why an account has its score: components, metrics, coverage and what changed."""
    from accounthealth.explain.drivers import format_value

    with open_project(project) as p:
        e = p.explain(account_id, to_date(as_of))
    title = f"{e.account_id} {e.name or ''} on {e.as_of}"
    console.print(f"[bold]{title}[/]")
    console.print(
        f"Score [bold]{number(e.score)}[/] {tier_text(e.tier)}   coverage {e.coverage:.0%}   "
        f"model {e.model_version} ({e.segment_model})   ARR {number(e.arr)}   "
        f"renewal {'-' if e.days_to_renewal is None else f'in {e.days_to_renewal} days'}"
    )
    if e.override:
        o = e.override
        console.print(
            f"[bold]Overridden[/] by {o['author']} ({o['override_id']}, until {o['expires_on']}): "
            f"{o['reason']}. Computed: {number(o['computed_score'])} "
            f"{tier_text(o['computed_tier'])}"
        )
    if e.churn_probability is not None:
        factors = ", ".join(f"{label} (-{points:.0f} points)" for label, points in e.risk_factors())
        console.print(
            f"Churn probability: [bold]{e.churn_probability:.0%}[/]"
            + (f"; biggest risk factors: {factors}" if factors else "")
        )
    if abs(e.renewal_adjustment) >= 0.05:
        console.print(f"Renewal proximity: {e.renewal_adjustment:+.1f} points")
    if e.rollup_children:
        console.print(
            f"Rolled up from {e.rollup_children} child account(s); own score {number(e.own_score)}"
        )
    out = table("Component / metric", "Value", "Score", "Share", "Points")
    for c in e.components:
        out.add_row(
            f"[bold]{c.label}[/]",
            "",
            number(c.score),
            f"{c.share:.0%}",
            f"[bold]{c.contribution:.1f}[/]",
        )
        for m in c.metrics:
            value = format_value(m.value, m.format) if m.present else "[dim]no data[/]"
            out.add_row(
                f"  {m.label}", value, number(m.score), f"{m.share:.0%}", f"{m.contribution:.1f}"
            )
    console.print(out)
    for change in e.changes:
        console.print(change.sentence)
    if not e.changes:
        console.print("[dim]No earlier score to compare with: backfill with --from/--to.[/]")
    fresh = ", ".join(f"{k} {v or 'never'}" for k, v in e.freshness.items())
    console.print(f"[dim]Latest data: {fresh}[/]")


@app.command()
def export(
    what: str = typer.Argument("scores", help="scores, components or metrics"),
    project: ProjectOpt = Path("."),
    output: Path = typer.Option(None, "--output", "-o", help="File to write."),
    fmt: str = typer.Option("csv", "--format", help="csv or parquet"),
    start: DateOpt = date_option("--from", help="First date."),
    end: DateOpt = date_option("--to", help="Last date."),
) -> None:
    """Export score history (or its component/metric detail) to CSV or Parquet."""
    output = output or Path(f"{what}.{fmt}")
    with open_project(project) as p:
        rows = p.export(output, what=what, fmt=fmt, start=to_date(start), end=to_date(end))
    console.print(f"Wrote {rows:,} rows to {output}")


@app.command()
def rejects(
    project: ProjectOpt = Path("."),
    source: str | None = typer.Option(None, "--table", help="Only this table."),
    limit: int = typer.Option(50, help="Rows to show."),
) -> None:
    """Rows of the ingested files kept aside, with file, line, column and reason."""
    with open_project(project) as p:
        frame = p.rejects(source)
    out = table(
        "Table", "File", "Line", "Column", "Value", "Reason", title=f"{len(frame)} rejected row(s)"
    )
    for r in frame.head(limit).itertuples(index=False):
        out.add_row(
            r.table_name,
            Path(r.source_file).name,
            str(r.line),
            str(r.column_name),
            str(r.value),
            r.reason,
        )
    console.print(out)


@app.command()
def check(project: ProjectOpt = Path(".")) -> None:
    """Validate accounthealth.yaml and the health model without touching data."""
    with open_project(project) as p:
        model = p.model
        rules = p.playbooks().rules
    n = sum(len(seg.metrics) for seg in model.segments if seg.segment == "default")
    console.print(
        f"OK: model '{model.model.name}' version {model.version}, {n} metrics in "
        f"{len(model.model.components)} components, {len(model.segments) - 1} segment(s), "
        f"{len(rules)} playbook rule(s)."
    )


# The validation commands register themselves on `app` (kept apart: app.py stays readable).
from accounthealth.cli import actions as _actions  # noqa: E402, F401
from accounthealth.cli import validation as _validation  # noqa: E402, F401


def main() -> None:
    """Entry point: run the app, printing AccountHealthError without a traceback."""
    try:
        app()
    except AccountHealthError as exc:
        if _state["debug"]:
            raise
        errors.print(f"[bold red]Error:[/] {exc.message}", highlight=False)
        sys.exit(2)
