"""Build small hand-made projects for tests: a YAML model and a few rows per table, where the
right scores can be worked out by hand."""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import yaml

from accounthealth.sources.schema import TABLES


def write_csv(path: Path, rows: list[dict], fields: list[str] | None = None) -> Path:
    """Write rows (dicts) as CSV; missing keys are empty cells."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = fields or list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in fields})
    return path


def account(account_id: str, **kw: object) -> dict:
    base = {
        "account_id": account_id,
        "name": f"Company {account_id}",
        "segment": "smb",
        "plan": "growth",
        "owner": "Ana",
        "manager": "Max",
        "licensed_seats": 10,
        "created_at": "2025-01-01",
    }
    return {**base, **kw}


def make_project(
    folder: Path,
    model: str | dict,
    tables: dict[str, list[dict]],
    sources: dict[str, dict] | None = None,
    compute: dict | None = None,
) -> Path:
    """Write accounthealth.yaml, model.yaml and one CSV per table into ``folder``; ``compute``
    is the project's `compute:` setting (None: the embedded DuckDB)."""
    folder.mkdir(parents=True, exist_ok=True)
    srcs = {}
    for name, rows in tables.items():
        # Canonical columns first, so an empty table still has its header.
        canonical = TABLES[name].column_names if name in TABLES else ()
        fields = list(dict.fromkeys([*canonical, *(k for r in rows for k in r)]))
        write_csv(folder / "data" / f"{name}.csv", rows, fields)
        srcs[name] = {"file": f"data/{name}.csv"}
    srcs.update(sources or {})
    config = {"name": "test", "model": "model.yaml", "sources": srcs}
    if compute:
        config["compute"] = compute
    (folder / "accounthealth.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    text = model if isinstance(model, str) else yaml.safe_dump(model, sort_keys=False)
    (folder / "model.yaml").write_text(textwrap.dedent(text))
    return folder
