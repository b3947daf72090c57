"""DDL for accounthealth's own tables, applied as numbered migrations so that a store created
by an older version is upgraded in place."""

from __future__ import annotations

from accounthealth.engine.base import Engine

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS ingest_runs (
            run_id VARCHAR, table_name VARCHAR, files VARCHAR, rows_read BIGINT,
            rows_loaded BIGINT, rows_rejected BIGINT, fingerprint VARCHAR,
            ingested_at TIMESTAMP)""",
        """CREATE TABLE IF NOT EXISTS rejected_rows (
            table_name VARCHAR, source_file VARCHAR, row_number BIGINT, line BIGINT,
            column_name VARCHAR, value VARCHAR, reason VARCHAR, record VARCHAR)""",
        """CREATE TABLE IF NOT EXISTS model_versions (
            model_version VARCHAR PRIMARY KEY, name VARCHAR, definition VARCHAR,
            first_scored_at TIMESTAMP)""",
        """CREATE TABLE IF NOT EXISTS scores (
            account_id VARCHAR, as_of DATE, model_version VARCHAR, segment_model VARCHAR,
            score DOUBLE, own_score DOUBLE, base_score DOUBLE, renewal_adjustment DOUBLE,
            tier VARCHAR, coverage DOUBLE, rollup_children INTEGER, arr DOUBLE,
            days_to_renewal INTEGER, segment VARCHAR, owner VARCHAR, manager VARCHAR,
            parent_account_id VARCHAR, computed_at TIMESTAMP)""",
        """CREATE TABLE IF NOT EXISTS component_scores (
            account_id VARCHAR, as_of DATE, model_version VARCHAR, component VARCHAR,
            score DOUBLE, share DOUBLE, contribution DOUBLE)""",
        """CREATE TABLE IF NOT EXISTS metric_values (
            account_id VARCHAR, as_of DATE, model_version VARCHAR, component VARCHAR,
            metric VARCHAR, value DOUBLE, score DOUBLE, present BOOLEAN, share DOUBLE,
            contribution DOUBLE)""",
    ),
    # The account's name on the date, so lists need no join with data in the compute engine.
    ("ALTER TABLE scores ADD COLUMN name VARCHAR",),
)


def migrate(engine: Engine) -> int:
    """Bring the store's own tables to the current schema; returns the schema version."""
    engine.sql("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
    rows = engine.sql("SELECT max(version) FROM schema_version")
    current = rows[0][0] or 0
    for number, statements in enumerate(MIGRATIONS, start=1):
        if number <= current:
            continue
        with engine.transaction():
            for statement in statements:
                engine.sql(statement)
            engine.sql("INSERT INTO schema_version VALUES (?)", [number])
        current = number
    return current
