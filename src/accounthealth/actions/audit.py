"""The audit log: every change to overrides, tasks, the model and every rule firing, appended
and never updated or deleted.

Each entry carries the hash of the one before it, so an entry edited or removed behind
accounthealth's back breaks the chain and `accounthealth audit --verify` says where.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import typing as t
from dataclasses import dataclass

import ibis
import pandas as pd
import pyarrow as pa

from accounthealth.engine.base import Engine

GENESIS = "0" * 64
COLUMNS = (
    "entry_id",
    "logged_at",
    "actor",
    "action",
    "subject",
    "account_id",
    "details",
    "previous_hash",
    "entry_hash",
)


@dataclass(frozen=True)
class Entry:
    """One change: who did what to which subject (a task, an override, a rule, the model)."""

    actor: str
    action: str
    subject: str
    account_id: str | None = None
    details: t.Mapping[str, t.Any] | None = None


def _hash(previous: str, entry_id: int, at: dt.datetime, entry: Entry) -> str:
    payload = json.dumps(
        [
            previous,
            entry_id,
            at.isoformat(),
            entry.actor,
            entry.action,
            entry.subject,
            entry.account_id,
            dict(entry.details or {}),
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def append(store: Engine, entries: t.Sequence[Entry], at: dt.datetime | None = None) -> int:
    """Append ``entries`` in order (inside the caller's transaction, so a change and its entry
    are written together); returns how many."""
    if not entries:
        return 0
    at = at or dt.datetime.now()
    with store.transaction():
        last = store.sql(
            "SELECT entry_id, entry_hash FROM audit_log ORDER BY entry_id DESC LIMIT 1"
        )
        entry_id, previous = last[0] if last else (0, GENESIS)
        rows = []
        for entry in entries:
            entry_id += 1
            digest = _hash(previous, entry_id, at, entry)
            details = json.dumps(dict(entry.details or {}), sort_keys=True, default=str)
            rows.append(
                (
                    entry_id,
                    at,
                    entry.actor,
                    entry.action,
                    entry.subject,
                    entry.account_id,
                    details,
                    previous,
                    digest,
                )
            )
            previous = digest
        store.write_arrow(
            "audit_log", pa.Table.from_pylist([dict(zip(COLUMNS, r, strict=True)) for r in rows])
        )
    return len(rows)


def entries(
    store: Engine,
    *,
    account_id: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Audit entries, newest first, filtered by account, actor, action (a prefix such as
    'task.') and date."""
    log = store.table("audit_log")
    if account_id:
        log = log.filter(log.account_id == account_id)
    if actor:
        log = log.filter(log.actor.lower() == actor.lower())
    if action:
        log = log.filter(log.action.startswith(action))
    if since:
        log = log.filter(log.logged_at >= ibis.literal(dt.datetime.combine(since, dt.time())))
    if until:
        end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time())
        log = log.filter(log.logged_at < ibis.literal(end))
    log = log.order_by(log.entry_id.desc())
    if limit:
        log = log.limit(limit)
    return store.execute(log.drop("previous_hash", "entry_hash"))


def verify(store: Engine) -> tuple[int, int | None]:
    """Check the hash chain; returns (entries checked, the first entry id that does not
    match, or None when the log is intact)."""
    log = store.execute(store.table("audit_log").order_by("entry_id"))
    previous, expected_id = GENESIS, 1
    for row in log.itertuples(index=False):
        entry = Entry(
            row.actor,
            row.action,
            row.subject,
            None if pd.isna(row.account_id) else row.account_id,
            json.loads(row.details),
        )
        at = pd.Timestamp(row.logged_at).to_pydatetime()
        if (
            row.entry_id != expected_id
            or row.previous_hash != previous
            or row.entry_hash != _hash(previous, row.entry_id, at, entry)
        ):
            return len(log), int(row.entry_id) if row.entry_id == expected_id else expected_id
        previous, expected_id = row.entry_hash, expected_id + 1
    return len(log), None
