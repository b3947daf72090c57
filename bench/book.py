"""A large synthetic book of business, generated inside DuckDB (seconds for millions of rows).

Values come from hashes of the row number, so the same size and seed always give the same
book. Tables other than events are sized in proportion to the demo data's ratios to events
(tickets 1.3%, surveys 0.3%, invoices 1.5%, activities 2.6%, metrics 12.7%); each account has
two contracts and two contacts. Events span the year before ``end``.
"""

from __future__ import annotations

import datetime as dt

import duckdb

END = dt.date(2026, 6, 30)
RATIOS = {
    "tickets": 0.013,
    "surveys": 0.003,
    "invoices": 0.015,
    "activities": 0.026,
    "metrics": 0.127,
}


def _u(column: str, salt: int) -> str:
    """A uniform [0, 1) value from a hash of ``column`` and a salt."""
    return f"((hash({column}, {salt}) % 1000003) / 1000003.0)"


def _account(column: str, salt: int) -> str:
    # Skewed: low ids are busier, like real books where a few accounts dominate usage.
    return f"printf('A%07d', CAST(floor(pow({_u(column, salt)}, 1.6) * $n) AS BIGINT))"


def _recent_time(column: str, salt: int, days: int = 365) -> str:
    seconds = f"CAST(floor({_u(column, salt)} * {days} * 86400) AS BIGINT)"
    return f"(CAST($end AS TIMESTAMP) + INTERVAL 1 DAY - to_seconds({seconds}) - INTERVAL 1 SECOND)"


def generate(
    con: duckdb.DuckDBPyConnection, accounts: int, events: int, seed: int = 7, end: dt.date = END
) -> dict[str, int]:
    """Create the canonical tables in ``con``; returns row counts."""
    s = seed * 100
    params = {"n": accounts, "end": end}
    counts = {name: max(1, int(events * ratio)) for name, ratio in RATIOS.items()}
    statements = {
        "accounts": f"""
            SELECT printf('A%07d', i) AS account_id, 'Company ' || i AS name,
                   CASE WHEN {_u("i", s + 1)} < 0.6 THEN 'smb'
                        WHEN {_u("i", s + 1)} < 0.9 THEN 'mid_market'
                        ELSE 'enterprise' END AS segment,
                   (['starter', 'growth', 'scale', 'enterprise'])[1 + i % 4] AS plan,
                   'CSM ' || (i % 40) AS owner, 'Manager ' || (i % 6) AS manager,
                   CASE WHEN i > 100 AND {_u("i", s + 2)} < 0.03
                        THEN printf('A%07d', CAST(floor({_u("i", s + 3)} * 100) AS BIGINT)) END
                        AS parent_account_id,
                   (['software', 'retail', 'finance', 'health'])[1 + i % 4] AS industry,
                   CAST(10 + floor({_u("i", s + 4)} * 5000) AS BIGINT) AS employees,
                   'mature' AS lifecycle_stage,
                   CAST(5 + floor({_u("i", s + 5)} * 300) AS BIGINT) AS licensed_seats,
                   CAST($end AS DATE) - CAST(60 + floor({_u("i", s + 6)} * 900) AS INTEGER)
                        AS created_at
            FROM range($n) t(i)""",
        # A previous contract and the current one; 8% churned at their last renewal.
        "contracts": f"""
            WITH a AS (SELECT i, CAST($end AS DATE) - CAST(floor({_u("i", s + 7)} * 360) AS INTEGER)
                              AS renewed FROM range($n) t(i))
            SELECT printf('C%07d', i) || '-' || k AS contract_id, printf('A%07d', i) AS account_id,
                   CASE WHEN k = 0 THEN renewed - 365 ELSE renewed END AS start_date,
                   CASE WHEN k = 0 THEN renewed ELSE renewed + 365 END AS end_date,
                   round(1000 + {_u("i", s + 8)} * 90000, 2) AS arr, 10 AS seats,
                   CASE WHEN k = 0 THEN 'renewed' ELSE 'active' END AS status
            FROM a, range(2) r(k)
            WHERE k = 0 OR {_u("i", s + 9)} >= 0.08""",
        "events": f"""
            SELECT 'E' || i AS event_id, {_account("i", s + 10)} AS account_id,
                   'u' || CAST(floor({_u("i", s + 11)} * 40) AS BIGINT) AS user_id,
                   {_recent_time("i", s + 12)} AS event_time,
                   (['login', 'report_viewed', 'dashboard_created', 'export', 'integration_sync',
                     'invite_sent', 'api_call', 'comment_added'])
                        [1 + CAST(floor(pow({_u("i", s + 13)}, 2) * 8) AS BIGINT)] AS event,
                   CAST(1 AS DOUBLE) AS quantity
            FROM range({events}) t(i)""",
        "tickets": f"""
            SELECT 'T' || i AS ticket_id, {_account("i", s + 20)} AS account_id,
                   {_recent_time("i", s + 21)} AS opened_at,
                   CASE WHEN {_u("i", s + 22)} < 0.05 THEN NULL
                        ELSE {_recent_time("i", s + 21)}
                             + to_seconds(CAST(floor({_u("i", s + 23)} * 20 * 86400) AS BIGINT))
                   END AS closed_at,
                   (['P1', 'P2', 'P3', 'P4'])
                        [1 + CAST(floor(pow({_u("i", s + 24)}, 0.7) * 4) AS BIGINT)] AS priority,
                   'solved' AS status,
                   CASE WHEN {_u("i", s + 25)} < 0.3 THEN 1 + floor({_u("i", s + 26)} * 5) END
                        AS csat,
                   {_u("i", s + 27)} * 2 - 1 AS sentiment
            FROM range({counts["tickets"]}) t(i)""",
        "surveys": f"""
            SELECT 'S' || i AS response_id, {_account("i", s + 30)} AS account_id,
                   CAST(NULL AS VARCHAR) AS contact_id,
                   {_recent_time("i", s + 31)} AS responded_at,
                   CASE WHEN {_u("i", s + 32)} < 0.7 THEN 'nps' ELSE 'csat' END AS kind,
                   floor({_u("i", s + 33)} * 11) AS score
            FROM range({counts["surveys"]}) t(i)""",
        "invoices": f"""
            WITH b AS (SELECT i, CAST({_recent_time("i", s + 41)} AS DATE) AS issued
                       FROM range({counts["invoices"]}) t(i))
            SELECT 'I' || i AS invoice_id, {_account("i", s + 40)} AS account_id,
                   issued AS issued_at, issued + 30 AS due_at,
                   CASE WHEN {_u("i", s + 42)} < 0.03 THEN NULL
                        ELSE issued + CAST(20 + floor({_u("i", s + 43)} * 30) AS INTEGER)
                   END AS paid_at,
                   round(100 + {_u("i", s + 44)} * 5000, 2) AS amount, 'issued' AS status
            FROM b""",
        "activities": f"""
            SELECT 'V' || i AS activity_id, {_account("i", s + 50)} AS account_id,
                   {_recent_time("i", s + 51)} AS occurred_at,
                   (['call', 'meeting', 'qbr', 'email'])
                        [1 + CAST(floor({_u("i", s + 52)} * 4) AS BIGINT)] AS kind,
                   'outbound' AS direction, round({_u("i", s + 53)} * 2 - 1, 2) AS sentiment
            FROM range({counts["activities"]}) t(i)""",
        "contacts": f"""
            SELECT printf('P%07d', i) || '-' || k AS contact_id, printf('A%07d', i) AS account_id,
                   CASE WHEN k = 0 THEN 'admin' ELSE 'vp' END AS role,
                   k = 0 AND {_u("i", s + 60)} < 0.8 AS is_champion,
                   k = 1 AND {_u("i", s + 61)} < 0.5 AS is_executive_sponsor,
                   CAST($end AS DATE) - 800 AS started_at,
                   CASE WHEN {_u("i * 2 + k", s + 62)} < 0.15
                        THEN CAST($end AS DATE)
                             - CAST(floor({_u("i * 2 + k", s + 63)} * 300) AS INTEGER)
                   END AS left_at
            FROM range($n) t(i), range(2) r(k)""",
        # One value per account, metric and day, as a daily metrics export has.
        "metrics": f"""
            SELECT DISTINCT ON (account_id, metric, date) * FROM (
            SELECT {_account("i", s + 70)} AS account_id,
                   CASE WHEN i % 2 = 0 THEN 'integrations_enabled'
                        ELSE 'marketing_emails_opened' END AS metric,
                   CAST({_recent_time("i", s + 71)} AS DATE) AS date,
                   floor({_u("i", s + 72)} * 6) AS value
            FROM range({counts["metrics"]}) t(i))""",
    }
    out = {}
    for name, select in statements.items():
        used = {k: v for k, v in params.items() if f"${k}" in select}
        con.execute(f"CREATE OR REPLACE TABLE {name} AS {select}", used)
        out[name] = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
    return out


def add_day(
    con: duckdb.DuckDBPyConnection, day: dt.date, events_per_day: int, seed: int = 7
) -> int:
    """Append one more day of events (the data that arrives before an incremental run)."""
    s = seed * 100 + 90
    n = con.execute("SELECT count(*) FROM accounts").fetchone()[0]
    con.execute(
        f"""INSERT INTO events
            SELECT 'N' || i, {_account("i", s)},
                   'u' || CAST(floor({_u("i", s + 1)} * 40) AS BIGINT),
                   CAST($day AS TIMESTAMP)
                       + to_seconds(CAST(floor({_u("i", s + 2)} * 86400) AS BIGINT)),
                   'login', 1.0
            FROM range({events_per_day}) t(i)""",
        {"n": n, "day": day},
    )
    return events_per_day
