"""The benchmark's speed reference: the demo health model (src/accounthealth/demo/model.yaml)
written by hand as one DuckDB query for one as-of date.

accounthealth builds its pipeline with Ibis for any model, any engine and many dates at once;
this file is what an expert would write for this one model, one engine and one date: each source
table scanned once (conditional aggregation with FILTER, grouped by account), no date grid.
It computes the same final scores, tiers and coverage as `accounthealth score`; `check` proves
it on a scored project, e.g.::

    .venv/bin/python -m bench.reference /tmp/refcheck 2026-06-30 2026-03-31

The model is hard-coded: if the demo model changes, this query must change with it.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import time
import typing as t
from pathlib import Path

import duckdb
import pyarrow as pa

# Conventions that reproduce accounthealth's semantics:
# - A row's day is CAST(time AS DATE). Timestamp columns are compared with the window's day
#   bounds instead (day <= d  <=>  ts < d + 1;  day > d - n  <=>  ts >= d - n + 1), which
#   gives the same rows without a cast per row and lets DuckDB prune by min/max.
# - A window of n days holds rows with as_of - n < day <= as_of; `change` compares it with
#   the n days before; `active` rows have time <= as_of and (end null or end > as_of).
# - Scoring functions give NULL for a NULL value (GREATEST/LEAST would ignore it, hence the
#   CASE around each linear score).
# - Percentile cohorts are per segment model, null-ness of the value and tenure bucket,
#   because accounthealth scores each segment's rows separately.
SQL = """
WITH
contract_facts AS (
    SELECT
        account_id,
        count(*) FILTER (WHERE live) AS live_contracts,
        sum(arr) FILTER (WHERE live) AS arr,
        min(end_date) FILTER (WHERE live) AS renewal_date
    FROM (
        SELECT account_id, arr, end_date,
               start_date <= $as_of AND (end_date IS NULL OR end_date > $as_of) AS live
        FROM contracts
    )
    GROUP BY account_id
),
-- Customers on the date: created by then and, when they have contracts, with a live one.
population AS (
    SELECT
        a.account_id,
        a.parent_account_id,
        CASE a.segment WHEN 'enterprise' THEN 'enterprise' WHEN 'smb' THEN 'smb'
             ELSE 'default' END AS segment_model,
        CAST(a.licensed_seats AS DOUBLE) AS seats,
        CAST(c.arr AS DOUBLE) AS arr,
        date_diff('day', $as_of, c.renewal_date) AS days_to_renewal,
        date_diff('day', a.created_at, $as_of) AS tenure_days
    FROM accounts AS a
    LEFT JOIN contract_facts AS c USING (account_id)
    WHERE (a.created_at IS NULL OR a.created_at <= $as_of)
      AND (c.account_id IS NULL OR c.live_contracts > 0)
),
event_facts AS (
    SELECT
        account_id,
        count(DISTINCT user_id) FILTER (WHERE event_time >= $as_of - 27) AS active_users_28d,
        count(*) FILTER (WHERE event_time >= $as_of - 27) AS events_28d,
        count(*) FILTER (WHERE event_time >= $as_of - 55 AND event_time < $as_of - 27)
            AS events_prev_28d,
        count(DISTINCT event) FILTER (WHERE event_time >= $as_of - 27
                                        AND event NOT IN ('login')) AS features_28d,
        CAST(max(event_time) AS DATE) AS last_event_day
    FROM events
    WHERE event_time < $as_of + 1
    GROUP BY account_id
),
ticket_facts AS (
    SELECT
        account_id,
        count(*) FILTER (WHERE priority = 'P1'
                           AND (closed_at IS NULL OR closed_at >= $as_of + 1)) AS open_p1,
        count(*) FILTER (WHERE priority IN ('P1', 'P2') AND opened_at >= $as_of - 89)
            AS urgent_90d,
        avg(csat) FILTER (WHERE opened_at >= $as_of - 89) AS csat_90d
    FROM tickets
    WHERE opened_at < $as_of + 1
    GROUP BY account_id
),
survey_facts AS (
    SELECT account_id, avg(score) AS nps_180d
    FROM surveys
    WHERE kind = 'nps' AND responded_at >= $as_of - 179 AND responded_at < $as_of + 1
    GROUP BY account_id
),
invoice_facts AS (
    SELECT account_id, count(*) AS overdue
    FROM invoices
    WHERE due_at <= $as_of AND (paid_at IS NULL OR paid_at > $as_of)
    GROUP BY account_id
),
activity_facts AS (
    SELECT
        account_id,
        CAST(max(occurred_at) FILTER (WHERE kind IN ('call', 'meeting', 'qbr')) AS DATE)
            AS last_touch_day,
        avg(sentiment) FILTER (WHERE occurred_at >= $as_of - 89) AS sentiment_90d
    FROM activities
    WHERE occurred_at < $as_of + 1
    GROUP BY account_id
),
contact_facts AS (
    SELECT
        account_id,
        count(*) FILTER (WHERE is_champion) > 0 AS has_champion,
        count(*) FILTER (WHERE is_executive_sponsor) > 0 AS has_sponsor
    FROM contacts
    WHERE started_at <= $as_of AND (left_at IS NULL OR left_at > $as_of)
    GROUP BY account_id
),
metric_facts AS (
    -- The latest value in 60 days, NULL included (like FIRST(value ORDER BY date DESC)).
    SELECT account_id, arg_max_null(value, date) AS integrations
    FROM metrics
    WHERE metric = 'integrations_enabled' AND date <= $as_of AND date > $as_of - 60
    GROUP BY account_id
),
metric_values AS (
    SELECT
        p.account_id, p.parent_account_id, p.segment_model, p.arr, p.days_to_renewal,
        CASE WHEN p.tenure_days < 90 THEN 0 WHEN p.tenure_days < 180 THEN 1
             WHEN p.tenure_days < 365 THEN 2 WHEN p.tenure_days < 730 THEN 3
             ELSE 4 END AS tenure_bucket,
        CASE WHEN p.seats <> 0 THEN coalesce(e.active_users_28d, 0) / p.seats END
            AS seat_utilisation,
        CASE WHEN coalesce(e.events_prev_28d, 0) = 0 AND coalesce(e.events_28d, 0) = 0 THEN 0.0
             WHEN coalesce(e.events_prev_28d, 0) <> 0
             THEN (e.events_28d - e.events_prev_28d) / CAST(e.events_prev_28d AS DOUBLE)
        END AS usage_trend,
        CAST(coalesce(e.features_28d, 0) AS DOUBLE) AS feature_breadth,
        CAST(date_diff('day', e.last_event_day, $as_of) AS DOUBLE) AS days_since_last_use,
        CASE WHEN p.seats <> 0 THEN coalesce(e.events_28d, 0) / p.seats END AS usage_vs_peers,
        m.integrations,
        CAST(coalesce(tk.open_p1, 0) AS DOUBLE) AS open_p1,
        CAST(coalesce(tk.urgent_90d, 0) AS DOUBLE) AS urgent_tickets_90d,
        tk.csat_90d AS csat,
        s.nps_180d AS nps,
        CAST(date_diff('day', ac.last_touch_day, $as_of) AS DOUBLE) AS days_since_csm_touch,
        coalesce(ct.has_champion, false) AS champion,
        coalesce(ct.has_sponsor, false) AS executive_sponsor,
        ac.sentiment_90d AS interaction_sentiment,
        CAST(coalesce(i.overdue, 0) AS DOUBLE) AS overdue_invoices
    FROM population AS p
    LEFT JOIN event_facts AS e USING (account_id)
    LEFT JOIN ticket_facts AS tk USING (account_id)
    LEFT JOIN survey_facts AS s USING (account_id)
    LEFT JOIN invoice_facts AS i USING (account_id)
    LEFT JOIN activity_facts AS ac USING (account_id)
    LEFT JOIN contact_facts AS ct USING (account_id)
    LEFT JOIN metric_facts AS m USING (account_id)
),
-- Raw 0-100 scores; NULL where the metric has no value.
metric_scores AS (
    SELECT
        account_id, parent_account_id, segment_model, arr, days_to_renewal,
        CASE WHEN seat_utilisation IS NOT NULL
             THEN greatest(0.0, least(1.0, (seat_utilisation - 0.2) / 0.5)) * 100 END
            AS seat_utilisation,
        CASE WHEN usage_trend >= 0.2 THEN 100.0 WHEN usage_trend >= 0.0 THEN 70.0
             WHEN usage_trend >= -0.2 THEN 40.0 WHEN usage_trend IS NOT NULL THEN 0.0 END
            AS usage_trend,
        greatest(0.0, least(1.0, (feature_breadth - 1) / 4)) * 100 AS feature_breadth,
        CASE WHEN days_since_last_use IS NOT NULL
             THEN greatest(0.0, least(1.0, (days_since_last_use - 21) / -19)) * 100 END
            AS days_since_last_use,
        -- Mid-rank percentile: ties share the middle of their ranks; a cohort of one is 50.
        CASE WHEN usage_vs_peers IS NULL THEN NULL
             WHEN count(usage_vs_peers) OVER cohort <= 1 THEN 50.0
             ELSE ((rank() OVER ranked - 1)
                   + (cume_dist() OVER ranked * count(usage_vs_peers) OVER cohort - 1)) / 2
                  / (count(usage_vs_peers) OVER cohort - 1) * 100
        END AS usage_vs_peers,
        CASE WHEN integrations IS NOT NULL
             THEN greatest(0.0, least(1.0, integrations / 3)) * 100 END AS integrations,
        CASE WHEN open_p1 >= 2 THEN 0.0 WHEN open_p1 >= 1 THEN 40.0 ELSE 100.0 END AS open_p1,
        greatest(0.0, least(1.0, (urgent_tickets_90d - 6) / -6)) * 100 AS urgent_tickets_90d,
        CASE WHEN csat IS NOT NULL
             THEN greatest(0.0, least(1.0, (csat - 3) / 1.6)) * 100 END AS csat,
        CASE WHEN nps IS NOT NULL THEN greatest(0.0, least(1.0, (nps - 3) / 6)) * 100 END AS nps,
        CASE WHEN days_since_csm_touch IS NOT NULL
             THEN greatest(0.0, least(1.0, (days_since_csm_touch - 90) / -76)) * 100 END
            AS days_since_csm_touch,
        CASE WHEN champion THEN 100.0 ELSE 0.0 END AS champion,
        CASE WHEN executive_sponsor THEN 100.0 ELSE 0.0 END AS executive_sponsor,
        CASE WHEN interaction_sentiment IS NOT NULL
             THEN greatest(0.0, least(1.0, interaction_sentiment + 0.5)) * 100 END
            AS interaction_sentiment,
        CASE WHEN overdue_invoices >= 2 THEN 0.0 WHEN overdue_invoices >= 1 THEN 30.0
             ELSE 100.0 END AS overdue_invoices
    FROM metric_values
    WINDOW cohort AS (PARTITION BY segment_model, usage_vs_peers IS NULL, tenure_bucket),
           ranked AS (PARTITION BY segment_model, usage_vs_peers IS NULL, tenure_bucket
                      ORDER BY usage_vs_peers)
),
-- Component weights per segment model (first matching segment wins; 'default' otherwise).
weights (segment_model, usage, support, satisfaction, relationship, commercial) AS (
    VALUES ('default', 35.0, 20.0, 15.0, 20.0, 10.0),
           ('enterprise', 25.0, 25.0, 15.0, 30.0, 10.0),
           ('smb', 45.0, 20.0, 15.0, 10.0, 10.0)
),
-- Component scores: weighted means of the metrics that have a score (missing metrics are
-- redistributed; the two days_since metrics score 0 when missing). Coverage: the share of
-- the model's weight whose metrics had data.
components AS (
    SELECT
        s.account_id, s.parent_account_id, s.arr, s.days_to_renewal,
        w.usage, w.support, w.satisfaction, w.relationship, w.commercial,
        (coalesce(s.seat_utilisation, 0) + coalesce(s.usage_trend, 0) + s.feature_breadth
         + coalesce(s.days_since_last_use, 0) + coalesce(0.5 * s.usage_vs_peers, 0)
         + coalesce(0.5 * s.integrations, 0))
        / (2 + (s.seat_utilisation IS NOT NULL)::INT + (s.usage_trend IS NOT NULL)::INT
           + 0.5 * (s.usage_vs_peers IS NOT NULL)::INT + 0.5 * (s.integrations IS NOT NULL)::INT)
            AS usage_score,
        (s.open_p1 + s.urgent_tickets_90d + coalesce(s.csat, 0)) / (2 + (s.csat IS NOT NULL)::INT)
            AS support_score,
        s.nps AS satisfaction_score,
        (coalesce(s.days_since_csm_touch, 0) + s.champion + 0.5 * s.executive_sponsor
         + coalesce(s.interaction_sentiment, 0))
        / (2.5 + (s.interaction_sentiment IS NOT NULL)::INT) AS relationship_score,
        s.overdue_invoices AS commercial_score,
        (w.usage / 5 * (1 + (s.seat_utilisation IS NOT NULL)::INT
                          + (s.usage_trend IS NOT NULL)::INT
                          + (s.days_since_last_use IS NOT NULL)::INT
                          + 0.5 * (s.usage_vs_peers IS NOT NULL)::INT
                          + 0.5 * (s.integrations IS NOT NULL)::INT)
         + w.support / 3 * (2 + (s.csat IS NOT NULL)::INT)
         + w.satisfaction * (s.nps IS NOT NULL)::INT
         + w.relationship / 3.5 * (1.5 + (s.days_since_csm_touch IS NOT NULL)::INT
                                     + (s.interaction_sentiment IS NOT NULL)::INT)
         + w.commercial)
        / (w.usage + w.support + w.satisfaction + w.relationship + w.commercial) AS coverage
    FROM metric_scores AS s
    JOIN weights AS w USING (segment_model)
),
-- Overall score: components weighted among those with a score (only satisfaction can lack
-- one), then renewal proximity multiplies the risk (100 - score) by up to 1.5 within 90 days.
overall AS (
    SELECT
        account_id, parent_account_id, arr, days_to_renewal, coverage,
        (usage * usage_score + support * support_score
         + coalesce(satisfaction * satisfaction_score, 0)
         + relationship * relationship_score + commercial * commercial_score)
        / (usage + support + CASE WHEN satisfaction_score IS NULL THEN 0 ELSE satisfaction END
           + relationship + commercial) AS base_score
    FROM components
),
scored AS MATERIALIZED (
    SELECT
        account_id, parent_account_id, coverage,
        100 - least(100.0, (100 - base_score) * (1 + 0.5 * CASE
            WHEN days_to_renewal IS NULL OR days_to_renewal < 0 THEN 0.0
            ELSE greatest(0.0, least(1.0, 1 - CAST(days_to_renewal AS DOUBLE) / 90)) END))
            AS own_score,
        -- Rollup weight: ARR, or a tiny weight without ARR (so all-zero ARR still averages).
        CASE WHEN arr > 0 THEN arr ELSE 1e-9 END AS rollup_weight
    FROM overall
),
-- A parent's score is the ARR-weighted mean of its scored children and itself.
children AS (
    SELECT
        parent_account_id AS account_id,
        sum(own_score * rollup_weight) AS weighted,
        sum(rollup_weight) AS weight
    FROM scored
    WHERE parent_account_id IS NOT NULL AND own_score IS NOT NULL
    GROUP BY parent_account_id
),
final AS (
    SELECT
        s.account_id,
        CASE WHEN c.account_id IS NULL THEN s.own_score
             WHEN s.own_score IS NULL THEN c.weighted / c.weight
             ELSE (c.weighted + s.own_score * s.rollup_weight) / (c.weight + s.rollup_weight)
        END AS score,
        s.coverage
    FROM scored AS s
    LEFT JOIN children AS c USING (account_id)
)
SELECT
    account_id,
    score,
    CASE WHEN score >= 70 THEN 'Green' WHEN score >= 40 THEN 'Yellow'
         WHEN score IS NOT NULL THEN 'Red' END AS tier,
    coverage
FROM final
ORDER BY account_id
"""


def reference_scores(con: duckdb.DuckDBPyConnection, as_of: dt.date) -> pa.Table:
    """columns: account_id, score, tier, coverage (one row per customer on as_of)"""
    return con.execute(SQL, {"as_of": as_of}).to_arrow_table()


def _stored_scores(con: duckdb.DuckDBPyConnection, as_of: dt.date) -> pa.Table:
    """accounthealth's scores for the date, from the model version that scored it last."""
    return con.execute(
        """
        SELECT account_id, score, tier, coverage
        FROM scores
        WHERE as_of = $as_of AND model_version = (
            SELECT model_version FROM scores WHERE as_of = $as_of
            ORDER BY computed_at DESC LIMIT 1)
        ORDER BY account_id
        """,
        {"as_of": as_of},
    ).to_arrow_table()


def compare(project_folder: str | Path, as_of: dt.date) -> dict[str, t.Any]:
    """Run the reference on a scored project and compare it with the stored scores.

    Returns the accounts compared, the largest score and coverage differences, the query's
    seconds, and every mismatch (empty when everything agrees)."""
    path = Path(project_folder) / "accounthealth.duckdb"
    with duckdb.connect(str(path), read_only=True) as con:
        expected = {row["account_id"]: row for row in _stored_scores(con, as_of).to_pylist()}
        started = time.perf_counter()
        table = reference_scores(con, as_of)
        seconds = time.perf_counter() - started
    actual = {row["account_id"]: row for row in table.to_pylist()}
    problems = []
    if not expected:
        problems.append(f"no stored scores for {as_of}: run 'accounthealth score --as-of {as_of}'")
    for account in sorted(expected.keys() - actual.keys()):
        problems.append(f"{account}: scored by accounthealth, missing from the reference")
    for account in sorted(actual.keys() - expected.keys()):
        problems.append(f"{account}: in the reference, not scored by accounthealth")
    max_diff = {"score": 0.0, "coverage": 0.0}
    for account in sorted(expected.keys() & actual.keys()):
        want, got = expected[account], actual[account]
        for column in ("score", "coverage"):
            diff = _diff(want[column], got[column])
            max_diff[column] = max(max_diff[column], diff)
            if diff > 1e-6:
                problems.append(f"{account}: {column} {got[column]!r}, expected {want[column]!r}")
        if want["tier"] != got["tier"]:
            problems.append(f"{account}: tier {got['tier']!r}, expected {want['tier']!r}")
    return {
        "as_of": as_of.isoformat(),
        "accounts": len(expected.keys() & actual.keys()),
        "max_score_diff": max_diff["score"],
        "max_coverage_diff": max_diff["coverage"],
        "seconds": seconds,
        "problems": problems,
    }


def _diff(want: float | None, got: float | None) -> float:
    if want is None or got is None:
        return 0.0 if want is got else math.inf
    return abs(want - got)


def check(project_folder: str | Path, as_of: dt.date) -> None:
    """Raise AssertionError (with the first mismatches) unless the reference gives every account
    of the project's stored scores for ``as_of`` the same score and coverage (within 1e-6) and
    tier, and no other account."""
    _assert_matches(compare(project_folder, as_of))


def _assert_matches(result: dict[str, t.Any]) -> None:
    problems = result["problems"]
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise AssertionError(
            f"reference differs from accounthealth on {result['as_of']} "
            f"({len(problems)} problem(s)):\n  {shown}{more}"
        )


if __name__ == "__main__":
    folder, *days = sys.argv[1:]
    for day in days:
        r = compare(folder, dt.date.fromisoformat(day))
        _assert_matches(r)
        print(
            f"{day}: {r['accounts']} accounts match; max |diff| score {r['max_score_diff']:.3g}, "
            f"coverage {r['max_coverage_diff']:.3g}; query {r['seconds'] * 1000:.1f} ms"
        )
