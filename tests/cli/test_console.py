"""Tables on a narrow terminal (cli/console.py): numbers, ids and dates are never cut, text is
cut shorter, optional columns are left out with a note saying which, and what still does not
fit wraps rather than running off the edge."""

from __future__ import annotations

import io

from rich.cells import cell_len
from rich.console import Console

from accounthealth.cli.console import table


def render(width: int, *, optional: tuple[str, ...] = ()) -> list[str]:
    out = table("Account", "Name", "Score", "ARR", "Due", "Owner", "Segment", optional=optional)
    out.add_row(
        "A00541",
        "Polmar Group International",
        "18",
        "195,016",
        "2026-11-05",
        "Ana Ruiz-Fernandez",
        "enterprise",
    )
    out.add_row("A02837", "Verdyn Health", "7", "1,500", "2026-12-01", "Ivan Petrov", "smb")
    console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    # Not cropped: a table wider than the terminal shows as lines longer than it.
    console.print(out, crop=False)
    return console.file.getvalue().splitlines()


def test_a_long_value_in_a_number_column_is_cut_as_text() -> None:
    out = table("Account", "Value", "Reason")
    out.add_row("A1", "x" * 70, "not a number")
    console = Console(width=60, file=io.StringIO(), color_system=None, legacy_windows=False)
    console.print(out, crop=False)
    lines = console.file.getvalue().splitlines()
    assert max(cell_len(line) for line in lines) <= 60
    assert "…" in console.file.getvalue()


def test_a_wide_terminal_shows_every_column_whole() -> None:
    lines = render(200, optional=("Segment", "Owner"))
    text = "\n".join(lines)
    for value in ("Polmar Group International", "195,016", "Ana Ruiz-Fernandez", "enterprise"):
        assert value in text
    assert "Left out" not in text


def test_a_narrow_terminal_cuts_text_not_numbers_ids_or_dates() -> None:
    lines = render(90)
    assert max(cell_len(line) for line in lines) <= 90
    text = "\n".join(lines)
    for whole in ("A00541", "195,016", "1,500", "2026-11-05", "18"):
        assert whole in text
    assert "Polmar Group International" not in text and "Polmar" in text  # cut, with "…"
    assert "…" in text


def test_optional_columns_are_left_out_first_named_first_with_a_note() -> None:
    lines = render(62, optional=("Segment", "Owner", "Due"))
    assert max(cell_len(line) for line in lines) <= 62
    text = "\n".join(lines)
    assert "enterprise" not in text and "Ana Ruiz" not in text
    assert "2026-11-05" in text  # Due was not needed to go
    note = " ".join(
        line.strip() for line in lines if not line.startswith(("┃", "│", "┏", "┡", "└"))
    )
    assert "Left out to fit 62 columns: Segment, Owner" in note


def test_what_cannot_fit_wraps_instead_of_running_off_the_edge() -> None:
    lines = render(60)
    assert max(cell_len(line) for line in lines) <= 60
    text = "\n".join(lines)
    for whole in ("A00541", "195,016", "2026-11-05"):
        assert whole in text
    # Nothing cut: the text wraps onto more lines instead.
    assert "…" not in text
    assert len(lines) > 8


def counts(width: int) -> list[str]:
    """A table of counts under long headers, as `rules simulate` prints."""
    headers = ("Firings", "Notifications", "Held by cool-down", "Firings without stability")
    out = table("Rule", *headers, numbers=headers)
    out.add_row("check_in_on_yellow", "775", "0", "1", "2,376")
    out.add_row("expansion_before_renewal", "1,780", "602", "3", "4,118")
    console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    console.print(out, crop=False)
    return console.file.getvalue().splitlines()


def test_long_headers_over_figures_wrap_between_words_before_text_is_cut() -> None:
    wide = counts(200)
    assert any("Firings without stability" in line for line in wide)
    lines = counts(78)
    assert max(cell_len(line) for line in lines) <= 78
    text = "\n".join(lines)
    assert "expansion_before_renewal" in text and "…" not in text
    # Counts are right-aligned against the border, whole.
    assert any(line.endswith(" 4,118 │") for line in lines)
    header = [line for line in lines if line.startswith("┃")]
    assert len(header) == 3  # "Firings / without / stability"
    assert any(line.rstrip(" ┃").endswith("stability") for line in header)


def test_headers_wrap_only_as_far_as_the_text_needs() -> None:
    # Wide enough for all but three characters: only the widest header wraps.
    natural = max(cell_len(line) for line in counts(200))
    lines = counts(natural - 3)
    header = "\n".join(line for line in lines if line.startswith("┃"))
    assert "Held by cool-down" in header and "Firings without" in header
    assert "stability" in header and "Firings without stability" not in header
    assert "expansion_before_renewal" in "\n".join(lines)


def test_on_a_very_narrow_terminal_headers_break_inside_words_never_figures() -> None:
    lines = counts(60)
    assert max(cell_len(line) for line in lines) <= 60
    text = "\n".join(lines)
    for figure in ("2,376", "1,780", "4,118", "602"):
        assert figure in text
    header = "\n".join(line for line in lines if line.startswith("┃"))
    assert "Notifications" not in header and "Notific" in header  # broken inside the word
