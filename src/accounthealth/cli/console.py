"""Rich output for the CLI: progress bars, tables, and errors without tracebacks."""

from __future__ import annotations

import math
import os
import sys
import typing as t
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from accounthealth.progress import Progress as ProgressSeam

# Piped output (files, CI logs) gets room for a full table instead of Rich's 80 columns.
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 150)
errors = Console(stderr=True)

TIER_STYLES = {
    "green": "green",
    "yellow": "yellow",
    "red": "red",
    "stable": "yellow",
    "declining": "dark_orange",
}


class RichProgress(ProgressSeam):
    """Progress bars on the terminal."""

    @contextmanager
    def task(
        self, description: str, total: int | None = None
    ) -> t.Iterator[t.Callable[[int], None]]:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=errors,
            transient=True,
            disable=not errors.is_terminal,
        ) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n=1: bar.advance(task, n)

    def note(self, message: str) -> None:
        errors.print(message)


def tier_text(tier: str | None) -> str:
    if tier is None:
        return "[dim]unknown[/]"
    style = TIER_STYLES.get(str(tier).lower(), "white")
    return f"[{style}]{tier}[/]"


def number(value: t.Any, digits: int = 0, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "[dim]-[/]"
    try:
        if value != value:  # pandas NA-like
            return "[dim]-[/]"
    except TypeError:
        return "[dim]-[/]"
    # Round first, so -0.3 prints as 0 rather than -0 (and an unchanged score has no sign).
    rounded = round(float(value), digits) + 0.0
    sign = "+" if signed and rounded != 0 else ""
    return f"{rounded:{sign},.{digits}f}"


NUMERIC = {
    "score",
    "arr",
    "coverage",
    "renewal",
    "rows",
    "loaded",
    "rejected",
    "read",
    "points",
    "share",
    "value",
    "line",
    "churn",
}


def table(*columns: str, title: str | None = None, wrap: bool = False) -> Table:
    """A table whose cells do not wrap: long names are cut with an ellipsis instead. With
    ``wrap`` (figures with their intervals, which a cut would make wrong) cells wrap onto more
    lines when the terminal is narrow."""
    out = Table(title=title, header_style="bold", title_justify="left")
    for column in columns:
        numeric = column.lower() in NUMERIC or column.startswith("Δ")
        out.add_column(
            column,
            justify="right" if numeric else "left",
            no_wrap=not wrap,
            overflow="fold" if wrap else "ellipsis",
            max_width={"Name": 28, "Reason": 40, "Component / metric": 46}.get(column),
            min_width=len(column) if numeric or column in ("Account", "Tier") else None,
        )
    return out
