"""Which files of a source an ingest still has to read.

A daily export often only adds files (``events/2026-07-01.parquet`` or ``.csv``, one a day).
When a source's earlier files are exactly the ones the last ingest read, unchanged, an ingest
that read them all again would load the same rows and reject the same ones: only the new files
are read, checked (a key is a duplicate if any earlier file has it) and appended. Each ingest
records what it read as the table's fingerprint in ``ingest_runs``; anything else changing
(the source's settings, accounthealth's code, the set of account ids the rows are checked
against, the table's row count, a file's size or modification time, a file's place in the
list, the columns all the files have) makes the ingest read every file again, as it always
did.

Only a compute engine whose transactions are all or nothing is appended to (DuckDB and
PostgreSQL roll back; Spark stages its writes and moves them into place at the end): elsewhere
a failed ingest could leave a table the store's record of it does not describe. Accounts
(small, and what every other table is checked against) are always read whole.
"""

from __future__ import annotations

import hashlib
import json
import typing as t
from dataclasses import dataclass
from pathlib import Path

from accounthealth.config.project import Source
from accounthealth.engine.base import Engine
from accounthealth.versions import code_digest


@dataclass(frozen=True)
class Fingerprint:
    """What an ingest of one table read: its settings, the account ids it checked against,
    each file (name, size, modification time) in order, the rows the table then held, and the
    columns (name, type) every file had, which the rows were read with."""

    settings: str
    accounts: str | None
    files: tuple[tuple[str, int, int], ...]
    rows: int = 0
    columns: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "settings": self.settings,
                "accounts": self.accounts,
                "files": self.files,
                "rows": self.rows,
                "columns": self.columns,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Fingerprint:
        data = json.loads(text)
        files = tuple((str(name), int(size), int(mtime)) for name, size, mtime in data["files"])
        columns = tuple((str(name), str(type_)) for name, type_ in data.get("columns", ()))
        return cls(data["settings"], data["accounts"], files, int(data["rows"]), columns)


def fingerprint(
    name: str, source: Source, files: list[Path], folder: Path, accounts: str | None
) -> Fingerprint:
    """The fingerprint of ingesting ``files`` for table ``name`` now (rows still unknown)."""
    settings = json.dumps(
        {"table": name, "source": source.model_dump(mode="json"), "code": code_digest()},
        sort_keys=True,
    )
    listed = []
    for file in files:
        stat = file.stat()
        shown = file.relative_to(folder) if file.is_relative_to(folder) else file
        listed.append((str(shown), stat.st_size, stat.st_mtime_ns))
    return Fingerprint(hashlib.sha256(settings.encode()).hexdigest(), accounts, tuple(listed))


def account_ids(compute: Engine) -> str | None:
    """A digest of the set of account ids in ``compute``'s accounts table (None where its
    tables are always read whole: an engine without all-or-nothing transactions)."""
    if not compute.transactional:
        return None
    accounts = compute.table("accounts")
    ids = accounts.account_id
    found = compute.execute(accounts.aggregate(n=ids.count(), h=ids.hash().sum()))
    return f"{int(found['n'].iloc[0])}:{found['h'].iloc[0]}"


def appendable(store: Engine, compute: Engine, name: str, now: Fingerprint) -> Fingerprint | None:
    """The last ingest's fingerprint of ``name`` when the files it read are the first of the
    ones there ``now``, as they were, and the table holds what it left: only the files after
    them are new. None: every file is to be read. (Whether the new files have the columns the
    earlier ones had is known only from them: the caller compares.)"""
    if name == "accounts" or not compute.transactional:
        return None
    before = last_fingerprint(store, name)
    if before is None:
        return None
    if (
        (before.settings, before.accounts) != (now.settings, now.accounts)
        or now.files[: len(before.files)] != before.files
        or not compute.has_table(name)
        or row_count(compute, name) != before.rows
    ):
        return None
    return before


def last_fingerprint(store: Engine, name: str) -> Fingerprint | None:
    """What the last ingest of ``name`` read (None: never ingested, or last read from the
    compute engine itself, as a table or query read in place)."""
    return last_fingerprints(store, [name])[name]


def last_fingerprints(store: Engine, names: t.Sequence[str]) -> dict[str, Fingerprint | None]:
    """``last_fingerprint`` of each of ``names``, in one query (a daily run asks for every
    table it carries on: one query each took 9 ms of its start on the benchmark's book)."""
    if not names:
        return {}
    marks = ", ".join("?" for _ in names)
    rows = store.sql(
        "SELECT r.table_name, r.fingerprint FROM ingest_runs AS r JOIN ("
        f"SELECT table_name, max(ingested_at) AS last FROM ingest_runs "
        f"WHERE table_name IN ({marks}) GROUP BY table_name"
        ") AS m ON r.table_name = m.table_name AND r.ingested_at = m.last",
        list(names),
    )
    # Of two runs at the same instant, either (as the one query each did).
    last = {name: fingerprint for name, fingerprint in rows}
    return {
        name: None if last.get(name) is None else Fingerprint.from_json(last[name])
        for name in names
    }


def row_count(compute: Engine, name: str) -> int:
    """How many rows the compute engine's table ``name`` holds."""
    return int(t.cast(t.Any, compute.execute(compute.table(name).count())))
