"""PostgreSQL plans the scoring query step by step: each derived table that computes columns is
fenced with OFFSET 0, so the planner does not pull it into its parent and paste its
expressions wherever they are read (the demo model's plan was 36 times its SQL without the
fences, and the query ran 50 times slower on a large book)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlglot
import yaml

import accounthealth as ah
from accounthealth.demo.project import create
from accounthealth.engine.postgres import fence_subqueries
from accounthealth.metrics.compute import metric_values
from accounthealth.scoring.run import _scored
from engines import PostgresServer

END = dt.date(2026, 6, 30)


@pytest.fixture
def project(tmp_path: Path, postgres_server: PostgresServer) -> Path:
    folder = create(tmp_path / "p", demo=True, accounts=40, years=1, end=END)
    config = yaml.safe_load((folder / "accounthealth.yaml").read_text())
    config["compute"] = {"engine": "postgres", "url": postgres_server.new_database()}
    (folder / "accounthealth.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_scoring_plan_grows_with_the_query_not_with_its_reuse(project: Path) -> None:
    with ah.open(project) as p:
        p.ingest()
        grid, value_columns = metric_values(p.compute, p.model, [END])
        with p.compute.cache(grid) as cached:
            sql = p.compute.ibis.compile(_scored(cached, p.model, value_columns))
            plan = p.compute.raw.execute(f"EXPLAIN VERBOSE {sql}").fetchall()
            rows = p.compute.raw.execute(sql).fetchall()
            population = p.compute.execute(cached.count())
    assert "OFFSET 0" in sql
    # Every expression is planned once: the plan is about as long as the query itself.
    assert len("\n".join(row[0] for row in plan)) < 2 * len(sql)
    assert len(rows) == population > 30


def test_only_derived_tables_that_compute_are_fenced() -> None:
    statement = sqlglot.parse_one(
        "SELECT a, b FROM (SELECT a, b + 1 AS b FROM (SELECT a, b FROM t) AS t1) AS t2 "
        "WHERE a IN (SELECT a + 1 FROM u) "
        "UNION ALL SELECT * FROM (SELECT a, b * 2 AS b FROM t LIMIT 5) AS t3",
        read="postgres",
    )
    fenced = fence_subqueries(statement).sql(dialect="postgres")
    assert fenced == (
        "SELECT a, b FROM (SELECT a, b + 1 AS b FROM (SELECT a, b FROM t) AS t1 OFFSET 0) AS t2 "
        "WHERE a IN (SELECT a + 1 FROM u) "
        "UNION ALL SELECT * FROM (SELECT a, b * 2 AS b FROM t LIMIT 5) AS t3"
    )
