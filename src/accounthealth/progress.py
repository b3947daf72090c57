"""The one seam through which long work reports progress (Rich in the CLI, silent otherwise)."""

from __future__ import annotations

import typing as t
from contextlib import contextmanager


class Progress:
    """Progress reporting that does nothing; the CLI passes a Rich-backed subclass."""

    @contextmanager
    def task(
        self, description: str, total: int | None = None
    ) -> t.Iterator[t.Callable[[int], None]]:
        """A unit of work; the yielded function advances it by n steps."""
        yield lambda n=1: None

    def note(self, message: str) -> None:
        """A line of information for the user (warnings, counts)."""


SILENT = Progress()
