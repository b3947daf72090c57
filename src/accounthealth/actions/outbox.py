"""The outbox: every notification is written first, in the same transaction as the rule firing
that caused it, and delivered afterwards with retries and backoff.

A crash before that transaction commits leaves nothing, and the day's rules run again; a crash
after it leaves the notifications pending, and the next delivery sends them. Each has a fixed
id (the idempotency key) derived from its firing, so writing it twice is a no-op, and receivers
get the id with the message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import typing as t
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from accounthealth.actions.audit import Entry, append
from accounthealth.actions.channels import Undeliverable, address, send
from accounthealth.config.project import Notifications
from accounthealth.engine.base import Engine
from accounthealth.errors import AccountHealthError, did_you_mean

STATUSES = ("pending", "delivered", "failed", "held")
# At most this many sends at once: a slow receiver holds one worker, not the run.
WORKERS = 8
_SCHEMA = pa.schema(
    {
        "notification_id": pa.string(),
        "firing_id": pa.string(),
        "task_id": pa.string(),
        "rule": pa.string(),
        "account_id": pa.string(),
        "channel": pa.string(),
        "recipient": pa.string(),
        "address": pa.string(),
        "subject": pa.string(),
        "body": pa.string(),
        "created_at": pa.timestamp("us"),
        "status": pa.string(),
        "attempts": pa.int32(),
        "next_attempt_at": pa.timestamp("us"),
        "last_error": pa.string(),
        "delivered_at": pa.timestamp("us"),
    }
)


@dataclass(frozen=True)
class Message:
    """A notification to write: ``key`` makes its id (the same key, the same notification)."""

    key: str
    channel: str
    recipient: str
    subject: str
    body: str
    rule: str | None = None
    account_id: str | None = None
    firing_id: str | None = None
    task_id: str | None = None

    @property
    def notification_id(self) -> str:
        return "N" + hashlib.sha256(self.key.encode()).hexdigest()[:19]


def enqueue(store: Engine, messages: t.Sequence[Message], now: dt.datetime) -> int:
    """Write messages not written before (inside the caller's transaction); returns how many
    are new."""
    if not messages:
        return 0
    unique = {m.notification_id: m for m in messages}
    known = store.table("notifications")
    existing = set(
        store.execute(
            known.filter(known.notification_id.isin(list(unique))).select("notification_id")
        )["notification_id"]
    )
    rows = [
        {
            "notification_id": nid,
            "firing_id": m.firing_id,
            "task_id": m.task_id,
            "rule": m.rule,
            "account_id": m.account_id,
            "channel": m.channel,
            "recipient": m.recipient,
            "address": None,
            "subject": m.subject,
            "body": m.body,
            "created_at": now,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": None,
            "delivered_at": None,
        }
        for nid, m in unique.items()
        if nid not in existing
    ]
    if rows:
        store.write_arrow("notifications", pa.Table.from_pylist(rows, schema=_SCHEMA))
    return len(rows)


@dataclass
class DeliveryReport:
    """What one delivery pass did."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    held: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def deliver(store: Engine, config: Notifications, now: dt.datetime | None = None) -> DeliveryReport:
    """Send every pending notification whose time has come (and retry held ones, in case the
    configuration now allows them). Sends run in parallel with a timeout each; results are
    recorded one notification at a time, so a crash mid-way loses no record of what was sent
    before it."""
    now = now or dt.datetime.now()
    table = store.table("notifications")
    due = store.execute(
        table.filter(
            ((table.status == "pending") & (table.next_attempt_at <= now))
            | (table.status == "held")
        ).order_by("created_at", "notification_id")
    )
    report = DeliveryReport()
    if due.empty:
        return report
    sendable = []
    for row in due.to_dict("records"):
        channel = config.channels.get(row["channel"])
        try:
            if channel is None:
                raise Undeliverable(
                    f"no channel '{row['channel']}' in accounthealth.yaml notifications.channels"
                )
            row["address"] = address(channel, row["recipient"], config.directory)
        except Undeliverable as exc:
            _record(store, row, "held", now, str(exc), count=False)
            report.held += 1
            continue
        sendable.append((channel, row))
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = [
            (row, pool.submit(_attempt, channel, row, config.timeout)) for channel, row in sendable
        ]
        for row, future in futures:
            error = future.result()
            if error is None:
                _record(store, row, "delivered", now, None)
                report.delivered += 1
                continue
            report.errors[error] = report.errors.get(error, 0) + 1
            if row["attempts"] + 1 >= config.attempts:
                _record(store, row, "failed", now, error)
                append(
                    store,
                    [
                        Entry(
                            "accounthealth",
                            "notification.failed",
                            row["notification_id"],
                            row["account_id"],
                            {
                                "channel": row["channel"],
                                "error": error,
                                "attempts": row["attempts"] + 1,
                            },
                        )
                    ],
                )
                report.failed += 1
            else:
                wait = config.backoff * 2 ** int(row["attempts"])
                _record(
                    store, row, "pending", now, error, retry_at=now + dt.timedelta(seconds=wait)
                )
                report.retrying += 1
    return report


def _attempt(channel: t.Any, row: dict[str, t.Any], timeout: float) -> str | None:
    """Send once; the error in a line, or None."""
    try:
        send(channel, row, timeout)
    except Exception as exc:  # any failure of a receiver is a retry, never a crash of the run
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def _record(
    store: Engine,
    row: dict[str, t.Any],
    status: str,
    now: dt.datetime,
    error: str | None,
    *,
    retry_at: dt.datetime | None = None,
    count: bool = True,
) -> None:
    store.sql(
        """UPDATE notifications SET status = ?, attempts = attempts + ?, address = ?,
               last_error = ?, next_attempt_at = ?, delivered_at = ?
           WHERE notification_id = ?""",
        [
            status,
            1 if count else 0,
            row.get("address"),
            error,
            retry_at,
            now if status == "delivered" else None,
            row["notification_id"],
        ],
    )


def listing(
    store: Engine, status: str | None = None, account_id: str | None = None
) -> pd.DataFrame:
    """Notifications, newest first."""
    table = store.table("notifications")
    if status:
        if status not in STATUSES:
            raise AccountHealthError(
                f"no notification status '{status}'",
                where="--status",
                fix=did_you_mean(status, STATUSES),
            )
        table = table.filter(table.status == status)
    if account_id:
        table = table.filter(table.account_id == account_id)
    return store.execute(table.order_by([table.created_at.desc(), table.notification_id]))


def retry(store: Engine, notification_id: str | None = None) -> int:
    """Put failed notifications (one, or all) back in the queue."""
    failed = store.sql(
        "SELECT count(*) FROM notifications WHERE status = 'failed'"
        + (" AND notification_id = ?" if notification_id else ""),
        [notification_id] if notification_id else [],
    )[0][0]
    store.sql(
        "UPDATE notifications SET status = 'pending', attempts = 0, next_attempt_at = ? "
        "WHERE status = 'failed'" + (" AND notification_id = ?" if notification_id else ""),
        [dt.datetime.now(), *([notification_id] if notification_id else [])],
    )
    return int(failed)
