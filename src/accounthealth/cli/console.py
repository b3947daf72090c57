"""Rich output for the CLI: progress bars, tables, and errors without tracebacks."""

from __future__ import annotations

import math
import typing as t
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from accounthealth.progress import Progress as ProgressSeam

console = Console()
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
    sign = "+" if signed else ""
    return f"{float(value):{sign},.{digits}f}"


def table(*columns: str, title: str | None = None) -> Table:
    out = Table(title=title, header_style="bold", title_justify="left")
    for column in columns:
        justify = (
            "right"
            if column.lower()
            in {
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
                "contribution",
            }
            or column.startswith("Δ")
            else "left"
        )
        out.add_column(column, justify=justify)
    return out
