"""Create a project folder: the YAML files, and with ``demo`` the demo data."""

from __future__ import annotations

import datetime as dt
from importlib import resources
from pathlib import Path

from accounthealth.errors import ProjectError

TEMPLATES = ("accounthealth.yaml", "model.yaml")
# The project folder goes in git (its YAML is the health model's history); the store and the
# compiled-query cache do not.
GITIGNORE = "*.duckdb\n*.duckdb.wal\n*.details/\n.accounthealth-cache/\n"


def create(
    folder: Path,
    *,
    demo: bool,
    accounts: int = 3000,
    years: float = 2.0,
    end: dt.date | None = None,
    seed: int = 7,
) -> Path:
    """Write a new project into ``folder`` (which must not already hold one)."""
    if (folder / "accounthealth.yaml").exists():
        raise ProjectError(
            "a project already exists here",
            where=str(folder / "accounthealth.yaml"),
            fix="choose another folder, or work in this one ('accounthealth ingest')",
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name in TEMPLATES:
        text = resources.files("accounthealth.demo").joinpath(name).read_text(encoding="utf-8")
        (folder / name).write_text(text, encoding="utf-8")
    (folder / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    (folder / "data").mkdir(exist_ok=True)
    if demo:
        from accounthealth.demo.generator import generate

        generate(folder, accounts=accounts, years=years, end=end, seed=seed)
    return folder
