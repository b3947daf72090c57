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


def _history_tables(
    frame: pd.DataFrame, resolved: ResolvedModel, computed_at: dt.datetime
) -> dict[str, pa.Table]:
    """The batch as the rows of each history table (component and metric rows in long form),
    built column by column in Arrow: no statement is formatted with a name from the model."""
    version = resolved.version
    n = len(frame)
    scores = {c: pa.array(frame[c], type_, from_pandas=True) for c, type_ in SCORE_COLUMNS.items()}
    scores["model_version"] = pa.array([version] * n, pa.string())
    scores["computed_at"] = pa.array([computed_at] * n, pa.timestamp("us"))
    parts: dict[str, list[pa.Table]] = {"component_scores": [], "metric_values": []}
    segment_model = frame["segment_model"].to_numpy()
    for seg in resolved.segments:
        rows = frame[segment_model == seg.segment]
        if rows.empty:
            continue
        keys = {
            "account_id": pa.array(rows["account_id"], pa.string()),
            "as_of": pa.array(rows["as_of"], pa.date32()),
            "model_version": pa.array([version] * len(rows), pa.string()),
        }
        for c in seg.components:
            named = keys | {"component": pa.array([c.name] * len(rows), pa.string())}
            share = rows[f"cw__{c.name}"]
            parts["component_scores"].append(_long(named, rows[f"cs__{c.name}"], share))
            for m in c.metrics:
                present = pa.array(rows[f"p__{m.name}"].fillna(False).astype(bool))
                metric = named | {
                    "metric": pa.array([m.name] * len(rows), pa.string()),
                    "value": pa.array(rows[f"v__{m.name}"], pa.float64(), from_pandas=True),
                }
                parts["metric_values"].append(
                    _long(metric, rows[f"s__{m.name}"], rows[f"w__{m.name}"], present=present)
                )
    out = {"scores": pa.table(scores)}
    out.update({name: pa.concat_tables(tables) for name, tables in parts.items() if tables})
    return out


def _long(
    columns: dict[str, pa.Array],
    score: pd.Series,
    share: pd.Series,
    present: pa.Array | None = None,
) -> pa.Table:
    """One component's or metric's rows: its columns plus score, share and contribution."""
    score_a = pa.array(score, pa.float64(), from_pandas=True)
    share_a = pa.array(share, pa.float64(), from_pandas=True)
    contribution = pa.array((score * share).fillna(0.0), pa.float64(), from_pandas=True)
    extra = {"present": present} if present is not None else {}
    return pa.table(
        columns | {"score": score_a} | extra | {"share": share_a, "contribution": contribution}
    )


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
            for name, table in _history_tables(frame, resolved, dt.datetime.now()).items():
                engine.write_arrow(name, table)
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
