"""The canonical tables every source maps onto: their columns, types, keys and time columns."""

from __future__ import annotations

from dataclasses import dataclass, field

# Logical column types; ingestion casts every source column to one of these.
STRING, INTEGER, FLOAT, BOOLEAN, DATE, TIMESTAMP = (
    "string",
    "int64",
    "float64",
    "boolean",
    "date",
    "timestamp",
)


@dataclass(frozen=True)
class Column:
    """One canonical column."""

    name: str
    type: str
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class CanonicalTable:
    """A canonical table: its key, the column that says when a row became true (``time``), and
    for rows that stay true for a while (an open ticket, an employed contact, a live contract)
    the column that says when they stopped (``end``)."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    time: str
    end: str | None = None
    key_optional: bool = False
    per_account: bool = True
    keeps_extra_columns: bool = False
    column_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "column_names", tuple(c.name for c in self.columns))

    def column(self, name: str) -> Column:
        """The canonical column called ``name`` (KeyError if there is none)."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _cols(*spec: tuple) -> tuple[Column, ...]:
    return tuple(Column(*s) for s in spec)


ACCOUNT = ("account_id", STRING, True)

TABLES: dict[str, CanonicalTable] = {
    t.name: t
    for t in [
        CanonicalTable(
            "accounts",
            _cols(
                ACCOUNT,
                ("name", STRING),
                ("segment", STRING),
                ("plan", STRING),
                ("owner", STRING),
                ("manager", STRING),
                ("parent_account_id", STRING),
                ("industry", STRING),
                ("employees", INTEGER),
                ("lifecycle_stage", STRING),
                ("licensed_seats", INTEGER),
                ("created_at", DATE),
            ),
            key=("account_id",),
            time="created_at",
            keeps_extra_columns=True,
        ),
        CanonicalTable(
            "contracts",
            _cols(
                ("contract_id", STRING, True),
                ACCOUNT,
                ("start_date", DATE, True),
                ("end_date", DATE),
                ("arr", FLOAT),
                ("seats", INTEGER),
                ("status", STRING),
            ),
            key=("contract_id",),
            time="start_date",
            end="end_date",
        ),
        CanonicalTable(
            "events",
            _cols(
                ("event_id", STRING),
                ACCOUNT,
                ("user_id", STRING),
                ("event_time", TIMESTAMP, True),
                ("event", STRING),
                ("quantity", FLOAT),
            ),
            key=("event_id",),
            key_optional=True,
            time="event_time",
        ),
        CanonicalTable(
            "tickets",
            _cols(
                ("ticket_id", STRING, True),
                ACCOUNT,
                ("opened_at", TIMESTAMP, True),
                ("closed_at", TIMESTAMP),
                ("priority", STRING),
                ("status", STRING),
                ("csat", FLOAT),
                ("sentiment", FLOAT),
            ),
            key=("ticket_id",),
            time="opened_at",
            end="closed_at",
        ),
        CanonicalTable(
            "surveys",
            _cols(
                ("response_id", STRING, True),
                ACCOUNT,
                ("contact_id", STRING),
                ("responded_at", TIMESTAMP, True),
                ("kind", STRING),
                ("score", FLOAT),
            ),
            key=("response_id",),
            time="responded_at",
        ),
        CanonicalTable(
            "invoices",
            _cols(
                ("invoice_id", STRING, True),
                ACCOUNT,
                ("issued_at", DATE, True),
                ("due_at", DATE),
                ("paid_at", DATE),
                ("amount", FLOAT),
                ("status", STRING),
            ),
            key=("invoice_id",),
            time="issued_at",
            end="paid_at",
        ),
        CanonicalTable(
            "activities",
            _cols(
                ("activity_id", STRING, True),
                ACCOUNT,
                ("occurred_at", TIMESTAMP, True),
                ("kind", STRING),
                ("direction", STRING),
                ("sentiment", FLOAT),
            ),
            key=("activity_id",),
            time="occurred_at",
        ),
        CanonicalTable(
            "contacts",
            _cols(
                ("contact_id", STRING, True),
                ACCOUNT,
                ("role", STRING),
                ("is_champion", BOOLEAN),
                ("is_executive_sponsor", BOOLEAN),
                ("started_at", DATE),
                ("left_at", DATE),
            ),
            key=("contact_id",),
            time="started_at",
            end="left_at",
        ),
        CanonicalTable(
            "metrics",
            _cols(ACCOUNT, ("metric", STRING, True), ("date", DATE, True), ("value", FLOAT)),
            key=("account_id", "metric", "date"),
            time="date",
        ),
        CanonicalTable(
            "outcomes",
            _cols(ACCOUNT, ("date", DATE, True), ("outcome", STRING, True), ("amount", FLOAT)),
            key=("account_id", "date", "outcome"),
            time="date",
        ),
    ]
}

# Facts derived per account and as-of date from accounts and contracts, usable as
# `attribute:` metrics and by renewal proximity, rollups and reports.
DERIVED_FACTS = {
    "arr": "annual recurring revenue of the contracts live on the date",
    "days_to_renewal": "days from the date to the end of the earliest live contract",
    "tenure_days": "days since the account was created",
}
