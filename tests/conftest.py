"""Shared test setup: make tests/builders.py importable, and the engines of the
engine-agnostic suite (a test that takes ``compute`` runs once per engine)."""

from __future__ import annotations

import sys
import typing as t
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from engines import ENGINES, PostgresServer, spark_session


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--engines",
        default=",".join(ENGINES),
        help="comma-separated engines for the engine-agnostic tests (default: all three)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine_kind" in metafunc.fixturenames:
        kinds = [k for k in metafunc.config.getoption("engines").split(",") if k]
        unknown = set(kinds) - set(ENGINES)
        if unknown:
            raise pytest.UsageError(f"--engines: unknown {sorted(unknown)}; use {ENGINES}")
        metafunc.parametrize("engine_kind", kinds, scope="module")
    if "other_engine" in metafunc.fixturenames:
        # Engines compared against the embedded DuckDB reference.
        kinds = [k for k in metafunc.config.getoption("engines").split(",") if k != "duckdb"]
        metafunc.parametrize("other_engine", kinds, scope="module")


@pytest.fixture(scope="session")
def postgres_server() -> t.Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole test session."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> t.Any:
    """The local Spark session (started once: it takes seconds)."""
    return spark_session(tmp_path_factory.mktemp("spark") / "warehouse")


@pytest.fixture(scope="module")
def new_compute(
    engine_kind: str, request: pytest.FixtureRequest
) -> t.Callable[[], dict[str, t.Any] | None]:
    """Makes the `compute:` setting of a fresh project on the engine under test."""

    def make() -> dict[str, t.Any] | None:
        if engine_kind == "postgres":
            server = request.getfixturevalue("postgres_server")
            return {"engine": "postgres", "url": server.new_database()}
        if engine_kind == "spark":
            request.getfixturevalue("spark")
            return {"engine": "spark", "master": "local[2]"}
        return None

    return make


@pytest.fixture
def compute(new_compute: t.Callable[[], dict[str, t.Any] | None]) -> dict[str, t.Any] | None:
    """The `compute:` setting for one test's project on the engine under test."""
    return new_compute()
