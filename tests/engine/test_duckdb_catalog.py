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
    assert engine.column_names("hidden") == []
