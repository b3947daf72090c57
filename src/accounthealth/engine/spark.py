"""Spark: the model computed where a large book already lives (local mode in tests, a cluster
in production through the usual Spark settings). Spark computes; the store stays in DuckDB or
PostgreSQL.

Spark's default catalog forgets tables when the session ends, so file sources that ingest
copies in are written as Parquet under ``tables`` and read back by path in each session.
"""

from __future__ import annotations

import os
import typing as t
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pyarrow as pa
from ibis.backends.sql.compilers.pyspark import PySparkCompiler

from accounthealth.config.project import Source
from accounthealth.engine.base import Engine, double_literals
from accounthealth.errors import ProjectError

# Settings that make a local session start quickly and quietly on one machine.
LOCAL_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
    "spark.log.level": "ERROR",
}
# Settings every session needs for the model's results to match the other engines.
REQUIRED = {"spark.sql.session.timeZone": "UTC", "spark.sql.ansi.enabled": "false"}


def spark_session(master: str, conf: t.Mapping[str, str]) -> t.Any:
    """The running SparkSession, or a new one for ``master`` with ``conf``."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ProjectError(
            "the spark engine needs pyspark",
            where="compute",
            fix="pip install 'accounthealth[spark]' (and a Java 17 runtime)",
        ) from None
    settings = dict(LOCAL_DEFAULTS) if master.startswith("local") else {}
    settings.update(conf)
    settings.update(REQUIRED)
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.master(master).appName("accounthealth")
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as exc:
        raise ProjectError(
            f"cannot start a Spark session on {master}: {str(exc).strip().splitlines()[0]}",
            where="compute.master",
            fix="check that Java 17 is installed (java -version) and the master URL",
        ) from None


class SparkEngine(Engine):
    """A SparkSession opened through Ibis."""

    kind = "spark"

    def __init__(
        self, master: str, conf: t.Mapping[str, str], tables: str, database: str | None = None
    ) -> None:
        self.session = spark_session(master, conf)
        self.tables = tables.rstrip("/")
        backend = ibis.pyspark.connect(self.session)
        backend.compiler = double_literals(PySparkCompiler)
        if database:
            self.session.sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        super().__init__(backend, database)
        self._ingested: dict[str, ir.Table] = {}

    def _location(self, name: str) -> str:
        return f"{self.tables}/{name}"

    def has_table(self, name: str) -> bool:
        if name in self._views or name in self._ingested:
            return True
        location = self._location(name)
        if "://" not in location:
            return Path(location).exists()
        try:
            self.session.read.parquet(location).schema  # noqa: B018 - probe a remote path
        except Exception:
            return False
        return True

    def table(self, name: str) -> ir.Table:
        if name in self._views:
            return self._views[name]
        if name not in self._ingested:
            self._ingested[name] = self.ibis.read_parquet(
                self._location(name), table_name=f"accounthealth_{name}"
            )
        return self._ingested[name]

    def _read_path(self, source: Source, where: str) -> ir.Table:
        if source.format == "delta":
            return self.ibis.read_delta(source.path)
        return self.ibis.read_parquet(source.path)

    def write_arrow(self, name: str, data: pa.Table, *, replace: bool = False) -> None:
        # An ingested table is a folder of Parquet files: appending adds files to it.
        frame = self.session.createDataFrame(data.to_pandas(), schema=_spark_schema(data.schema))
        frame.write.mode("overwrite" if replace else "append").parquet(self._location(name))
        self._ingested.pop(name, None)

    def close(self) -> None:
        # The session may be shared (notebooks, tests); stopping it is the caller's choice.
        self._ingested.clear()


def _spark_schema(schema: pa.Schema) -> t.Any:
    from ibis.backends.pyspark.datatypes import PySparkSchema

    return PySparkSchema.from_ibis(ibis.Schema.from_pyarrow(schema))
