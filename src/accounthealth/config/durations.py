"""Windows like '28d', '4w', '3m', '1y' as whole days."""

from __future__ import annotations

import re

_UNITS = {"d": 1, "w": 7, "m": 30, "y": 365}
_PATTERN = re.compile(r"^\s*(\d+)\s*([dwmy])\s*$")


def parse_days(value: str | int) -> int:
    """Return the number of days in a window such as '28d' or 90 (plain numbers are days)."""
    if isinstance(value, bool):
        raise ValueError(f"a window must be like '28d', '4w', '3m' or '1y', not {value!r}")
    if isinstance(value, int):
        days = value
    else:
        match = _PATTERN.match(str(value))
        if not match:
            raise ValueError(
                f"a window must be like '28d', '4w', '3m' (30 days) or '1y', not {value!r}"
            )
        days = int(match.group(1)) * _UNITS[match.group(2)]
    if days <= 0:
        raise ValueError(f"a window must be at least one day, got {value!r}")
    return days
