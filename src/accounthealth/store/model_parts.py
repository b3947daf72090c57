"""Which metric and component each score_details position holds, per model version and
segment model, with its weight (the store's ``model_parts``): the detail columns are named by
position (``m3_value``, ``c1_score``), and the views label them and work out shares from it.

A version's positions are those recorded when it first scored. A model's version is a digest
of its content whatever the order of its YAML, while positions follow that order: the same
version with its components or metrics reordered must keep the positions its history has.
"""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa

from accounthealth.engine.base import Engine
from accounthealth.metrics.definitions import ResolvedModel
from accounthealth.store.schema import widen_details

# The position of each metric and of each component, by kind and name.
Positions = dict[str, dict[str, int]]


def positions(resolved: ResolvedModel) -> Positions:
    """The positions a version gets when it first scores: in the order its metrics and
    components first appear in the model."""
    metrics = dict.fromkeys(m.name for seg in resolved.segments for m in seg.metrics)
    components = dict.fromkeys(c.name for seg in resolved.segments for c in seg.components)
    return {
        "metric": {name: i for i, name in enumerate(metrics)},
        "component": {name: i for i, name in enumerate(components)},
    }


def recorded_positions(engine: Engine, version: str) -> tuple[Positions, bool] | None:
    """The positions ``version`` recorded, and whether with weights; None if it has none."""
    rows = engine.sql(
        "SELECT kind, coalesce(metric, component) AS part, position, "
        "bool_and(weight IS NOT NULL) FROM model_parts WHERE model_version = ? "
        "GROUP BY kind, part, position",
        [version],
    )
    if not rows:
        return None
    at: Positions = {"metric": {}, "component": {}}
    for kind, name, position, _ in rows:
        at[kind][name] = position
    return at, all(weighted for *_, weighted in rows)


def version_positions(engine: Engine, resolved: ResolvedModel) -> Positions:
    """The positions of ``resolved``'s version: as recorded, else as it would record them."""
    recorded = recorded_positions(engine, resolved.version)
    return recorded[0] if recorded is not None else positions(resolved)


def record_model(engine: Engine, resolved: ResolvedModel) -> Positions:
    """Keep the definition of every model version that scores, and its parts with their
    positions and weights; give score_details the columns the model needs. Once per scoring
    run, before its batches. Returns the version's positions (``version_positions``)."""
    version = resolved.version
    recorded = recorded_positions(engine, version)
    # Parts recorded with their weights were recorded here, after the store was given the
    # version's columns (none is ever dropped): looking up the store's width again took 4-5
    # ms of a daily run.
    if recorded is not None and recorded[1]:
        return recorded[0]
    at = recorded[0] if recorded is not None else positions(resolved)
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
        # Checked again in the transaction: a version that scored before the store had
        # model_parts (its third migration) has a definition but no parts yet, and one that
        # scored before they had weights (the ninth) parts without them, kept where they are.
        again = recorded_positions(engine, version)
        if again is None or not again[1]:
            engine.sql("DELETE FROM model_parts WHERE model_version = ?", [version])
            engine.write_arrow("model_parts", parts_table(resolved, at))
            return at
    return again[0]  # recorded with weights meanwhile, by another run: those hold


def parts_table(resolved: ResolvedModel, at: Positions) -> pa.Table:
    """The model_parts rows of ``resolved`` at the positions ``at``: per segment model, each
    component and metric with its weight there."""
    rows: list[tuple[str, str, int, str, str | None, float]] = []
    for seg in resolved.segments:
        for c in seg.components:
            rows.append((seg.segment, "component", at["component"][c.name], c.name, None, c.weight))
            rows += [
                (seg.segment, "metric", at["metric"][m.name], c.name, m.name, m.weight)
                for m in c.metrics
            ]
    segment, kind, position, component, metric, weight = zip(*rows, strict=True)
    return pa.table(
        {
            "model_version": pa.array([resolved.version] * len(rows), pa.string()),
            "segment_model": pa.array(segment, pa.string()),
            "kind": pa.array(kind, pa.string()),
            "position": pa.array(position, pa.int32()),
            "component": pa.array(component, pa.string()),
            "metric": pa.array(metric, pa.string()),
            "weight": pa.array(weight, pa.float64()),
        }
    )


def detail_columns(at: Positions) -> dict[str, str]:
    """Scored columns that are metric and component detail, by their score_details column at
    the positions ``at``. They are final once scored (rollups, trend tiers and overrides
    change only the scores)."""
    columns: dict[str, str] = {}
    for name, i in at["metric"].items():
        columns |= {
            f"m{i}_value": f"v__{name}",
            f"m{i}_score": f"s__{name}",
            f"m{i}_present": f"p__{name}",
            f"m{i}_share": f"w__{name}",
        }
    for name, i in at["component"].items():
        columns |= {f"c{i}_score": f"cs__{name}", f"c{i}_share": f"cw__{name}"}
    return columns
