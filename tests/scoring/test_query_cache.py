"""The compiled-query cache: a daily run reuses the metric query compiled for its model,
with the date as a bound parameter, and scores exactly as a fresh compile does; anything that
shapes the SQL gives another cache entry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import accounthealth as ah
from accounthealth.metrics.compute import AsOf
from accounthealth.scoring.querycache import fingerprint
from accounthealth.scoring.run import score_table
from engines import PostgresServer

from builders import account, make_project

DAY = dt.date(2026, 3, 31)

# Every kind of date bound (windows, a change's previous window, active rows, days since,
# latest) and two segment models, one with a percentile.
MODEL = """
renewal: {within_days: 60, amplify: 1}
components:
  usage:
    weight: 60
    metrics:
      events_7d: {count: events, window: 7d, score: {linear: {bad: 0, good: 4}}}
      trend: {change: {count: events, window: 7d}, score: {bands: {-50%: 0, 0%: 70, 50%: 100}}}
      peers: {sum: events.quantity, window: 30d, score: {percentile: {within: all}}}
      last: {days_since: events, score: {linear: {bad: 30, good: 0}}, missing: {default: 0}}
      latest_qty: {latest: events.quantity, score: {linear: {bad: 0, good: 5}}}
  support:
    weight: 40
    metrics:
      open_p1: {count: tickets, where: "priority = 'P1'", active: true,
                score: {bands: {0: 100, 1: 40, 2: 0}}}
segments:
  enterprise:
    when: "segment = 'enterprise'"
    weights: {usage: 20, support: 80}
"""


def _rows() -> dict[str, list[dict]]:
    def at(day: int, hour: int = 9) -> str:
        return (dt.datetime(2026, 3, 1, hour) + dt.timedelta(days=day)).isoformat(sep=" ")

    accounts = [account(f"A{i}", segment="enterprise" if i % 2 else "smb") for i in range(6)]
    events = [
        {
            "event_id": f"e{n}",
            "account_id": f"A{n % 5}",
            "user_id": "u1",
            "event_time": at(n % 40),
            "event": "login",
            "quantity": n % 4,
        }
        for n in range(80)
    ]
    tickets = [
        {
            "ticket_id": f"t{n}",
            "account_id": f"A{n % 3}",
            "opened_at": at(n * 3),
            "closed_at": at(n * 3 + 5) if n % 2 else "",
            "priority": "P1",
        }
        for n in range(10)
    ]
    return {"accounts": accounts, "events": events, "tickets": tickets}


@pytest.fixture()
def project(tmp_path: Path) -> ah.Project:
    folder = make_project(tmp_path / "p", MODEL, _rows())
    with ah.open(folder) as p:
        p.ingest()
        yield p


def _entries(p: ah.Project) -> list[Path]:
    return sorted(p.query_cache.folder.glob("*.json"))


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["account_id", "as_of"]).reset_index(drop=True)


def _assert_cached_like_fresh(project: ah.Project) -> None:
    cache = project.query_cache
    for offset in (0, 9, 30):  # the first compiles and stores; the others reuse it
        day = DAY - dt.timedelta(days=offset)
        cached = _sorted(score_table(project.compute, project.model, [day], cache).to_pandas())
        fresh = _sorted(score_table(project.compute, project.model, [day]).to_pandas())
        pd.testing.assert_frame_equal(cached, fresh)
    assert len(_entries(project)) == 1


def test_a_cached_query_scores_like_a_fresh_compile(project: ah.Project) -> None:
    _assert_cached_like_fresh(project)
    # And the daily run through the facade stores what a batch of one computes.
    project.score(DAY)
    assert len(_entries(project)) == 1
    stored = project.scores(DAY, DAY).set_index("account_id")["score"]
    batch = _sorted(
        score_table(project.compute, project.model, [DAY, DAY - dt.timedelta(1)]).to_pandas()
    )
    expected = batch[batch["as_of"] == DAY].set_index("account_id")["own_score"]
    pd.testing.assert_series_equal(stored.sort_index(), expected.sort_index(), check_names=False)


def test_postgres_keeps_its_compiled_queries_too(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    compute = {"engine": "postgres", "url": postgres_server.new_database()}
    folder = make_project(tmp_path / "p", MODEL, _rows(), compute=compute)
    with ah.open(folder) as p:
        p.ingest()
        _assert_cached_like_fresh(p)
        p.score(DAY)
        expected = p.scores(DAY, DAY)
    # Another process: the day's run reads the stored query, and scores the same.
    with ah.open(folder) as p:
        p.score(DAY)
        assert p.query_cache.get(p.query_cache.key(p.compute, p.model)) is not None
        pd.testing.assert_frame_equal(
            p.scores(DAY, DAY).drop(columns="computed_at"), expected.drop(columns="computed_at")
        )
    assert len(list((folder / ".accounthealth-cache").rglob("*.json"))) == 1


def test_what_shapes_the_sql_changes_the_fingerprint(project: ah.Project, tmp_path: Path) -> None:
    key = fingerprint(project.compute, project.model)
    assert fingerprint(project.compute, project.model) == key
    # Another model version.
    (project.folder / "model.yaml").write_text(MODEL.replace("weight: 60", "weight: 65"))
    assert fingerprint(project.compute, project.load_model("model.yaml")) != key
    # Another layout of the same data: an extra account column.
    rows = _rows()
    rows["accounts"] = [{**a, "region": "emea"} for a in rows["accounts"]]
    other = make_project(tmp_path / "other", MODEL, rows)
    with ah.open(other) as p:
        p.ingest()
        assert fingerprint(p.compute, p.model) != key


def test_a_columns_type_or_a_table_coming_changes_the_fingerprint(project: ah.Project) -> None:
    engine = project.compute
    key = fingerprint(engine, project.model)
    shapes = engine.describe_tables(["accounts", "outcomes"])
    assert "account_id VARCHAR" in shapes["accounts"] and shapes["outcomes"] == ""
    assert engine.column_names("accounts")[0] == "account_id"
    engine.sql("CREATE TABLE outcomes (account_id VARCHAR, outcome VARCHAR)")
    with_outcomes = fingerprint(engine, project.model)
    assert with_outcomes != key
    engine.sql("ALTER TABLE outcomes ALTER outcome TYPE INTEGER")
    assert fingerprint(engine, project.model) not in (key, with_outcomes)


def test_parquet_files_read_in_place_keep_their_queries_from_run_to_run(tmp_path: Path) -> None:
    # Read under a name of their own, not one drawn anew by each process: a daily run finds
    # the query compiled by the day before's, after the day's file was added too.
    rows = _rows()
    events = rows.pop("events")
    lake = tmp_path / "p" / "lake"
    lake.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(events[:60]), lake / "0.parquet")
    folder = make_project(tmp_path / "p", MODEL, rows, {"events": {"path": "lake/*.parquet"}})
    with ah.open(folder) as p:
        p.ingest()
        key = fingerprint(p.compute, p.model)
        p.score(DAY)
    pq.write_table(pa.Table.from_pylist(events[60:]), lake / "1.parquet")
    with ah.open(folder) as p:
        assert fingerprint(p.compute, p.model) == key
        assert p.query_cache.get(key) is not None
        assert p.compute.execute(p.compute.table("events").count()) == 80


def test_a_damaged_entry_is_compiled_again(project: ah.Project) -> None:
    columns = ["account_id", "score", "tier", "coverage"]
    project.score(DAY)
    [entry] = _entries(project)
    expected = project.scores(DAY, DAY)[columns]
    entry.write_text('{"format": 1, "queries": {"grid": ')
    project.score(DAY)
    pd.testing.assert_frame_equal(project.scores(DAY, DAY)[columns], expected)
    assert entry.read_text().endswith("}")


def test_a_cache_folder_that_cannot_be_written_only_costs_a_compile(project: ah.Project) -> None:
    project.query_cache.folder.parent.mkdir(parents=True)
    project.query_cache.folder.write_text("not a folder")
    assert project.score(DAY).rows == 6


def test_parameter_values_are_the_bounds_of_each_shift() -> None:
    values = AsOf.parameter_values(DAY, ["d0", "d7", "t0", "t14"])
    assert values == {
        "d0": DAY,
        "d7": dt.date(2026, 3, 24),
        "t0": dt.datetime(2026, 4, 1),
        "t14": dt.datetime(2026, 3, 18),
    }
