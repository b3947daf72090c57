"""DuckDB's look-ups of its catalog, made without Ibis, list what Ibis lists."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from accounthealth.engine.duckdb import DuckDBEngine


def test_the_tables_listed_are_those_ibis_lists(tmp_path: Path) -> None:
    engine = DuckDBEngine(tmp_path / "book.duckdb")
    engine.sql("CREATE TABLE accounts (account_id VARCHAR, arr DOUBLE)")
    engine.sql("CREATE VIEW big AS SELECT * FROM accounts WHERE arr > 100")
    engine.sql("CREATE TEMP TABLE scratch (n INTEGER)")
    engine.sql("CREATE SCHEMA elsewhere")
    engine.sql("CREATE TABLE elsewhere.hidden (n INTEGER)")
    engine.raw.register("attached_rows", pa.table({"n": [1]}))
    listed = engine.table_names()
    assert listed == set(engine.ibis.list_tables())
    assert {"accounts", "big", "scratch", "attached_rows"} <= listed and "hidden" not in listed
    assert engine.has_table("big") and not engine.has_table("hidden")
    assert engine.column_names("accounts") == ["account_id", "arr"]
    assert engine.column_names("big") == ["account_id", "arr"]


def test_a_tables_shape_is_its_own_and_a_views_is_as_ibis_reads_it(tmp_path: Path) -> None:
    engine = DuckDBEngine(tmp_path / "book.duckdb")
    engine.sql("CREATE TABLE contracts (account_id VARCHAR NOT NULL, arr DECIMAL(18,3))")
    engine.sql("CREATE VIEW live AS SELECT * FROM contracts")
    engine.sql("CREATE TABLE accounts (a INTEGER, b INTEGER)")
    engine.sql("CREATE TEMP TABLE accounts (a INTEGER)")  # the connection's own, read first
    shapes = engine.describe_tables(["contracts", "accounts", "live"])
    assert shapes["contracts"] == "account_id VARCHAR NOT NULL\narr DECIMAL(18,3)"
    assert shapes["accounts"] == "a INTEGER" and engine.column_names("accounts") == ["a"]
    # The catalog keeps the types a view's columns had when it was made: Ibis's look-up
    # sees the table's now.
    engine.sql("ALTER TABLE contracts ALTER arr TYPE DECIMAL(20,5)")
    assert "decimal(20, 5)" in engine.describe_tables(["live"])["live"]
    assert engine.describe_tables(["contracts"])["contracts"].endswith("DECIMAL(20,5)")


def test_tables_fixed_for_a_run_are_the_tables_ibis_looks_up(tmp_path: Path) -> None:
    """Within ``tables_fixed`` the tables are looked up at once from the catalog: each is the
    table Ibis's own look-up gives (types, nullability, the connection's temporary table first),
    and a view (a temporary one over a table of the same name too) or a missing name is looked
    up as before."""
    engine = DuckDBEngine(tmp_path / "book.duckdb")
    engine.sql(
        "CREATE TABLE contracts (account_id VARCHAR NOT NULL, arr DECIMAL(18,3), "
        "start_date DATE, tags VARCHAR[], seen TIMESTAMP, n BIGINT)"
    )
    engine.sql("CREATE TABLE accounts (a INTEGER, b INTEGER)")
    engine.sql("CREATE TEMP TABLE accounts (a INTEGER)")
    engine.sql("CREATE VIEW live AS SELECT account_id FROM contracts")
    engine.sql("CREATE TABLE tickets (n INTEGER, day DATE, ok BOOLEAN, seen TIMESTAMPTZ)")
    engine.sql("CREATE TABLE events (n INTEGER, day DATE)")
    engine.sql("CREATE TEMP VIEW events AS SELECT 1 AS n")  # what SQL reads as events
    names = ["contracts", "accounts", "tickets", "live", "events", "missing"]
    with engine.tables_fixed(names):
        looked_up = dict(engine._found)
        assert set(looked_up) == {"contracts", "accounts", "tickets"}
        for name in ("contracts", "accounts", "tickets", "live", "events"):
            assert engine.table(name).op() == engine.ibis.table(name).op()
        assert engine.table("accounts").columns == ("a",)
        assert engine.table("events").columns == ("n",)
        assert not engine.has_table("missing")
        assert engine.to_arrow(engine.table("contracts").count().as_table()).num_rows == 1
    assert engine._found == {}
