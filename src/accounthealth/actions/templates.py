"""Task titles, messages and de-duplication keys written as templates: ``{name} is Red
({score})``. Unknown fields are refused when the model loads, not when a rule fires."""

from __future__ import annotations

import datetime as dt
import string
import typing as t

from accounthealth.errors import ConfigError, did_you_mean

# Facts every firing has, besides the day frame's columns (see actions.rules.DAY_COLUMNS).
FIRING_FACTS = ("rule", "as_of", "episode", "renewal_date", "drop", "rise", "exact_score")


def fields(template: str) -> list[str]:
    """The field names a template uses."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def check(template: str, allowed: t.Iterable[str], where: str) -> None:
    """Refuse a template that names a field no firing has, or cannot be parsed."""
    try:
        names = fields(template)
    except ValueError as exc:
        raise ConfigError(
            f"cannot read template {template!r}: {exc}",
            where=where,
            fix="put field names in braces, e.g. '{name} is Red ({score})'; write {{ for {",
        ) from None
    valid = set(allowed)
    for name in names:
        if name not in valid:
            raise ConfigError(
                f"template {template!r} names unknown field '{name}'",
                where=where,
                fix=did_you_mean(name, valid),
            )


def render(template: str, facts: t.Mapping[str, t.Any]) -> str:
    """The template with each field's value written for people (a missing value as '?')."""
    return template.format_map(_Written(facts))


class _Written(dict):
    def __init__(self, facts: t.Mapping[str, t.Any]) -> None:
        super().__init__({k: _write(v) for k, v in facts.items()})

    def __missing__(self, key: str) -> str:
        return "?"


def _write(value: t.Any) -> str:
    if value is None:
        return "?"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:g}"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)
