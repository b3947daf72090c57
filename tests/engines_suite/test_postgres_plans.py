"""PostgreSQL plans the metric grid step by step, and sorts for a distinct count only the rows
of its window.

Each derived table that the planner would merge into its parent, although the parent reads one
of its computed columns twice, is fenced with OFFSET 0: merged, its expressions were pasted
wherever they were read (the demo model's scoring plan, when scores were computed in SQL, was
36 times its SQL, and the query ran 50 times slower on a large book). And on PostgreSQL a date's
aggregates over one table are split into scans by how far back they read, because it sorts a
group's rows for each DISTINCT aggregate."""

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
from accounthealth.scoring.grid import grid_query
from engines import PostgresServer

END = dt.date(2026, 6, 30)


@pytest.fixture
def project(tmp_path: Path, postgres_server: PostgresServer) -> Path:
    folder = create(tmp_path / "p", demo=True, accounts=40, years=1, end=END)
    config = yaml.safe_load((folder / "accounthealth.yaml").read_text())
    config["compute"] = {"engine": "postgres", "url": postgres_server.new_database()}
    (folder / "accounthealth.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_grid_plan_grows_with_the_query_not_with_its_reuse(project: Path) -> None:
    with ah.open(project) as p:
        p.ingest()
        grid = grid_query(p.compute, p.model, [END])
        sql = p.compute.ibis.compile(grid)
        plan = p.compute.raw.execute(f"EXPLAIN VERBOSE {sql}").fetchall()
        rows = p.compute.raw.execute(sql).fetchall()
        population = p.compute.execute(metric_values(p.compute, p.model, [END])[0].count())
    assert "OFFSET 0" in sql
    # Every expression is planned once: the plan is about as long as the query itself.
    assert len("\n".join(row[0] for row in plan)) < 2 * len(sql)
    assert len(rows) == population > 30


@pytest.mark.parametrize(
    ("sql", "fenced"),
    [
        # A computed column read twice by the parent: fenced; the pass-through below is not.
        (
            "SELECT t2.b * t2.b AS c "
            "FROM (SELECT t1.b + 1 AS b FROM (SELECT t.b FROM t) AS t1) AS t2",
            ["t2"],
        ),
        # A computed column passed on by a join's select, or by *, is computed there too.
        (
            "SELECT t5.x * t5.x FROM (SELECT t1.x, t2.y FROM (SELECT t.a + 1 AS x, t.k FROM t) "
            "AS t1 LEFT JOIN u AS t2 ON t1.k = t2.k) AS t5",
            ["t5"],
        ),
        ("SELECT t5.x + t5.x FROM (SELECT * FROM (SELECT t.a + 1 AS x FROM t) t1) t5", ["t5"]),
        # Read once: merging it duplicates nothing, and keeps the parent's filters pushed in.
        ("SELECT t2.b AS c FROM (SELECT t.b + 1 AS b FROM t) AS t2 WHERE t2.a = 1", []),
        # Windows, aggregates and LIMIT keep a subquery apart already.
        (
            "SELECT t2.r, t2.r FROM (SELECT t.a, ROW_NUMBER() OVER (ORDER BY t.b) AS r FROM t) "
            "AS t2 WHERE t2.a = 1",
            [],
        ),
        ("SELECT t2.n + t2.n FROM (SELECT t.a, COUNT(*) AS n FROM t GROUP BY t.a) AS t2", []),
        ("SELECT t2.b + t2.b FROM (SELECT t.b * 2 AS b FROM t LIMIT 5) AS t2", []),
        # Only derived tables: a subquery in a condition is not one.
        ("SELECT t.a FROM t WHERE t.a IN (SELECT u.a + u.a FROM u)", []),
    ],
)  # fmt: skip
def test_fenced_derived_tables(sql: str, fenced: list[str]) -> None:
    statement = fence_subqueries(sqlglot.parse_one(sql, read="postgres"))
    offsets = [
        subquery.alias
        for subquery in statement.find_all(sqlglot.exp.Subquery)
        if subquery.this.args.get("offset")
    ]
    assert offsets == fenced
    assert statement.sql(dialect="postgres").replace(" OFFSET 0", "") == sqlglot.parse_one(
        sql, read="postgres"
    ).sql(dialect="postgres")


def _sorted_rows(node: dict) -> list[int]:
    """Rows each Sort node of an EXPLAIN ANALYZE plan (JSON) sorted."""
    rows = [node["Actual Rows"]] if node["Node Type"] == "Sort" else []
    for child in node.get("Plans", []):
        rows += _sorted_rows(child)
    return rows


def test_windowed_distinct_counts_sort_only_their_window(project: Path) -> None:
    # The demo model counts distinct users and features over 28 days and reads the last use
    # over all history: one scan of events for all of them sorted every event of the year.
    with ah.open(project) as p:
        p.ingest()
        sql = p.compute.ibis.compile(metric_values(p.compute, p.model, [END])[0])
        (plan,) = p.compute.raw.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}").fetchone()
        events = p.compute.raw.execute("SELECT count(*) FROM events").fetchone()[0]
    sorts = _sorted_rows(plan[0]["Plan"])
    assert sorts, "the distinct counts are computed by sorting"
    assert max(sorts) < events / 2
