"""Build small hand-made projects for tests: a YAML model and a few rows per table, where the
right scores can be worked out by hand."""

from __future__ import annotations

import csv
import datetime as dt
import os
import textwrap
import typing as t
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from accounthealth.metrics.placing import Placing
from accounthealth.progress import Progress
from accounthealth.sources.schema import TABLES
from accounthealth.store.archive import LAYOUT_FILE


class Notes(Progress):
    """The notes a run gives the user."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


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


CHURN_MODEL = """
components:
  usage:
    weight: 100
    metrics:
      events_30d: {count: events, window: 30d, score: {linear: {bad: 0, good: 10}}}
segments:
  enterprise: {when: "segment = 'enterprise'"}
"""
CHURNERS = ["C1", "C2", "C3", "C4"]
RETAINERS = ["R1", "R2", "R3", "R4", "R5", "R6"]
ENTERPRISE = {"C4", "R5", "R6"}


def _day(offset: int) -> dt.date:
    return dt.date.fromisoformat("2025-10-01") + dt.timedelta(days=offset)


def churn_book(
    folder: Path,
    tables: dict | None = None,
    late_events: tuple = (),
    renewal_arr: dict[str, float] | None = None,
) -> Path:
    """A book whose backtest answer is known: churners (C*) never use the product and churn
    on 2026-04-01, retainers (R*) use it daily and renew (at ``renewal_arr`` instead of 1000
    where given: a contraction or expansion); the last data is 2026-06-30."""
    accounts = [
        account(a, segment="enterprise" if a in ENTERPRISE else "smb") for a in CHURNERS + RETAINERS
    ]
    contracts = []
    for a in CHURNERS + RETAINERS:
        churns = a in CHURNERS
        contracts.append(
            {"contract_id": f"{a}-1", "account_id": a, "start_date": "2025-01-01",
             "end_date": "2026-04-01", "arr": 1000, "status": "churned" if churns else "renewed"}
        )  # fmt: skip
        if not churns:
            contracts.append(
                {"contract_id": f"{a}-2", "account_id": a, "start_date": "2026-04-01",
                 "end_date": "2027-04-01", "arr": (renewal_arr or {}).get(a, 1000),
             "status": "active"}
            )  # fmt: skip
    # Retainers: one event a day from Oct 2025 to the end of June 2026 (the last data).
    events = [
        {"account_id": a, "user_id": "u1", "event_time": f"{_day(i)} 10:00:00", "event": "login"}
        for a in RETAINERS
        for i in range((dt.date.fromisoformat("2026-06-30") - _day(0)).days + 1)
    ]
    events += late_events
    data = {"accounts": accounts, "contracts": contracts, "events": events, **(tables or {})}
    return make_project(folder, CHURN_MODEL, data)


TRAJECTORY_START = dt.date(2026, 3, 1)
# The score is the day's `quantity` of product use: 0-100, so a test writes scores directly.
TRAJECTORY_MODEL = """
tiers: {green: 70, yellow: 40}
components:
  usage:
    weight: 100
    metrics:
      use_today: {sum: events.quantity, window: 1d, score: {linear: {bad: 0, good: 100}},
                  missing: {default: 0}}
"""


def trajectory_project(
    folder: Path,
    scores: dict[str, list[float]],
    model: str = TRAJECTORY_MODEL,
    renewals: dict[str, str] | None = None,
    **account_fields: dict,
) -> Path:
    """A project where account A scores ``scores[A][i]`` on TRAJECTORY_START + i days (one
    event a day of that quantity), with a contract renewing on ``renewals[A]`` (default far
    off)."""
    accounts = [account(a, **account_fields.get(a, {})) for a in scores]
    events = [
        {"account_id": a, "user_id": "u1", "event": "use", "quantity": q,
         "event_time": f"{TRAJECTORY_START + dt.timedelta(i)} 09:00:00"}
        for a, series in scores.items()
        for i, q in enumerate(series)
    ]  # fmt: skip
    contracts = [
        {"contract_id": f"{a}-1", "account_id": a, "start_date": "2025-01-01",
         "end_date": (renewals or {}).get(a, "2028-01-01"), "arr": 12000, "status": "active"}
        for a in scores
    ]  # fmt: skip
    return make_project(
        folder, model, {"accounts": accounts, "events": events, "contracts": contracts}
    )


def day_files(folder: Path, age: float = 0) -> set[str]:
    """The day files of the detail archive beside a project's store (by their path in it),
    made ``age`` seconds older first."""
    root = folder / "accounthealth.duckdb.details"
    found = set()
    for path in root.glob("*/*.parquet"):
        if path.name != LAYOUT_FILE:
            when = path.stat().st_mtime - age
            os.utime(path, (when, when))
            found.add(path.relative_to(root).as_posix())
    return found


def placed_reads(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """The columns of each read with account positions from now on (the day grid reads the
    accounts and contracts so)."""
    reads: list[set[str]] = []
    real = Placing.placed

    def placed(self: Placing, rows: t.Any, *order: str) -> pa.Table:
        reads.append(set(rows.columns))
        return real(self, rows, *order)

    monkeypatch.setattr(Placing, "placed", placed)
    return reads
