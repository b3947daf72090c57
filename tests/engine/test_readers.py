"""Queries run at once on connections of their own (accounthealth.engine.readers)."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import deltalake
import duckdb
import ibis
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from accounthealth.config.project import Source
from accounthealth.engine.duckdb import DuckDBEngine
from accounthealth.engine.parameters import parameter
from accounthealth.engine.readers import Readers, once_read


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


@pytest.mark.parametrize("kind", ["parquet", "delta"])
def test_a_reader_reads_the_sources_read_in_place_that_the_engine_names(
    engine: DuckDBEngine, tmp_path: Path, kind: str
) -> None:
    rows = pa.table({"account_id": ["a1", "a2", "a2"], "n": [1, 2, 3]})
    path = tmp_path / f"lake.{kind}"
    if kind == "parquet":
        pq.write_table(rows, path)
    else:
        deltalake.write_deltalake(str(path), rows)
    lake = engine.relation(Source(path=str(path), format=kind), where="sources.lake")
    query = engine.prepare(lake.group_by("account_id").aggregate(n=lake.n.sum()))
    expected = engine.run_prepared(query, {}).sort_by("account_id")
    # The engine named the source on its own connection: a reader names it too (the
    # history writer's connection need not).
    readers = Readers(engine, {}, 1)
    try:
        got = readers.run(query, {}).result().sort_by("account_id")
    finally:
        readers.close()
    assert (
        got.to_pylist()
        == expected.to_pylist()
        == [
            {"account_id": "a1", "n": 1},
            {"account_id": "a2", "n": 5},
        ]
    )


def test_a_connection_that_cannot_open_closes_those_opened_and_says_why(
    engine: DuckDBEngine,
) -> None:
    opened: list[DuckDBEngine] = []
    reader = engine.reader

    def second_fails() -> DuckDBEngine:
        if opened:
            raise duckdb.IOException("the lake's files are gone")
        opened.append(reader())
        return opened[-1]

    engine.reader = second_fails  # type: ignore[method-assign]
    with pytest.raises(duckdb.IOException, match="files are gone"):
        Readers(engine, {}, 2)
    with pytest.raises(duckdb.ConnectionException):
        opened[0].raw.execute("SELECT 1")


def test_the_work_on_reads_is_done_in_the_order_they_finish_with_their_outcome() -> None:
    """``once_read``: work waits for all its reads, runs as soon as they are in (the read asked
    for first, finishing last, does not hold up the other's), and its future has what the
    work gave or raised, or the pool's refusal once the pool is shut down."""
    slow, quick, failing, late = Future(), Future(), Future(), Future()
    done: list[str] = []
    with ThreadPoolExecutor(1) as working:
        first = once_read([slow, None], lambda: done.append("slow") or slow.result(), working)
        second = once_read([quick], lambda: done.append("quick") or quick.result(), working)
        both = once_read([slow, quick], lambda: done.append("both") or "both", working)
        broken = once_read([failing], failing.result, working)
        nothing = once_read([None], lambda: "nothing read", working)
        quick.set_result(pa.table({"n": [1]}))
        assert second.result(timeout=10).num_rows == 1
        assert not first.done() and not both.done()
        slow.set_result(pa.table({"n": [1, 2]}))
        assert first.result(timeout=10).num_rows == 2
        assert both.result(timeout=10) == "both"
        failing.set_exception(duckdb.IOException("the disk went away"))
        with pytest.raises(duckdb.IOException, match="the disk went away"):
            broken.result(timeout=10)
        assert nothing.result(timeout=10) == "nothing read"
        abandoned = once_read([late], lambda: "never", working)
    late.set_result(pa.table({"n": [1]}))
    with pytest.raises(RuntimeError):
        abandoned.result(timeout=10)
    assert done == ["quick", "slow", "both"]
