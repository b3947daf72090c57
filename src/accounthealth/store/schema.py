"""DDL for accounthealth's own tables, applied as numbered migrations so that a store created
by an older version is upgraded in place."""

from __future__ import annotations

import os
import re

import pyarrow as pa

from accounthealth.engine.base import Engine
from accounthealth.store.archive import KEY_COLUMNS, archive_of, detail_positions

# A SQL string literal, as DuckDB writes one back in a view's definition.
_LITERAL = re.compile(r"'(?:[^']|'')*'")

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
    # Component and metric detail in one wide row per account and date (columns by position,
    # added as models grow; model_parts names the positions): a long row per metric repeated
    # the account id sixteen times and made writing history most of a scoring pass.
    # metric_values and component_scores become views; rows written before stay readable.
    (
        "ALTER TABLE metric_values RENAME TO metric_values_legacy",
        "ALTER TABLE component_scores RENAME TO component_scores_legacy",
        """CREATE TABLE IF NOT EXISTS score_details (
            account_id VARCHAR, as_of DATE, model_version VARCHAR, segment_model VARCHAR)""",
        """CREATE TABLE IF NOT EXISTS model_parts (
            model_version VARCHAR, segment_model VARCHAR, kind VARCHAR, position INTEGER,
            component VARCHAR, metric VARCHAR)""",
    ),
    # Applied model changes: who, when, from which version to which, both definitions.
    (
        """CREATE TABLE IF NOT EXISTS model_changes (
            changed_at TIMESTAMP, changed_by VARCHAR, from_version VARCHAR,
            to_version VARCHAR, model_file VARCHAR, previous_definition VARCHAR,
            new_definition VARCHAR, note VARCHAR)""",
    ),
    # The calibrated churn probability beside each score (empty for models without one).
    ("ALTER TABLE scores ADD COLUMN churn_probability DOUBLE",),
    # Acting on health: the append-only audit log, rule state and firings, tasks, the
    # notification outbox, and overrides.
    (
        """CREATE TABLE IF NOT EXISTS audit_log (
            entry_id BIGINT PRIMARY KEY, logged_at TIMESTAMP, actor VARCHAR, action VARCHAR,
            subject VARCHAR, account_id VARCHAR, details VARCHAR, previous_hash VARCHAR,
            entry_hash VARCHAR)""",
        """CREATE TABLE IF NOT EXISTS rule_runs (
            as_of DATE PRIMARY KEY, model_version VARCHAR, playbooks_version VARCHAR,
            ran_at TIMESTAMP, firings INTEGER, notifications INTEGER)""",
        """CREATE TABLE IF NOT EXISTS health_states (
            account_id VARCHAR PRIMARY KEY, as_of DATE, stable_tier VARCHAR,
            stable_since DATE, previous_tier VARCHAR, pending_tier VARCHAR,
            pending_days INTEGER)""",
        """CREATE TABLE IF NOT EXISTS rule_states (
            rule VARCHAR, account_id VARCHAR, active BOOLEAN, active_since DATE,
            last_fired DATE, PRIMARY KEY (rule, account_id))""",
        """CREATE TABLE IF NOT EXISTS rule_firings (
            firing_id VARCHAR PRIMARY KEY, dedupe_key VARCHAR UNIQUE, rule VARCHAR,
            account_id VARCHAR, as_of DATE, trigger VARCHAR, score DOUBLE, tier VARCHAR,
            previous_tier VARCHAR, details VARCHAR, playbooks_version VARCHAR,
            fired_at TIMESTAMP)""",
        """CREATE TABLE IF NOT EXISTS tasks (
            task_id VARCHAR PRIMARY KEY, firing_id VARCHAR, rule VARCHAR, kind VARCHAR,
            account_id VARCHAR, title VARCHAR, owner VARCHAR, priority VARCHAR,
            status VARCHAR, created_on DATE, due_on DATE, snoozed_until DATE,
            resolved_on DATE, outcome VARCHAR, escalations INTEGER, created_at TIMESTAMP,
            updated_at TIMESTAMP, first_action_at TIMESTAMP)""",
        """CREATE TABLE IF NOT EXISTS notifications (
            notification_id VARCHAR PRIMARY KEY, firing_id VARCHAR, task_id VARCHAR,
            rule VARCHAR, account_id VARCHAR, channel VARCHAR, recipient VARCHAR,
            address VARCHAR, subject VARCHAR, body VARCHAR, created_at TIMESTAMP,
            status VARCHAR, attempts INTEGER, next_attempt_at TIMESTAMP, last_error VARCHAR,
            delivered_at TIMESTAMP)""",
        """CREATE TABLE IF NOT EXISTS overrides (
            override_id VARCHAR PRIMARY KEY, account_id VARCHAR, target VARCHAR,
            component VARCHAR, score DOUBLE, tier VARCHAR, reason VARCHAR, author VARCHAR,
            starts_on DATE, expires_on DATE, created_at TIMESTAMP, removed_at TIMESTAMP,
            removed_by VARCHAR, removal_reason VARCHAR)""",
        "ALTER TABLE scores ADD COLUMN computed_score DOUBLE",
        "ALTER TABLE scores ADD COLUMN computed_tier VARCHAR",
        "ALTER TABLE scores ADD COLUMN override_id VARCHAR",
    ),
    # Detail rows may live outside the table (a DuckDB store's Parquet archive, see
    # store/archive.py): score_details becomes a view over the table and the listed files.
    (
        "ALTER TABLE score_details RENAME TO score_details_stored",
        "CREATE VIEW score_details AS SELECT * FROM score_details_stored",
        """CREATE TABLE IF NOT EXISTS detail_files (
            model_version VARCHAR, as_of DATE, file VARCHAR, row_count BIGINT)""",
    ),
    # Scores may live outside the table too (the archive's score files, listed in
    # detail_files): scores becomes a view over the table and the listed files. A migration
    # that changes the scores' columns must define the view again (PostgreSQL expands its
    # SELECT * once) and give the archive a new folder for files of the new columns.
    (
        "ALTER TABLE scores RENAME TO scores_stored",
        "CREATE VIEW scores AS SELECT * FROM scores_stored",
    ),
    # Each part's weight in its segment model, from which the score_details view works out the
    # shares a lean detail file leaves out (store/derived.py). NULL for versions recorded
    # before: record_model gives a version its weights when it scores again.
    ("ALTER TABLE model_parts ADD COLUMN weight DOUBLE",),
)
# Per position of score_details: metric columns (m<i>_...) and component columns (c<i>_...).
METRIC_FIELDS = {"value": "DOUBLE", "score": "DOUBLE", "present": "BOOLEAN", "share": "DOUBLE"}
COMPONENT_FIELDS = {"score": "DOUBLE", "share": "DOUBLE"}
PREFIX = {"metric": "m", "component": "c"}
FIELDS = {"metric": METRIC_FIELDS, "component": COMPONENT_FIELDS}


def detail_width(engine: Engine) -> dict[str, int]:
    """How many metric and component positions score_details has columns for."""
    metrics, components = detail_positions(engine.column_names("score_details_stored"))
    return {"metric": metrics, "component": components}


def widen_details(engine: Engine, metrics: int, components: int) -> None:
    """Give score_details columns for at least ``metrics`` and ``components`` positions and
    define the history views over them (names are generated from numbers, never from a
    model)."""
    width = detail_width(engine)
    wanted = {"metric": metrics, "component": components}
    if all(width[k] >= wanted[k] for k in PREFIX) and engine.has_table("metric_values"):
        return
    with engine.transaction():
        for kind, prefix in PREFIX.items():
            for position in range(width[kind], wanted[kind]):
                for field, type_ in FIELDS[kind].items():
                    engine.sql(
                        f"ALTER TABLE score_details_stored ADD COLUMN IF NOT EXISTS "
                        f"{prefix}{position}_{field} {type_}"
                    )
        width = {k: max(width[k], wanted[k]) for k in PREFIX}
        define_archive_views(engine)
        engine.sql(_detail_view("metric_values", "metric", width["metric"]))
        engine.sql(_detail_view("component_scores", "component", width["component"]))


def define_archive_views(engine: Engine) -> None:
    """(Re)define the score_details and scores views: their table's rows and, in a store that
    keeps an archive, the rows of the files listed in detail_files (made with the archive's
    folder when a store's first model widens its detail). In the caller's transaction, when
    the store's detail columns change."""
    for view, selects in _archive_views(engine).items():
        engine.sql(_union_view(view, selects))


def _archive_views(engine: Engine) -> dict[str, list[str]]:
    # Detail first: its layout makes the archive's folder, which the scores' layout joins.
    return {"score_details": _details_selects(engine), "scores": _scores_selects(engine)}


def _union_view(name: str, selects: list[str]) -> str:
    return f"CREATE OR REPLACE VIEW {name} AS " + " UNION ALL BY NAME ".join(selects)


def _details_selects(engine: Engine) -> list[str]:
    selects = ["SELECT * FROM score_details_stored"]
    archive = archive_of(engine)
    schema = stored_schema(engine, "score_details_stored")
    # A store with no detail columns yet (before its first model) needs no folder.
    if archive is not None and len(schema) > len(KEY_COLUMNS):
        archive.layout(schema)
        selects += archive.selects()
    return selects


def _scores_selects(engine: Engine) -> list[str]:
    selects = ["SELECT * FROM scores_stored"]
    archive = archive_of(engine)
    # The folder of score files comes with the archive's folder, and its layout file again
    # if it was lost: the view reads the files through it.
    if archive is not None and archive.folder.is_dir():
        archive.scores_layout(stored_schema(engine, "scores_stored"))
        selects += archive.scores_selects()
    return selects


def stored_schema(engine: Engine, table: str) -> pa.Schema:
    """The Arrow schema of the store's ``table`` (``scores_stored``,
    ``score_details_stored``): the columns a day's archive file has."""
    return engine.table(table).schema().to_pyarrow()


def follow_archive(engine: Engine) -> None:
    """Define the scores and score_details views again where they do not read the archive's
    folders as they now are: their paths are absolute (the project folder may have moved),
    and a folder lost with its files is made again."""
    for view, selects in _archive_views(engine).items():
        rows = engine.sql("SELECT sql FROM duckdb_views() WHERE view_name = ?", [view])
        defined = _paths(rows[0][0]) if rows else set()
        if defined != _paths(" ".join(selects)):
            with engine.transaction():
                engine.sql(_union_view(view, selects))


def _paths(sql: str) -> set[str]:
    """The path literals of a view's SQL: DuckDB writes other literals back into it too
    (``filename = true`` becomes ``CAST('t' AS BOOLEAN)``)."""
    return {literal for literal in _LITERAL.findall(sql) if os.sep in literal}


def _detail_view(name: str, kind: str, width: int) -> str:
    """A long view (one row per account, date and metric or component) over score_details."""
    fields = FIELDS[kind]
    picked = []
    for field, type_ in fields.items():
        branches = " ".join(f"WHEN {i} THEN d.{PREFIX[kind]}{i}_{field}" for i in range(width))
        picked.append(
            f"CASE p.position {branches} END AS {field}"
            if width
            else f"CAST(NULL AS {type_}) AS {field}"
        )
    keys = "account_id, as_of, model_version, component"
    keys += ", metric" if kind == "metric" else ""
    columns = f"{keys}, {', '.join(fields)}"
    return f"""CREATE OR REPLACE VIEW {name} AS
        SELECT {columns}, coalesce(score * share, 0.0) AS contribution
        FROM (
            SELECT d.account_id, d.as_of, d.model_version, p.component, p.metric,
                   {", ".join(picked)}
            FROM score_details AS d
            JOIN model_parts AS p
              ON p.model_version = d.model_version AND p.segment_model = d.segment_model
             AND p.kind = '{kind}'
        ) AS detail
        UNION ALL
        SELECT {columns}, contribution FROM {name}_legacy"""


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
    widen_details(engine, 0, 0)
    archive = archive_of(engine)
    if archive is not None:
        follow_archive(engine)
        archive.sweep(engine)
    return current
