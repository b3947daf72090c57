"""A store written by an earlier version is upgraded in place: metric and component detail
kept in the old long tables stays readable through the same names, and rescoring its dates
replaces it instead of doubling it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

import accounthealth as ah
from accounthealth.engine.duckdb import DuckDBEngine
from accounthealth.store.schema import MIGRATIONS, migrate

from builders import account, make_project

AS_OF = dt.date(2026, 3, 31)
OLD = AS_OF - dt.timedelta(days=1)
MODEL = """
components:
  usage:
    weight: 1
    metrics:
      logins: {count: events, window: 28d, score: {linear: {bad: 0, good: 2}}}
  adoption:
    weight: 1
    metrics:
      seats: {attribute: licensed_seats, score: {linear: {bad: 0, good: 10}}}
"""
EVENTS = [{"event_id": "e1", "account_id": "A1", "user_id": "u1", "event_time": "2026-03-20 10:00"}]


def old_project(folder: Path) -> Path:
    """An ingested project whose store is as the second migration left it, with one
    account's detail for OLD."""
    make_project(folder, MODEL, {"accounts": [account("A1", licensed_seats=5)], "events": EVENTS})
    engine = DuckDBEngine(folder / "accounthealth.duckdb")
    engine.sql("CREATE TABLE schema_version (version INTEGER)")
    for number, statements in enumerate(MIGRATIONS[:2], start=1):
        for statement in statements:
            engine.sql(statement)
        engine.sql("INSERT INTO schema_version VALUES (?)", [number])
    engine.sql(
        "INSERT INTO metric_values "
        "VALUES ('A1', ?, 'old', 'usage', 'logins', 1, 50, true, 0.5, 25)",
        [OLD],
    )
    engine.sql("INSERT INTO component_scores VALUES ('A1', ?, 'old', 'usage', 50, 0.5, 25)", [OLD])
    engine.close()
    with ah.open(folder) as p:
        p.ingest()
    return folder


def dated(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(as_of=pd.to_datetime(frame["as_of"]).dt.date)


def test_old_detail_stays_readable_and_new_detail_is_one_wide_row(tmp_path: Path) -> None:
    with ah.open(old_project(tmp_path)) as p:
        p.score(AS_OF)
        metrics = dated(p.store.execute(p.store.table("metric_values")))
        components = dated(p.store.execute(p.store.table("component_scores")))
        details = p.store.execute(p.store.table("score_details"))
        assert migrate(p.store) == len(MIGRATIONS)  # migrating again changes nothing
    old = metrics[metrics["as_of"] == OLD]
    assert list(old["value"]) == [1.0] and list(old["contribution"]) == [25.0]
    new = metrics[metrics["as_of"] == AS_OF].set_index("metric")
    assert new.loc["logins", "value"] == 1.0 and new.loc["logins", "score"] == 50.0
    assert new.loc["seats", "component"] == "adoption" and bool(new.loc["seats", "present"])
    assert new.loc["seats", "contribution"] == 0.5 * 50.0
    assert sorted(components.loc[components["as_of"] == AS_OF, "component"]) == [
        "adoption",
        "usage",
    ]
    assert len(details) == 1  # one row for the account and date, every metric in it


def test_rescoring_an_old_date_replaces_its_legacy_detail(tmp_path: Path) -> None:
    with ah.open(old_project(tmp_path)) as p:
        p.score(OLD)
        p.score(OLD)
        metrics = p.store.execute(p.store.table("metric_values"))
    # The legacy row was for another model version: it stays, beside exactly one new set.
    assert sorted(metrics["model_version"] == "old") == [False, False, True]


def test_a_version_that_scored_before_the_upgrade_gets_its_detail_named(tmp_path: Path) -> None:
    folder = old_project(tmp_path)
    with ah.open(folder) as p:
        # As if this very model had scored before migration 3: its definition is recorded,
        # but the store had no model_parts then.
        p.store.sql("INSERT INTO model_versions VALUES (?, 'test', '{}', now())", [p.model.version])
        p.score(AS_OF)
        metrics = dated(p.store.execute(p.store.table("metric_values")))
    assert sorted(metrics.loc[metrics["as_of"] == AS_OF, "metric"]) == ["logins", "seats"]
