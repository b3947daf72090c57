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
from accounthealth.store.schema import widen_details

# The tables a batch replaces rows of (the legacy ones hold detail written before the store's
# third migration).
SCORE_TABLES = ("scores", "score_details", "component_scores_legacy", "metric_values_legacy")


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
    "churn_probability": pa.float64(),
    "computed_score": pa.float64(),
    "computed_tier": pa.string(),
    "override_id": pa.string(),
}


def positions(resolved: ResolvedModel) -> dict[str, dict[str, int]]:
    """The score_details position of each metric and component of the model, by name."""
    metrics = dict.fromkeys(m.name for seg in resolved.segments for m in seg.metrics)
    components = dict.fromkeys(c.name for seg in resolved.segments for c in seg.components)
    return {
        "metric": {name: i for i, name in enumerate(metrics)},
        "component": {name: i for i, name in enumerate(components)},
    }


def _model_parts(resolved: ResolvedModel) -> pa.Table:
    """Which metric and component each position holds, per segment model."""
    at = positions(resolved)
    rows: list[tuple[str, str, int, str, str | None]] = []
    for seg in resolved.segments:
        for c in seg.components:
            rows.append((seg.segment, "component", at["component"][c.name], c.name, None))
            rows += [
                (seg.segment, "metric", at["metric"][m.name], c.name, m.name) for m in c.metrics
            ]
    segment, kind, position, component, metric = zip(*rows, strict=True)
    return pa.table(
        {
            "model_version": pa.array([resolved.version] * len(rows), pa.string()),
            "segment_model": pa.array(segment, pa.string()),
            "kind": pa.array(kind, pa.string()),
            "position": pa.array(position, pa.int32()),
            "component": pa.array(component, pa.string()),
            "metric": pa.array(metric, pa.string()),
        }
    )


def _history_tables(
    frame: pd.DataFrame, resolved: ResolvedModel, computed_at: dt.datetime
) -> dict[str, pa.Table]:
    """The batch as rows of scores and score_details, built column by column in Arrow. Each
    column leaves the frame once converted (the frame is consumed), so a large batch is not
    held twice."""
    n = len(frame)
    version = pa.array([resolved.version] * n, pa.string())

    def take(column: str, type_: pa.DataType) -> pa.Array:
        return pa.array(frame.pop(column), type_, from_pandas=True)

    scores = {c: take(c, type_) for c, type_ in SCORE_COLUMNS.items()}
    scores["model_version"] = version
    scores["computed_at"] = pa.array([computed_at] * n, pa.timestamp("us"))
    details = {
        "account_id": scores["account_id"],
        "as_of": scores["as_of"],
        "model_version": version,
        "segment_model": scores["segment_model"],
    }
    at = positions(resolved)
    for name, i in at["metric"].items():
        details[f"m{i}_value"] = take(f"v__{name}", pa.float64())
        details[f"m{i}_score"] = take(f"s__{name}", pa.float64())
        details[f"m{i}_present"] = pa.array(
            frame.pop(f"p__{name}").astype("boolean").fillna(False).astype(bool)
        )
        details[f"m{i}_share"] = take(f"w__{name}", pa.float64())
    for name, i in at["component"].items():
        details[f"c{i}_score"] = take(f"cs__{name}", pa.float64())
        details[f"c{i}_share"] = take(f"cw__{name}", pa.float64())
    return {"scores": pa.table(scores), "score_details": pa.table(details)}


def record_model(engine: Engine, resolved: ResolvedModel) -> None:
    """Keep the definition of every model version that scores, and which metric and component
    each score_details position holds; give score_details the columns the model needs. Once
    per scoring run, before its batches."""
    version = resolved.version
    at = positions(resolved)
    widen_details(engine, len(at["metric"]), len(at["component"]))
    with engine.transaction():
        if not engine.sql("SELECT 1 FROM model_versions WHERE model_version = ?", [version]):
            definition = json.dumps(
                resolved.model.model_dump(mode="json", by_alias=True, exclude_none=True)
            )
            engine.sql(
                "INSERT INTO model_versions VALUES (?, ?, ?, ?)",
                [version, resolved.model.name, definition, dt.datetime.now()],
            )
        # Checked on its own: a version that scored before the store had model_parts (its
        # third migration) has a definition but no parts yet.
        if not engine.sql("SELECT 1 FROM model_parts WHERE model_version = ?", [version]):
            engine.write_arrow("model_parts", _model_parts(resolved))


def write_batch(
    engine: Engine, frame: pd.DataFrame, resolved: ResolvedModel, dates: t.Sequence[dt.date]
) -> int:
    """Replace history for the batch's dates (consecutive days) and model version with
    ``frame`` (after ``record_model``). The frame's columns are consumed as they are written."""
    version = resolved.version
    with engine.transaction():
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
