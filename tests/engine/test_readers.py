"""Queries run at once on connections of their own (accounthealth.engine.readers)."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import duckdb
import ibis
import pyarrow as pa
import pytest

from accounthealth.engine.duckdb import DuckDBEngine
from accounthealth.engine.parameters import parameter
from accounthealth.engine.readers import Readers


@pytest.fixture
def engine(tmp_path: Path) -> DuckDBEngine:
    engine = DuckDBEngine(tmp_path / "book.duckdb")
    engine.sql(
        "CREATE TABLE events AS SELECT 'a' || (i % 7) AS account_id,"
        " DATE '2026-07-01' + (i % 5)::INT AS day FROM range(1000) t(i)"
    )
    return engine


def _day_counts(engine: DuckDBEngine):
    """Each named account's rows on the day given, with the names as an attached table."""
    events, names = engine.table("events"), ibis.table({"account_id": "string"}, name="wanted")
    rows = events.filter(events.day == parameter("day", "date"))
    rows = rows.join(names, "account_id")
    return engine.prepare(
        rows.group_by("account_id").aggregate(n=rows.count()).order_by("account_id")
    )


def test_readers_give_what_the_engine_gives_on_connections_of_their_own(
    engine: DuckDBEngine,
) -> None:
    query = _day_counts(engine)
    wanted = pa.table({"account_id": ["a1", "a3", "a6"]})
    with engine.attached("wanted", wanted):
        expected = [
            engine.run_prepared(query, {"day": dt.date(2026, 7, 1) + dt.timedelta(days=k)})
            for k in range(5)
        ]
    # While the engine's own connection is in a transaction of its own: the readers are not
    # inside it.
    engine.sql("BEGIN TRANSACTION")
    engine.sql("DELETE FROM events")
    readers = Readers(engine, {"wanted": wanted}, 2)
    try:
        futures = [
            readers.run(query, {"day": dt.date(2026, 7, 1) + dt.timedelta(days=k)})
            for k in range(5)
        ]
        got = [future.result() for future in futures]
    finally:
        readers.close()
        engine.sql("ROLLBACK")
    assert [table.to_pylist() for table in got] == [table.to_pylist() for table in expected]
    assert all(table.num_rows == 3 for table in got)
    assert not any(t.name.startswith("accounthealth-reads") for t in threading.enumerate())


def test_a_failing_read_raises_its_error_and_every_connection_is_closed(
    engine: DuckDBEngine,
) -> None:
    query = _day_counts(engine)
    opened: list[DuckDBEngine] = []
    reader = engine.reader

    def counted() -> DuckDBEngine:
        opened.append(reader())
        return opened[-1]

    engine.reader = counted  # type: ignore[method-assign]
    # Nothing attached under the name the query reads: it fails in the reader's thread.
    readers = Readers(engine, {}, 2)
    future = readers.run(query, {"day": dt.date(2026, 7, 1)})
    with pytest.raises(duckdb.CatalogException, match="wanted"):
        future.result()
    readers.close()
    assert opened
    for connection in opened:
        with pytest.raises(duckdb.ConnectionException):
            connection.raw.execute("SELECT 1")
