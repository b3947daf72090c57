"""Real engines for the engine-agnostic suite: a PostgreSQL server started for the test
session, and a local Spark session. Each project gets its own database so tests stay apart."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

ENGINES = ("duckdb", "postgres", "spark")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found[-1]


class PostgresServer:
    """A throwaway PostgreSQL cluster on loopback, trusted local auth, a free port."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ah-pg-"))
        self.port = _free_port()
        data, sockets = self.root / "data", self.root / "run"
        sockets.mkdir()
        # initdb refuses to run as root: run the server as the postgres user then.
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.root, self.user)
            shutil.chown(sockets, self.user)
        self._run(
            _pg_bin("initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8"
        )
        options = f"-p {self.port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-w",
            "-l",
            str(self.root / "log"),
            "start",
        )
        self.data = data

    def _run(self, *cmd: str) -> None:
        if self.user:
            cmd = ("runuser", "-u", self.user, "--", *cmd)
        subprocess.run(cmd, check=True, capture_output=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def spark_session(warehouse: Path):
    """The test session's local Spark (two cores, small shuffles, no UI)."""
    from accounthealth.engine.spark import spark_session as start

    return start("local[2]", {"spark.sql.warehouse.dir": str(warehouse)})
