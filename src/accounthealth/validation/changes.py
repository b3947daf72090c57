"""Model changes: the plan (what differs between the live and a proposed model, and how each
backtests on the same dates) and the apply (the proposed file becomes the live model, with who
applied it, when, and both definitions kept in the store)."""

from __future__ import annotations

import datetime as dt
import json
import os
import typing as t
from pathlib import Path

from accounthealth.actions.audit import Entry, append
from accounthealth.config.model import HealthModel
from accounthealth.errors import AccountHealthError, ProjectError
from accounthealth.validation.backtest import BacktestOptions, measure, observe

if t.TYPE_CHECKING:
    from accounthealth.project import Project

PROPOSED = "model.proposed.yaml"


def _flat(value: t.Any, path: str = "") -> dict[str, t.Any]:
    """Dotted paths to every leaf; list items by their name when they have one (tiers)."""
    if isinstance(value, list) and all(isinstance(v, dict) and "name" in v for v in value):
        value = {v["name"]: {k: x for k, x in v.items() if k != "name"} for v in value}
    if isinstance(value, dict):
        out: dict[str, t.Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{path}.{key}" if path else str(key)))
        return out
    return {path: value}


def diff_models(live: HealthModel, proposed: HealthModel) -> list[dict]:
    """Every setting that differs (weights, tiers, metrics, renewal, segments, ...), as
    dotted paths with the live and the proposed value (None where absent)."""

    def dump(model: HealthModel) -> dict[str, t.Any]:
        return _flat(model.model_dump(mode="json", by_alias=True, exclude_none=True))

    before, after = dump(live), dump(proposed)
    return [
        {"setting": key, "live": before.get(key), "proposed": after.get(key)}
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    ]


def proposed_path(project: Project, proposed: Path | str | None) -> Path:
    path = Path(proposed) if proposed else project.folder / PROPOSED
    path = path if path.is_absolute() else project.folder / path
    if not path.exists():
        raise ProjectError(
            f"no proposed model at {path}",
            where="--proposed",
            fix="run 'accounthealth calibrate --train-until DATE' or write a model file and "
            "pass it with --proposed",
        )
    return path


def plan(project: Project, proposed: Path | str | None, options: BacktestOptions) -> dict:
    """The differences between the live and the proposed model, and both backtested on the
    same observation dates."""
    path = proposed_path(project, proposed)
    live, new = project.model, project.load_model(path)
    figures = {}
    for name, model in (("live", live), ("proposed", new)):
        figures[name] = measure(observe(project, options, model), model, options)
        figures[name].pop("signals")
    return {
        "live_version": live.version,
        "proposed_version": new.version,
        "proposed_file": str(path),
        "changes": diff_models(live.model, new.model),
        "backtest": figures,
    }


def apply(project: Project, proposed: Path | str | None, by: str, note: str = "") -> dict:
    """Make the proposed model file the live one, recording who applied it and when, and the
    definitions before and after. Scores keep the model version they were computed with."""
    if not by.strip():
        raise AccountHealthError("apply needs a name", where="--by", fix="say who applies it")
    setting = project.loaded.config.model
    if not isinstance(setting, str):
        raise ProjectError(
            "the model is written inside accounthealth.yaml",
            where=str(project.loaded.file),
            fix="move it to its own file (model: model.yaml) so a proposed file can replace it",
        )
    path = proposed_path(project, proposed)
    live, new = project.model, project.load_model(path)
    same_playbooks = new.model.playbooks_version() == live.model.playbooks_version()
    if new.version == live.version and same_playbooks:
        raise ProjectError(
            f"{path.name} is the live model already (version {live.version})",
            where=str(path),
            fix="nothing to apply",
        )
    target = project.folder / setting
    now = dt.datetime.now().replace(microsecond=0)
    lines = path.read_text().splitlines()
    body = "\n".join(line for line in lines if not line.startswith("# Proposed by")).lstrip()
    header = (
        f"# Applied {now:%Y-%m-%d %H:%M} by {by} from {path.name} (version {new.version}; "
        f"the previous version {live.version} is kept in the store's model_changes).\n"
    )
    staged = target.with_suffix(".applying")
    staged.write_text(header + body + "\n")

    def definition(model: HealthModel) -> str:
        return json.dumps(model.model_dump(mode="json", by_alias=True, exclude_none=True))

    store = project.store
    with store.transaction():
        store.sql(
            "INSERT INTO model_changes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [now, by, live.version, new.version, str(target), definition(live.model),
             definition(new.model), note],
        )  # fmt: skip
        details = {
            "from_version": live.version,
            "to_version": new.version,
            "note": note,
            "file": str(target),
            "playbooks_changed": not same_playbooks,
        }
        append(store, [Entry(by, "model.applied", new.version, None, details)], now)
        # Inside the transaction: if the file cannot be replaced, no change is recorded.
        os.replace(staged, target)
    if path != target:
        path.unlink()
    return {
        "applied_at": now,
        "applied_by": by,
        "from_version": live.version,
        "to_version": new.version,
        "model_file": str(target),
        "changes": diff_models(live.model, new.model),
    }
