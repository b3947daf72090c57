"""Compiled metric queries kept between runs, so that a daily run with an unchanged model does
not compile them again.

Building and compiling a model's metric query through Ibis takes about 0.2 s on the
benchmark's model, and the query is the same every day but for the date, which it takes as
named parameters. Each cache entry is one JSON file named by a fingerprint of everything that
shapes the SQL: the model version and account columns, every canonical table's definition and
schema, the engine and its catalog, the versions of Ibis, sqlglot and DuckDB, and the source of
accounthealth itself. Anything else changing gives another fingerprint, so an entry is never
stale; an unreadable entry is compiled again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import typing as t
from dataclasses import asdict
from pathlib import Path

import duckdb
import ibis
import sqlglot

from accounthealth.engine.base import Engine
from accounthealth.engine.parameters import PreparedQuery
from accounthealth.metrics.definitions import ResolvedModel
from accounthealth.sources.schema import TABLES
from accounthealth.versions import code_digest

# Raised when the entries' layout changes, so older files are ignored.
FORMAT = 3
# Entries kept, the most recently used first: a model's daily run uses about twenty (its grid's
# query and each of its carried-on reads), so this is a few models' or data layouts' worth.
KEEP = 64


def fingerprint(engine: Engine, resolved: ResolvedModel) -> str:
    """A key for everything that shapes the metric query of ``resolved`` on ``engine``."""
    backend = engine.ibis
    parts = {
        "format": FORMAT,
        "code": code_digest(),
        "versions": [ibis.__version__, sqlglot.__version__, duckdb.__version__],
        "engine": [engine.kind, backend.current_catalog, backend.current_database],
        "model": [resolved.version, list(resolved.account_columns)],
        "tables": engine.describe_tables(TABLES),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


class QueryCache:
    """Prepared queries by fingerprint, one JSON file each in ``folder``.

    One instance serves one scoring run: it remembers the fingerprint and the query it has
    read, so the days of a backfill do not describe every table and read the file again.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._keys: dict[tuple[int, str], str] = {}
        self._read: dict[str, PreparedQuery] = {}

    def key(self, engine: Engine, resolved: ResolvedModel) -> str:
        """The ``fingerprint`` of ``resolved`` on ``engine``, computed once per instance."""
        memo = (id(engine), resolved.version)
        if memo not in self._keys:
            self._keys[memo] = fingerprint(engine, resolved)
        return self._keys[memo]

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> PreparedQuery | None:
        """The query stored under ``key``, or None (absent, unreadable or an older format)."""
        if key in self._read:
            return self._read[key]
        path = self._path(key)
        try:
            entry = json.loads(path.read_text())
            if entry.get("format") != FORMAT:
                return None
            q = entry["query"]
            query = PreparedQuery(
                sql=q["sql"], parameters=tuple(q["parameters"]), schema=dict(q["schema"])
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        with contextlib.suppress(OSError):
            path.touch()  # recently used: kept when older entries are pruned
        self._read[key] = query
        return query

    def prepared(self, key: str, compile: t.Callable[[], PreparedQuery]) -> PreparedQuery:
        """The query stored under ``key``; else ``compile()``, stored there."""
        query = self.get(key)
        if query is None:
            query = compile()
            self.put(key, query)
        return query

    def put(self, key: str, query: PreparedQuery) -> None:
        """Store ``query`` under ``key``. A folder that cannot be written only costs the next
        run a compile."""
        self._read[key] = query
        entry = {"format": FORMAT, "query": asdict(query)}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # Written aside and renamed: a reader never sees half a file.
            with tempfile.NamedTemporaryFile(
                "w", dir=self.folder, suffix=".tmp", delete=False
            ) as out:
                json.dump(entry, out)
            os.replace(out.name, self._path(key))
            self._prune()
        except OSError:
            return

    def _prune(self) -> None:
        entries = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[KEEP:]:
            old.unlink(missing_ok=True)
