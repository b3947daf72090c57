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


def _long_frames(
    frame: pd.DataFrame, resolved: ResolvedModel, version: str
) -> dict[str, pd.DataFrame]:
    now = pd.Timestamp(dt.datetime.now())
    keys = frame[["account_id", "as_of"]].assign(model_version=version)
    scores = keys.assign(
        name=frame["name"],
        segment_model=frame["segment_model"],
        score=frame["score"],
        own_score=frame["own_score"],
        base_score=frame["base_score"],
        renewal_adjustment=frame["renewal_adjustment"],
        tier=frame["tier"],
        coverage=frame["coverage"],
        rollup_children=frame["rollup_children"].astype("int32"),
        arr=frame["arr"],
        days_to_renewal=frame["days_to_renewal"].astype("Int32"),
        segment=frame["segment"],
        owner=frame["owner"],
        manager=frame["manager"],
        parent_account_id=frame["parent_account_id"],
        computed_at=now,
    )
    components, metrics = [], []
    for seg in resolved.segments:
        rows = frame["segment_model"] == seg.segment
        if not rows.any():
            continue
        sub = frame[rows]
        sub_keys = keys[rows]
        for c in seg.components:
            share = sub[f"cw__{c.name}"]
            components.append(
                sub_keys.assign(
                    component=c.name,
                    score=sub[f"cs__{c.name}"],
                    share=share,
                    contribution=(sub[f"cs__{c.name}"] * share).fillna(0.0),
                )
            )
            for m in c.metrics:
                metrics.append(
                    sub_keys.assign(
                        component=c.name,
                        metric=m.name,
                        value=sub[f"v__{m.name}"],
                        score=sub[f"s__{m.name}"],
                        present=sub[f"p__{m.name}"].astype(bool),
                        share=sub[f"w__{m.name}"],
                        contribution=(sub[f"s__{m.name}"] * sub[f"w__{m.name}"]).fillna(0.0),
                    )
                )
    return {
        "scores": scores,
        "component_scores": pd.concat(components, ignore_index=True),
        "metric_values": pd.concat(metrics, ignore_index=True),
    }


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
    long = _long_frames(frame, resolved, version) if not frame.empty else {}
    with engine.transaction():
        record_model(engine, resolved)
        for name in SCORE_TABLES:
            # One statement per table: a scan per day would read history 31 times a batch.
            engine.sql(
                f"DELETE FROM {name} WHERE model_version = ? AND as_of BETWEEN ? AND ?",
                [version, min(dates), max(dates)],
            )
            if name in long and not long[name].empty:
                engine.write_arrow(name, pa.Table.from_pandas(long[name], preserve_index=False))
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
