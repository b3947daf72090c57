"""Queries run at once, each on a connection of its own (``Engine.reader``), in threads."""

from __future__ import annotations

import contextlib
import threading
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa

from accounthealth.engine.base import Engine
from accounthealth.engine.parameters import PreparedQuery


class Readers:
    """``count`` threads, each with its own connection to ``engine``'s database, running
    prepared queries that read ``attached`` (Arrow tables by name) beside the engine's."""

    def __init__(self, engine: Engine, attached: t.Mapping[str, pa.Table], count: int) -> None:
        self._engine, self._attached = engine, dict(attached)
        self._local = threading.local()
        self._opened: list[Engine] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            count, thread_name_prefix="accounthealth-reads", initializer=self._open
        )

    def _open(self) -> None:
        connection = self._engine.reader()
        with self._lock:
            self._opened.append(connection)
        self._local.connection = connection

    def run(self, query: PreparedQuery, values: t.Mapping[str, t.Any]) -> Future[pa.Table]:
        """``query`` with its parameters' ``values``, as it will be once run."""
        return self._pool.submit(self._run, query, dict(values))

    def _run(self, query: PreparedQuery, values: dict[str, t.Any]) -> pa.Table:
        connection: Engine = self._local.connection
        with contextlib.ExitStack() as stack:
            for name, data in self._attached.items():
                stack.enter_context(connection.attached(name, data))
            return connection.run_prepared(query, values)

    def close(self) -> None:
        """Drop the queries not started yet (none once their results are in), wait for those
        running, and close the connections."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        for connection in self._opened:
            connection.close()
