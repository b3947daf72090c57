"""Spark: the model computed where a large book already lives (local mode in tests, a cluster
in production through the usual Spark settings). Spark computes; the store stays in DuckDB or
PostgreSQL.

Spark's default catalog forgets tables when the session ends, so file sources that ingest
copies in are written as Parquet under ``tables`` and read back by path in each session.

Spark's writes are not transactional, so a transaction here stages them: a table written
inside one goes to a folder of its own under ``tables/.staging-<id>/`` (its reads inside the
transaction see it there), and only when the transaction succeeds is each staged table moved
into place: a rename of its folder through Hadoop's file system (atomic on local disks and
HDFS; on object storage a copy). An ingest that fails reading or checking a source then
leaves every table as the last good one left it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import typing as t
import uuid
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pyarrow as pa
from ibis.backends.sql.compilers.pyspark import PySparkCompiler

from accounthealth.config.project import Source
from accounthealth.engine.base import Engine, double_literals, first_line
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
# The folder a transaction stages its tables in, under the tables' folder.
STAGING_PREFIX = ".staging-"
# A staging folder left this long (a killed run's) is deleted when the next transaction begins
# (one ingest at a time writes a tables folder; a younger one may still be at work).
ORPHAN_AGE_SECONDS = 3600
# In a staging folder: the tables its transaction replaced, while they are moved into place;
# and the mark of one kept because a failed move could not all be undone.
REPLACED = "replaced"
KEPT = "_KEPT"


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
    transactional = True  # by staging its writes (the module's docstring)

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
        # The open transaction's staging folder and its tables, by name: True where the
        # staged folder replaces the table, False where its files are to be added to it.
        self._staging: str | None = None
        self._staged: dict[str, bool] = {}

    def _location(self, name: str) -> str:
        return f"{self.tables}/{name}"

    def _staged_location(self, name: str) -> str:
        return f"{self._staging}/{name}"

    def has_table(self, name: str) -> bool:
        if name in self._views or name in self._ingested or name in self._staged:
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
            view = f"accounthealth_{name}"
            if name in self._staged:
                # Inside the transaction that wrote it: the staged rows (and the table's own,
                # where they are only added to it).
                paths = [self._staged_location(name)]
                if not self._staged[name]:
                    paths.insert(0, self._location(name))
                self.session.read.parquet(*paths).createOrReplaceTempView(view)
                self._ingested[name] = self.ibis.table(view)
            else:
                self._ingested[name] = self.ibis.read_parquet(self._location(name), table_name=view)
        return self._ingested[name]

    def _read_path(self, source: Source, where: str) -> ir.Table:
        if source.format == "delta":
            return self.ibis.read_delta(source.path)
        return self.ibis.read_parquet(source.path)

    def write_arrow(self, name: str, data: pa.Table, *, replace: bool = False) -> None:
        # An ingested table is a folder of Parquet files: appending adds files to it.
        frame = self.session.createDataFrame(data.to_pandas(), schema=_spark_schema(data.schema))
        location = self._location(name)
        if self._staging is not None:
            self._staged[name] = replace or self._staged.get(name, False)
            location = self._staged_location(name)
        frame.write.mode("overwrite" if replace else "append").parquet(location)
        self._ingested.pop(name, None)

    @contextlib.contextmanager
    def transaction(self) -> t.Iterator[None]:
        """Tables written inside are staged, and moved into place only if it succeeds
        (re-entrant: the outermost one does it)."""
        if self._staging is not None:
            yield
            return
        files = _FileSystem(self.session)
        with contextlib.suppress(Exception):  # housekeeping: never a reason not to ingest
            files.sweep(self.tables, STAGING_PREFIX, ORPHAN_AGE_SECONDS)
        self._staging = f"{self.tables}/{STAGING_PREFIX}{uuid.uuid4().hex}"
        moved = False
        try:
            yield
            with _uninterrupted():
                files.move_into_place(
                    {
                        self._staged_location(name): (self._location(name), replaces)
                        for name, replaces in self._staged.items()
                    },
                    self._staging,
                )
                moved = True
        finally:
            for name in self._staged:
                self._ingested.pop(name, None)
            # Once the tables are in place (or all put back), what is left is clutter, and
            # failing to clear it must not fail the transaction (a later one sweeps it). A
            # folder still keeping a table's last good files is the user's to clear.
            with contextlib.suppress(Exception):
                if moved or not files.kept(self._staging):
                    files.delete(self._staging)
            self._staging, self._staged = None, {}

    def close(self) -> None:
        # The session may be shared (notebooks, tests); stopping it is the caller's choice.
        self._ingested.clear()


class _FileSystem:
    """The few file operations a Spark transaction needs, through Hadoop's file system, which
    knows every location Spark can write to."""

    def __init__(self, session: t.Any) -> None:
        self._jvm = session._jvm
        self._conf = session._jsc.hadoopConfiguration()

    def _path(self, location: t.Any, child: str | None = None) -> t.Any:
        """Hadoop's path of ``location`` (a string or a path), or of ``child`` in it."""
        path = self._jvm.org.apache.hadoop.fs.Path
        return path(location) if child is None else path(location, child)

    def _at(self, location: str) -> tuple[t.Any, t.Any]:
        path = self._path(location)
        return path.getFileSystem(self._conf), path

    def delete(self, location: str) -> None:
        fs, path = self._at(location)
        fs.delete(path, True)

    def kept(self, staging: str) -> bool:
        """Whether ``staging`` keeps what a failed move could not put back: marked ``KEPT``,
        or a table's last good files still set aside in its ``REPLACED`` folder (a run killed
        between its two renames)."""
        fs, _ = self._at(staging)
        aside = self._path(staging, REPLACED)
        return bool(
            fs.exists(self._path(staging, KEPT))
            or (fs.exists(aside) and len(fs.listStatus(aside)) > 0)
        )

    def sweep(self, folder: str, prefix: str, age_seconds: float) -> None:
        """Delete the folders in ``folder`` named ``prefix…`` not changed for ``age_seconds``,
        except those kept for the user (``kept``)."""
        fs, path = self._at(folder)
        if not fs.exists(path):
            return
        cutoff = (time.time() - age_seconds) * 1000
        for status in fs.listStatus(path):
            found = status.getPath()
            if (
                status.getModificationTime() < cutoff
                and found.getName().startswith(prefix)
                and not self.kept(found.toString())
            ):
                fs.delete(found, True)

    def move_into_place(self, staged: dict[str, tuple[str, bool]], staging: str) -> None:
        """Move each staged folder to its table's place: a table it replaces goes to
        ``staging``'s ``REPLACED`` folder first; otherwise its files join the table's. If a
        move fails or is interrupted, the ones done are undone (the tables as they were) and
        the failure is raised; should an undo fail too, ``staging`` is marked kept, and the
        error says what was not put back."""
        undo: list[tuple[str, t.Callable[[], None]]] = []  # one per step done, in order
        target = ""
        try:
            for source, (target, replaces) in staged.items():
                self._move(source, target, replaces, f"{staging}/{REPLACED}", undo)
        except BaseException as exc:
            failed = [what for what, step in reversed(undo) if not _done(step)]
            if failed:
                fs, _ = self._at(staging)
                fs.create(self._path(staging, KEPT)).close()
                raise ProjectError(
                    f"cannot move the tables written into place ({first_line(exc)}), nor "
                    "undo every move done",
                    where=target,
                    fix="do by hand what could not be undone: " + "; ".join(failed),
                ) from None
            if not isinstance(exc, Exception):
                raise  # interrupted: the tables are as they were
            raise ProjectError(
                f"cannot move the tables written into place: {first_line(exc)}",
                where=target,
                fix="check that the tables' folder is writable and has room, then run "
                "again; every table is as the last good run left it",
            ) from None

    def _move(
        self,
        source: str,
        target: str,
        replaces: bool,
        replaced: str,
        undo: list[tuple[str, t.Callable[[], None]]],
    ) -> None:
        """Move one staged folder into place, adding to ``undo`` what each step done is and
        how to undo it."""
        fs, to = self._at(target)
        _, origin = self._at(source)

        def moved(source: t.Any, target: t.Any) -> None:
            _rename(fs, source, target)
            undo.append(
                (
                    f"move {target.toString()} back to {source.toString()}",
                    lambda: _rename(fs, target, source),
                )
            )

        if replaces:
            if fs.exists(to):
                aside = self._path(replaced, to.getName())
                fs.mkdirs(aside.getParent())
                moved(to, aside)
            else:
                fs.mkdirs(to.getParent())
            moved(origin, to)
            return
        fs.mkdirs(to)
        for status in fs.listStatus(origin):
            part = status.getPath()
            if not part.getName().startswith(("_", ".")):  # not Spark's _SUCCESS, checksums
                moved(part, self._path(to, part.getName()))


def _done(step: t.Callable[[], None]) -> bool:
    """Run an undo step; whether it worked (one failing must not stop the others)."""
    try:
        step()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def _uninterrupted() -> t.Iterator[None]:
    """Ctrl-C waits until the block is done, then interrupts: an interrupt inside a rename
    (PySpark raises it in Python while the JVM goes on) would leave a move done but not known
    to be, and so not undone. Only the main thread receives signals: elsewhere, as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _rename(fs: t.Any, source: t.Any, target: t.Any) -> None:
    """Rename through Hadoop, which says failure by returning false, and on some file systems
    moves a folder into an existing one of the target's name instead of failing."""
    if fs.exists(target) or not fs.rename(source, target):
        raise OSError(f"cannot rename {source.toString()} to {target.toString()}")


def _spark_schema(schema: pa.Schema) -> t.Any:
    from ibis.backends.pyspark.datatypes import PySparkSchema

    return PySparkSchema.from_ibis(ibis.Schema.from_pyarrow(schema))
