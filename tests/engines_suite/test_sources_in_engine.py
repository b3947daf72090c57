"""Sources already in the compute engine are read where they are: a PostgreSQL table or
query, a Parquet path on DuckDB or Spark, a Delta table on DuckDB. Scores equal those of the
same rows ingested from files, and a PostgreSQL-held store works end to end."""

from __future__ import annotations

import datetime as dt
import typing as t
from pathlib import Path

import deltalake
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import accounthealth as ah
from accounthealth.errors import AccountHealthError, ConfigError

from builders import account, make_project

AS_OF = dt.date(2026, 3, 31)
MODEL = """
components:
  usage:
    weight: 2
    metrics:
      logins: {count: events, where: "event = 'login'", window: 28d,
               score: {linear: {bad: 0, good: 4}}}
      users: {distinct: events.user_id, window: 28d, score: {linear: {bad: 0, good: 3}}}
  adoption:
    weight: 1
    metrics:
      seats: {attribute: licensed_seats, score: {linear: {bad: 0, good: 20}}}
"""
ACCOUNTS = [account("A1", licensed_seats=5), account("A2", licensed_seats=15), account("A3")]
EVENTS = [
    {
        "event_id": f"e{i}",
        "account_id": f"A{1 + i % 3}",
        "user_id": f"u{i % 4}",
        "event_time": f"2026-03-{1 + i:02d} 09:30:00",
        "event": "login" if i % 2 else "export",
    }
    for i in range(30)
]


def scores(folder: Path) -> dict[str, float]:
    with ah.open(folder) as p:
        p.ingest()
        p.score(AS_OF)
        frame = p.scores()
    return dict(zip(frame["account_id"], frame["score"], strict=True))


@pytest.fixture(scope="module")
def from_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    folder = tmp_path_factory.mktemp("files")
    return scores(make_project(folder, MODEL, {"accounts": ACCOUNTS, "events": EVENTS}))


def exported_events(events: list[dict] = EVENTS) -> pa.Table:
    """The events under the names a product-analytics export would use."""
    return pa.table(
        {
            "id": [e["event_id"] for e in events],
            "company": [e["account_id"] for e in events],
            "user": [e["user_id"] for e in events],
            "ts": pa.array(
                [dt.datetime.fromisoformat(e["event_time"]) for e in events], pa.timestamp("us")
            ),
            "name": [e["event"] for e in events],
        }
    )


def parquet_events(folder: Path) -> Path:
    path = folder / "lake" / "events.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(exported_events(), path)
    return path


MAPPING = {"event_id": "id", "account_id": "company", "user_id": "user", "event": "name"}


@pytest.mark.parametrize("kind", ["duckdb", "spark"])
def test_a_parquet_path_is_read_in_place(
    kind: str, from_files: dict[str, float], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    compute = None
    if kind == "spark":
        request.getfixturevalue("spark")
        compute = {"engine": "spark", "master": "local[2]"}
    parquet_events(tmp_path / "p")
    source = {"path": "lake/events.parquet", "columns": {**MAPPING, "time": "ts"}}
    folder = make_project(
        tmp_path / "p", MODEL, {"accounts": ACCOUNTS}, {"events": source}, compute=compute
    )
    assert scores(folder) == pytest.approx(from_files)
    # Nothing was copied: the project folder holds no events table of its own.
    assert not (folder / "spark-tables" / "events").exists()


def test_a_delta_table_is_read_at_its_latest_version_on_duckdb(
    from_files: dict[str, float], tmp_path: Path
) -> None:
    """Only the files of the table's latest version count: its folder also holds the files an
    overwrite replaced, which a read of every Parquet file there would count too."""
    table = tmp_path / "p" / "lake" / "events"
    table.mkdir(parents=True)
    junk = [{**e, "event": "login", "event_id": f"old{i}"} for i, e in enumerate(EVENTS)]
    options = {"partition_by": ["name"]}
    deltalake.write_deltalake(table, exported_events(junk), **options)
    deltalake.write_deltalake(table, exported_events(EVENTS[:12]), mode="overwrite", **options)
    deltalake.write_deltalake(table, exported_events(EVENTS[12:]), mode="append", **options)
    assert len(list(table.rglob("*.parquet"))) > 2 * len({e["event"] for e in EVENTS})
    source = {"path": "lake/events", "format": "delta", "columns": {**MAPPING, "time": "ts"}}
    folder = make_project(tmp_path / "p", MODEL, {"accounts": ACCOUNTS}, {"events": source})
    assert scores(folder) == pytest.approx(from_files)
    with ah.open(folder) as p:
        assert p.compute.execute(p.compute.table("events").count()) == len(EVENTS)


def test_a_folder_that_is_no_delta_table_says_where(tmp_path: Path) -> None:
    parquet_events(tmp_path)
    source = {"path": "lake", "format": "delta", "columns": {**MAPPING, "time": "ts"}}
    folder = make_project(tmp_path, MODEL, {"accounts": ACCOUNTS}, {"events": source})
    with pytest.raises(AccountHealthError) as err, ah.open(folder) as p:
        p.ingest()
    assert "sources.events" in err.value.where and "cannot read this source" in str(err.value)
    # An engine with no Delta reader refuses the source when the project opens.
    compute = {"engine": "ibis", "url": f"duckdb://{tmp_path / 'other.duckdb'}"}
    folder = make_project(tmp_path, MODEL, {"accounts": ACCOUNTS}, {"events": source}, compute)
    with pytest.raises(ConfigError) as refused:
        ah.open(folder)
    assert "Delta tables are read by the duckdb and spark engines" in str(refused.value)


def test_postgres_table_and_query_sources(
    from_files: dict[str, float], tmp_path: Path, postgres_server
) -> None:
    import psycopg

    url = postgres_server.new_database()
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("CREATE SCHEMA crm")
        con.execute(
            "CREATE TABLE crm.companies (id text, name text, segment text, seats int, "
            "created date, extra_flag boolean)"
        )
        for a in ACCOUNTS:
            con.execute(
                "INSERT INTO crm.companies VALUES (%s, %s, %s, %s, %s, true)",
                [a["account_id"], a["name"], a["segment"], a["licensed_seats"], a["created_at"]],
            )
        con.execute(
            "CREATE TABLE product_events (id text, company text, usr text, ts timestamp, name text)"
        )
        for e in EVENTS:
            con.execute(
                "INSERT INTO product_events VALUES (%s, %s, %s, %s, %s)",
                [e["event_id"], e["account_id"], e["user_id"], e["event_time"], e["event"]],
            )
        con.execute("INSERT INTO product_events VALUES ('bad', NULL, 'u', now(), 'login')")
    sources = {
        "accounts": {
            "table": "crm.companies",
            "columns": {
                "account_id": "id",
                "licensed_seats": "seats",
                "created_at": "created",
            },
        },
        "events": {
            "query": "SELECT id, company, usr AS user_id, ts, name FROM product_events",
            "columns": {"event_id": "id", "account_id": "company", "time": "ts", "event": "name"},
        },
    }
    folder = make_project(tmp_path, MODEL, {}, sources, compute={"engine": "postgres", "url": url})
    with ah.open(folder) as p:
        report = p.ingest()
        events = next(t for t in report.tables if t.table == "events")
        # The row without an account is left out and counted, not copied anywhere.
        assert (events.rows_read, events.rows_loaded, events.rows_rejected) == (31, 30, 1)
        assert "extra_flag" in p.compute.table("accounts").columns
    assert scores(folder) == pytest.approx(from_files)


def test_spark_table_and_query_sources(
    from_files: dict[str, float], tmp_path: Path, spark: t.Any
) -> None:
    """Tables in the Spark session's catalog: accounts a managed table in a database of its
    own, events an external table over Parquet files, read through a query."""
    companies = pa.table(
        {
            "id": [a["account_id"] for a in ACCOUNTS],
            "name": [a["name"] for a in ACCOUNTS],
            "segment": [a["segment"] for a in ACCOUNTS],
            "seats": [a["licensed_seats"] for a in ACCOUNTS],
            "created": [dt.date.fromisoformat(a["created_at"]) for a in ACCOUNTS],
        }
    )
    spark.sql("CREATE DATABASE IF NOT EXISTS crm")
    spark.createDataFrame(companies.to_pandas()).write.mode("overwrite").saveAsTable(
        "crm.companies"
    )
    lake = parquet_events(tmp_path / "lake")
    spark.sql("DROP TABLE IF EXISTS product_events")
    spark.sql(f"CREATE TABLE product_events USING parquet LOCATION '{lake.parent}'")
    sources = {
        "accounts": {
            "table": "crm.companies",
            "columns": {"account_id": "id", "licensed_seats": "seats", "created_at": "created"},
        },
        "events": {
            "query": "SELECT id, company, user AS user_id, ts, name FROM product_events",
            "columns": {"event_id": "id", "account_id": "company", "time": "ts", "event": "name"},
        },
    }
    compute = {"engine": "spark", "master": "local[2]"}
    folder = make_project(tmp_path / "p", MODEL, {}, sources, compute=compute)
    with ah.open(folder) as p:
        report = p.ingest()
        assert {r.table: r.rows_loaded for r in report.tables} == {"accounts": 3, "events": 30}
    assert scores(folder) == pytest.approx(from_files)
    # Nothing was copied into the project's own Spark tables.
    assert not (folder / "spark-tables").exists()


def test_a_path_source_on_postgres_is_refused_with_the_place(tmp_path: Path) -> None:
    folder = make_project(
        tmp_path,
        MODEL,
        {"accounts": ACCOUNTS},
        {"events": {"path": "lake/events.parquet"}},
        compute={"engine": "postgres", "url": "postgresql://nobody@127.0.0.1:1/none"},
    )
    with pytest.raises(ConfigError) as err:
        ah.open(folder)
    assert "accounthealth.yaml" in err.value.where and "path" in str(err.value)


def test_a_source_needs_exactly_one_location(tmp_path: Path) -> None:
    folder = make_project(
        tmp_path,
        MODEL,
        {"accounts": ACCOUNTS},
        {"events": {"file": "data/events.csv", "table": "events"}},
    )
    with pytest.raises(ConfigError, match="exactly one of file, table, query or path"):
        ah.open(folder)


def test_append_only_is_refused_on_a_file_source(tmp_path: Path) -> None:
    folder = make_project(
        tmp_path,
        MODEL,
        {"accounts": ACCOUNTS},
        {"events": {"file": "data/events.csv", "append_only": True}},
    )
    with pytest.raises(ConfigError, match="append_only applies to a table, query or path") as err:
        ah.open(folder)
    assert "accounthealth.yaml" in err.value.where and "events" in err.value.where


def test_store_on_postgres_end_to_end(tmp_path: Path, postgres_server) -> None:
    url = postgres_server.new_database()
    folder = make_project(tmp_path, MODEL, {"accounts": ACCOUNTS, "events": EVENTS})
    config = (folder / "accounthealth.yaml").read_text()
    (folder / "accounthealth.yaml").write_text(
        config + f"store: {{postgres: '{url}', schema: health}}\n"
    )
    with ah.open(folder) as p:
        assert p.store.kind == "postgres" and p.compute is p.store
        p.ingest()
        p.score(start=AS_OF - dt.timedelta(days=6), end=AS_OF)
        first = p.scores()
        p.score(start=AS_OF - dt.timedelta(days=6), end=AS_OF)  # re-run changes nothing
        again = p.scores()
        assert len(first) == 21 and first.drop(columns="computed_at").equals(
            again.drop(columns="computed_at")
        )
        listed = p.accounts(sort="name")
        assert list(listed["name"]) == ["Company A1", "Company A2", "Company A3"]
        explained = p.explain("A2")
        assert explained.name == "Company A2" and explained.freshness["events"] is not None
        assert p.export(tmp_path / "out.csv") == 21
    import psycopg

    with psycopg.connect(url) as con:
        # accounthealth's tables live in the configured schema.
        tables = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'health'"
            )
        }
    assert {"scores", "metric_values", "events", "ingest_runs"} <= tables
    # A broken source fails the whole ingest and leaves the store as it was.
    (folder / "data" / "events.csv").write_text("event_id,account_id\nx,A1\n")
    with ah.open(folder) as p:
        with pytest.raises(AccountHealthError):
            p.ingest()
        assert p.compute.execute(p.compute.table("events").count()) == len(EVENTS)


def test_any_ibis_backend_by_url_computes_the_same_scores(
    from_files: dict[str, float], tmp_path: Path
) -> None:
    # The generic path a warehouse takes (Snowflake, BigQuery, ...), exercised with the one
    # Ibis backend that runs here without a server: DuckDB reached by URL, not by our engine.
    url = f"duckdb://{tmp_path / 'warehouse.duckdb'}"
    folder = make_project(
        tmp_path / "p",
        MODEL,
        {"accounts": ACCOUNTS, "events": EVENTS},
        compute={"engine": "ibis", "url": url},
    )
    with ah.open(folder) as p:
        assert p.compute.kind == "ibis:duckdb" and p.compute is not p.store
    assert scores(folder) == pytest.approx(from_files)


def test_an_unreachable_ibis_url_says_what_to_check(tmp_path: Path) -> None:
    folder = make_project(
        tmp_path,
        MODEL,
        {"accounts": ACCOUNTS},
        compute={"engine": "ibis", "url": "nosuchbackend://somewhere"},
    )
    with pytest.raises(ConfigError) as err, ah.open(folder) as p:
        p.compute  # noqa: B018 - the engine connects on first use
    assert "Ibis cannot connect" in str(err.value) and "url" in err.value.where
