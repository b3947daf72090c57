"""Queries run at once, each on a connection of its own (``Engine.reader``), in threads, and
the work on what they read done as they finish (``once_read``)."""

from __future__ import annotations

import functools
import queue
import threading
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa

from accounthealth.engine.base import Engine
from accounthealth.engine.parameters import PreparedQuery

T = t.TypeVar("T")


class Readers:
    """``count`` threads, each with its own connection to ``engine``'s database, running
    prepared queries that read ``attached`` (Arrow tables by name) beside the engine's. Its
    connections see what is committed: not the engine's own transaction, if it has one open."""

    def __init__(self, engine: Engine, attached: t.Mapping[str, pa.Table], count: int) -> None:
        self._attached = dict(attached)
        # Opened here, in the caller's thread, which is the one that uses ``engine``: a
        # failure to open one is raised as it is, and closes those opened before it.
        self._opened: list[Engine] = []
        try:
            for _ in range(count):
                self._opened.append(engine.reader())
        except BaseException:
            self._close_opened()
            raise
        unused: queue.SimpleQueue[Engine] = queue.SimpleQueue()
        for connection in self._opened:
            unused.put(connection)
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(
            count,
            thread_name_prefix="accounthealth-reads",
            initializer=lambda: setattr(self._local, "connection", unused.get_nowait()),
        )

    def run(
        self,
        query: PreparedQuery,
        values: t.Mapping[str, t.Any],
        then: t.Callable[[pa.Table], pa.Table] | None = None,
    ) -> Future[pa.Table]:
        """``query`` with its parameters' ``values``, as it will be once run (and passed to
        ``then``, in the reading thread)."""
        return self._pool.submit(self._run, query, dict(values), then)

    def _run(
        self,
        query: PreparedQuery,
        values: dict[str, t.Any],
        then: t.Callable[[pa.Table], pa.Table] | None,
    ) -> pa.Table:
        connection: Engine = self._local.connection
        data = connection.run_attached(query, values, self._attached)
        return then(data) if then is not None else data

    def close(self) -> None:
        """Drop the queries not started yet (none once their results are in), wait for those
        running, and close the connections."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._close_opened()

    def _close_opened(self) -> None:
        for connection in self._opened:
            connection.close()


def once_read(
    read: t.Sequence[Future[pa.Table] | None], work: t.Callable[[], T], working: ThreadPoolExecutor
) -> Future[T]:
    """``work`` done on ``working`` once each ``read`` is in (None: nothing to wait for): in
    the order the reads finish, not the order they were asked for. A daily run of the
    benchmark's book then works out its event types' sightings, read in 7 ms, while its
    users' are still being read (48 ms), not after them. The future returned has the work's
    outcome, or ``working``'s refusal if it was shut down meanwhile."""
    waiting = [f for f in read if f is not None]
    if not waiting:
        return working.submit(work)
    done: Future[T] = Future()
    left, lock = len(waiting), threading.Lock()

    def arrived(_: Future[pa.Table]) -> None:
        nonlocal left
        with lock:
            left -= 1
            if left:
                return
        try:
            working.submit(work).add_done_callback(functools.partial(_passed_on, to=done))
        except RuntimeError as exc:  # shut down: the run was abandoned meanwhile
            done.set_exception(exc)

    for future in waiting:
        future.add_done_callback(arrived)
    return done


def _passed_on(task: Future[T], to: Future[T]) -> None:
    """``task``'s outcome given to the future ``to`` stands for (cancelled with it, too)."""
    if task.cancelled():
        to.cancel()
    elif (failure := task.exception()) is not None:
        to.set_exception(failure)
    else:
        to.set_result(task.result())
