"""Write scored batches to history and read them back.

A batch replaces the rows of its dates and model version in one transaction, so scoring the
same dates again changes no result, and a failed run leaves history as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

from accounthealth.engine.base import Engine
from accounthealth.metrics.definitions import ResolvedModel

SCORE_TABLES = ("scores", "component_scores", "metric_values")


# Columns of the scores table taken as they are from the scored frame, with their types.
SCORE_COLUMNS = {
    "account_id": pa.string(),
    "as_of": pa.date32(),
    "name": pa.string(),
    "segment_model": pa.string(),
    "score": pa.float64(),
    "own_score": pa.float64(),
    "base_score": pa.float64(),
    "renewal_adjustment": pa.float64(),
    "tier": pa.string(),
    "coverage": pa.float64(),
    "rollup_children": pa.int32(),
    "arr": pa.float64(),
    "days_to_renewal": pa.int32(),
    "segment": pa.string(),
    "owner": pa.string(),
    "manager": pa.string(),
    "parent_account_id": pa.string(),
}
STAGING = "_scored_batch"


def _staging(frame: pd.DataFrame, resolved: ResolvedModel) -> tuple[pa.Table, list[tuple]]:
    """The batch as one wide Arrow table whose columns have generated names (``m3_v``), and
    the parts to unpivot from it: (table, segment, component, metric, generated prefix).

    History tables are then derived inside the store with fixed SQL, so neither a name from
    the model nor a value is ever formatted into a statement.
    """
    columns: dict[str, pa.Array] = {
        c: pa.array(frame[c], type_, from_pandas=True) for c, type_ in SCORE_COLUMNS.items()
    }
    parts: list[tuple] = []
    number = 0
    for seg in resolved.segments:
        for c in seg.components:
            prefix = f"c{number}"
            number += 1
            if f"{prefix}_s" not in columns:
                columns[f"{prefix}_s"] = pa.array(frame[f"cs__{c.name}"], pa.float64())
                columns[f"{prefix}_w"] = pa.array(frame[f"cw__{c.name}"], pa.float64())
            parts.append(("component_scores", seg.segment, c.name, None, prefix))
            for m in c.metrics:
                mp = f"m{number}"
                number += 1
                columns[f"{mp}_v"] = pa.array(frame[f"v__{m.name}"], pa.float64(), from_pandas=True)
                columns[f"{mp}_s"] = pa.array(frame[f"s__{m.name}"], pa.float64(), from_pandas=True)
                columns[f"{mp}_p"] = pa.array(frame[f"p__{m.name}"].fillna(False).astype(bool))
                columns[f"{mp}_w"] = pa.array(frame[f"w__{m.name}"], pa.float64(), from_pandas=True)
                parts.append(("metric_values", seg.segment, c.name, m.name, mp))
    return pa.table(columns), parts


def _insert_statements(parts: list[tuple], version: str) -> list[tuple[str, list[t.Any]]]:
    """One INSERT ... SELECT per history table, a UNION ALL over the batch's parts."""
    out = []
    for table in ("component_scores", "metric_values"):
        selects, params = [], []
        for target, segment, component, metric, p in parts:
            if target != table:
                continue
            if table == "component_scores":
                selects.append(
                    f"SELECT account_id, as_of, ?, ?, {p}_s, {p}_w, coalesce({p}_s * {p}_w, 0.0) "
                    f"FROM {STAGING} WHERE segment_model = ?"
                )
                params += [version, component, segment]
            else:
                selects.append(
                    f"SELECT account_id, as_of, ?, ?, ?, {p}_v, {p}_s, {p}_p, {p}_w, "
                    f"coalesce({p}_s * {p}_w, 0.0) FROM {STAGING} WHERE segment_model = ?"
                )
                params += [version, component, metric, segment]
        if selects:
            out.append((f"INSERT INTO {table} " + " UNION ALL ".join(selects), params))
    return out


def record_model(engine: Engine, resolved: ResolvedModel) -> None:
    """Keep the definition of every model version that has produced scores."""
    version = resolved.version
    if engine.sql("SELECT 1 FROM model_versions WHERE model_version = ?", [version]):
        return
    definition = json.dumps(
        resolved.model.model_dump(mode="json", by_alias=True, exclude_none=True)
    )
    engine.sql(
        "INSERT INTO model_versions VALUES (?, ?, ?, ?)",
        [version, resolved.model.name, definition, dt.datetime.now()],
    )


def write_batch(
    engine: Engine, frame: pd.DataFrame, resolved: ResolvedModel, dates: t.Sequence[dt.date]
) -> int:
    """Replace history for the batch's dates (consecutive days) and model version with
    ``frame``."""
    version = resolved.version
    with engine.transaction():
        record_model(engine, resolved)
        for name in SCORE_TABLES:
            # One statement per table: a scan per day would read history 31 times a batch.
            engine.sql(
                f"DELETE FROM {name} WHERE model_version = ? AND as_of BETWEEN ? AND ?",
                [version, min(dates), max(dates)],
            )
        if not frame.empty:
            staged, parts = _staging(frame, resolved)
            with engine.staged(STAGING, staged):
                columns = ", ".join(SCORE_COLUMNS)
                engine.sql(
                    f"INSERT INTO scores ({columns}, model_version, computed_at) "
                    f"SELECT {columns}, ?, ? FROM {STAGING}",
                    [version, dt.datetime.now()],
                )
                for statement, params in _insert_statements(parts, version):
                    engine.sql(statement, params)
    return len(frame)


def current(engine: Engine, version: str) -> ir.Table:
    """Score history with one row per account and date: the given (live) model version where it
    has scored that date, else the most recently computed version."""
    scores = engine.table("scores")
    rank = ibis.row_number().over(
        ibis.window(
            group_by=[scores.account_id, scores.as_of],
            order_by=[(scores.model_version == version).desc(), scores.computed_at.desc()],
        )
    )
    return scores.mutate(_rank=rank).filter(ibis._._rank == 0).drop("_rank")


def history_for(engine: Engine, version: str, dates: t.Sequence[dt.date]) -> pd.DataFrame:
    """Stored scores on the given dates (for trend comparisons)."""
    if not dates:
        return pd.DataFrame(columns=["account_id", "as_of", "score"])
    table = current(engine, version)
    table = table.filter(table.as_of.isin(list(dates))).select("account_id", "as_of", "score")
    return engine.execute(table)
