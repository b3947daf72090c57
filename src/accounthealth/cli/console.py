"""Rich output for the CLI: progress bars, tables, and errors without tracebacks."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import typing as t
from contextlib import contextmanager

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from rich.text import Text

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


def table(
    *columns: str,
    title: str | None = None,
    wrap: bool = False,
    optional: t.Sequence[str] = (),
    numbers: t.Collection[str] = (),
) -> Table:
    """A table whose cells do not wrap: long names are cut with an ellipsis instead. With
    ``wrap`` (figures with their intervals, which a cut would make wrong) cells wrap onto more
    lines when the terminal is narrow. It fits the terminal's width without cutting a number
    (see ``FittingTable``), leaving out the ``optional`` columns, first named first, where it
    must. Columns named in ``numbers`` hold numbers whatever their names (counts, say)."""
    out = FittingTable(title=title, header_style="bold", title_justify="left", optional=optional)
    for column in columns:
        numeric = column.lower() in NUMERIC or column.startswith("Δ") or column in numbers
        out.add_column(
            column,
            justify="right" if numeric else "left",
            no_wrap=not wrap,
            overflow="fold" if wrap else "ellipsis",
            max_width={"Name": 28, "Reason": 40, "Component / metric": 46}.get(column),
            min_width=len(column) if numeric or column in WHOLE else None,
        )
    return out


# Text columns never cut to fit a narrow terminal (ids, tiers, dates and times), as numbers.
WHOLE = {"Account", "Tier", "Task", "Id", "When", "Due", "From", "Until", "Date", "Status"}
# ... unless wider than this, numbers too: then it is text to cut like any other.
WHOLE_AT_MOST = 24
# The narrowest a text column is cut to (an ellipsis included), or its header's width.
NARROWEST_TEXT = 8


class FittingTable(Table):
    """A table that fits the terminal: numbers, ids and dates are never cut (right-aligned
    columns and those with a minimum width keep their widest cell, up to ``WHOLE_AT_MOST``
    characters); where not every cell fits whole, their headers wrap between words first;
    other text is cut shorter, down to ``NARROWEST_TEXT``; if that is not enough, the
    ``optional`` columns are left out, first named first, with a note under the table naming
    them, and then the text wraps onto more lines. Rich alone cut every column evenly,
    figures too (an ARR of 195,016 showed as "19…"), and the terminal then dropped the
    rightmost columns without a word."""

    def __init__(self, *args: t.Any, optional: t.Sequence[str] = (), **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.optional = tuple(optional)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        measured = {id(c): _Widths.of(console, c) for c in self.columns}
        whole = {i: m.whole for i, m in measured.items()}
        fixed = {
            id(c)
            for c in self.columns
            if (c.justify == "right" or c.min_width is not None)
            and measured[id(c)].words <= WHOLE_AT_MOST
        }
        words = {i: measured[i].words for i in fixed}
        kept = list(self.columns)
        left_out: list[str] = []
        waiting = [name for name in self.optional if any(c.header == name for c in kept)]
        # Optional columns go while the rest cannot fit, even with text cut to its narrowest
        # and the headers over figures wrapped between their words.
        while (least := self._least(console, options, kept, whole | words, fixed)) > width:
            if not waiting:
                break
            name = waiting.pop(0)
            kept = [c for c in kept if c.header != name]
            left_out.append(name)
        chrome = _chrome(console, options, self, kept)
        headed = {id(c): whole[id(c)] for c in kept if id(c) in fixed}
        text = {id(c): whole[id(c)] for c in kept if id(c) not in fixed}
        # The headers over figures ("Firings without stability") wrap between words first,
        # the widest first and only as far as the text then fits whole.
        over = chrome + sum(headed.values()) + sum(text.values()) - width
        headed = _narrowed(headed, sum(headed.values()) - max(over, 0), words)
        if least > width:
            # Still too narrow: they break inside words too, as far as needed and never
            # narrower than their figures.
            figures = {i: measured[i].cells for i in headed}
            headed = _narrowed(headed, sum(headed.values()) - (least - width), figures)
        # Text columns give up what the row lacks, the widest of those still above their
        # narrowest first; then, if that is not enough, they wrap onto more lines rather than
        # run off the edge.
        room = width - chrome - sum(headed.values())
        cut = _narrowed(text, room, {id(c): _floor(c) for c in kept if id(c) in text})
        fold = sum(cut.values()) > room
        if fold:
            cut = _narrowed(cut, room, dict.fromkeys(cut, 1))
        yield _plain(
            self,
            [
                dataclasses.replace(
                    c, width=headed[id(c)], min_width=None, no_wrap=False, overflow="fold"
                )
                if id(c) in fixed
                else dataclasses.replace(
                    c, width=cut[id(c)], min_width=None, no_wrap=False, overflow="fold"
                )
                if fold
                else dataclasses.replace(c, max_width=cut[id(c)])
                for c in kept
            ],
        )
        if left_out:
            yield Text(
                f"Left out to fit {width} columns: {', '.join(left_out)} (a wider terminal "
                "shows them).",
                style="dim",
            )

    def _least(
        self,
        console: Console,
        options: ConsoleOptions,
        kept: list[Column],
        widths: dict[int, int],
        fixed: set[int],
    ) -> int:
        """The narrowest ``kept`` fit with text cut to its narrowest and nothing wrapped."""
        return _chrome(console, options, self, kept) + sum(
            widths[id(c)] if id(c) in fixed else min(widths[id(c)], _floor(c)) for c in kept
        )


def _narrowed(widths: dict[int, int], room: int, floors: dict[int, int]) -> dict[int, int]:
    """``widths`` narrowed to fit ``room``, the widest still above its floor first (not below
    their ``floors``: they may stay wider than the room)."""
    cut = dict(widths)
    while sum(cut.values()) > room:
        above = [i for i in cut if cut[i] > floors[i]]
        if not above:
            break
        cut[max(above, key=lambda i: cut[i])] -= 1
    return cut


@dataclasses.dataclass(frozen=True)
class _Widths:
    """What a column needs (at most its maximum width): its widest cell with its header
    whole, with its header wrapped between words, and with its header broken anywhere."""

    whole: int
    words: int
    cells: int

    @classmethod
    def of(cls, console: Console, column: Column) -> _Widths:
        def measured(cell: t.Any) -> Measurement:
            text = console.render_str(cell) if isinstance(cell, str) else cell
            return Measurement.get(console, console.options, text)

        header = measured(column.header)
        cells = max([1, *(measured(cell).maximum for cell in column.cells)])
        most = column.max_width or max(header.maximum, cells)
        return cls(
            min(max(header.maximum, cells), most),
            min(max(header.minimum, cells), most),
            min(cells, most),
        )


def _floor(column: Column) -> int:
    """The narrowest a text column is cut to."""
    return max(len(str(column.header)), NARROWEST_TEXT)


def _plain(table: Table, columns: list[Column]) -> Table:
    """``table`` with only ``columns``, as a plain Table (rendered as Rich renders one)."""
    plain = Table.__new__(Table)
    plain.__dict__.update(table.__dict__)
    plain.columns = [dataclasses.replace(c, _index=i) for i, c in enumerate(columns)]
    return plain


def _chrome(console: Console, options: ConsoleOptions, table: Table, columns: list[Column]) -> int:
    """The width of the borders and padding of ``table`` with ``columns``: measured with
    one-character headers, no cells and no set widths, less those characters."""
    bare = _plain(
        table,
        [
            dataclasses.replace(
                c, header="x", _cells=[], width=None, min_width=None, max_width=None
            )
            for c in columns
        ],
    )
    bare.title, bare.rows = None, []
    return Measurement.get(console, options.update_width(100_000), bare).maximum - len(columns)
