"""Which source column feeds each canonical column: names as declared under `columns:` or as
found in the data, with a located error for a missing required column."""

from __future__ import annotations

import typing as t

from accounthealth.config.project import Source
from accounthealth.errors import DataError, did_you_mean
from accounthealth.sources.schema import CanonicalTable


def column_mapping(
    table: CanonicalTable, source: Source, present: t.Sequence[str], where: str
) -> dict[str, str | None]:
    """For each canonical column, the source column it comes from (None when absent)."""
    aliases = {"account": "account_id", "time": table.time}
    mapping: dict[str, str | None] = {}
    declared = {aliases.get(k, k): v for k, v in source.columns.items()}
    for canonical in declared:
        if canonical not in table.column_names:
            raise DataError(
                f"'{canonical}' is not a column of the canonical {table.name} table",
                where=f"{where}.columns.{canonical}",
                fix=did_you_mean(canonical, table.column_names),
            )
    for column in table.columns:
        name = declared.get(column.name, column.name)
        if name in present:
            mapping[column.name] = name
        elif column.name in declared:
            raise DataError(
                f"column '{name}' (mapped to {column.name}) is not in the file",
                where=where,
                fix=f"columns in the file: {did_you_mean(name, present)}",
            )
        elif column.required:
            raise DataError(
                f"required column '{column.name}' is missing",
                where=where,
                fix=f"map it with columns: {{{column.name}: <your column>}}; "
                f"{did_you_mean(column.name, present)}",
            )
        else:
            mapping[column.name] = None
    return mapping
