"""The one exception root. Every user-facing error says what is wrong, where, and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AccountHealthError(Exception):
    """Base of every error accounthealth raises on purpose.

    ``what`` says what is wrong, ``where`` points at the file, line, row or field, and ``fix``
    tells the user what to do. The CLI prints these three without a traceback.
    """

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [f"{self.where}: {self.what}" if self.where else self.what]
        if self.fix:
            parts.append(f"How to fix: {self.fix}")
        return "\n".join(parts)


class ConfigError(AccountHealthError):
    """The project or health model YAML is invalid."""


class DataError(AccountHealthError):
    """A source file cannot be read or does not have the columns it needs."""


class ProjectError(AccountHealthError):
    """The project folder or its store is not in a state for the requested operation."""


class NotFoundError(AccountHealthError):
    """An account, score or date the user asked for does not exist."""


def closest(name: str, options: Iterable[str]) -> str | None:
    """Return the valid option closest to a misspelt ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """A 'Did you mean ...?' hint followed by the valid options, for error messages."""
    options = sorted(options)
    guess = closest(name, options)
    valid = ", ".join(options)
    return f"did you mean '{guess}'? Valid: {valid}" if guess else f"valid: {valid}"
