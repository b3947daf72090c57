"""The thin facade shared by the CLI, the API, the web pages and notebooks.

>>> import accounthealth as ah
>>> project = ah.open("mycompany")
>>> project.ingest(); project.score()
>>> project.accounts(tier="Red")          # a DataFrame
>>> print(project.explain("A00042").summary())
"""

from __future__ import annotations

import datetime as dt
import time
import typing as t
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import ibis
import pandas as pd
import pyarrow as pa

from accounthealth.actions import overrides
from accounthealth.actions.api import ActingOnHealth
from accounthealth.config.loader import LoadedProject, load_model_file, load_project
from accounthealth.engine import Engine, open_compute, open_store
from accounthealth.errors import (
    AccountHealthError,
    NotFoundError,
    ProjectError,
    did_you_mean,
)
from accounthealth.explain import Explanation, explain
from accounthealth.memory import (
    older_objects_left_alone,
    return_freed_memory,
    use_lasting_arrow_pool,
)
from accounthealth.metrics.carryover import CarryOver, Resumed
from accounthealth.metrics.compute import running_aggregates
from accounthealth.metrics.definitions import ResolvedModel, resolve
from accounthealth.metrics.sliding import consecutive
from accounthealth.progress import SILENT, Progress
from accounthealth.scoring.day_grid import INPUTS
from accounthealth.scoring.finish import final_scores, split_by_trend
from accounthealth.scoring.querycache import QueryCache
from accounthealth.scoring.run import compiled_queries, day_grid, score_table
from accounthealth.sources.ingest import IngestReport, ingest
from accounthealth.sources.schema import TABLES
from accounthealth.sources.views import register_views
from accounthealth.store import migrate
from accounthealth.store.archive import archive_of
from accounthealth.store.scores import HistoryWriter, current, history_for
from accounthealth.validation.backtest import Backtest, BacktestOptions, backtest

SORTS = ("score", "arr", "change", "renewal", "name")
# Where compiled scoring queries are kept, inside the project folder.
QUERY_CACHE = Path(".accounthealth-cache") / "queries"
# Running values kept for the next day's run (metrics/carryover.py).
CARRIED = Path(".accounthealth-cache") / "carried"
# Rows of one scoring batch (accounts x days): bounds the memory of a backfill.
ACCOUNT_DAYS_PER_BATCH = 1_000_000


@dataclass(frozen=True)
class ScoreReport:
    """What a scoring run did."""

    model_version: str
    dates: tuple[dt.date, ...]
    rows: int
    seconds: float
    # The day whose running values the run carried on from (metrics/carryover.py), if any,
    # and which tables' could not be carried on, and why (those were read from all history).
    carried_from: dt.date | None = None
    not_carried: str | None = None


def _dates(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise AccountHealthError(
            f"--from {start} is after --to {end}", where="score", fix="swap the two dates"
        )
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _frame(scored: pa.Table, final: pa.Table) -> pd.DataFrame:
    """Scored rows with their final columns, as pandas (a backtest's or what-if's)."""
    columns = {c: scored.column(c) for c in scored.column_names}
    columns |= {c: final.column(c) for c in final.column_names}
    # self_destruct frees each Arrow column as it converts: one copy of a large batch in memory
    # instead of two.
    frame = pa.table(columns).to_pandas(self_destruct=True, split_blocks=True)
    frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
    return frame


class Project(ActingOnHealth):
    """An accounthealth project folder: its config, health model and embedded store."""

    def __init__(self, folder: Path | str, progress: Progress = SILENT) -> None:
        use_lasting_arrow_pool()  # a fourth of a pass's time otherwise (memory.py)
        self.folder = Path(folder).resolve()
        self.progress = progress
        self.loaded: LoadedProject = load_project(self.folder)
        self._store: Engine | None = None
        self._compute: Engine | None = None
        self._resolved: ResolvedModel | None = None

    # -- plumbing -------------------------------------------------------------------------
    @property
    def store(self) -> Engine:
        """Where scores, history and runs are kept; opened (and migrated) on first use."""
        if self._store is None:
            self._store = open_store(self.loaded)
            migrate(self._store)
            self._note_missing_history(self._store)
        return self._store

    def _note_missing_history(self, store: Engine) -> None:
        archive = archive_of(store)
        if archive is None:
            return
        missing = archive.missing(store)
        for days, what, effect in (
            (missing.scores, "scores of {} scored day(s) are", "they show no scores"),
            (missing.detail, "metric detail of {} scored day(s) is", "they explain no detail"),
        ):
            if days:
                self.progress.note(
                    f"the {what.format(len(days))} missing from {archive.folder} "
                    f"({days[0]} to {days[-1]}): {effect}. Restore the folder from the backup "
                    "of the store's file, or rescore: "
                    f"accounthealth score --from {days[0]} --to {days[-1]}"
                )

    @property
    def compute(self) -> Engine:
        """The engine that holds the source data and evaluates the model (the store itself
        unless `compute:` in accounthealth.yaml names another)."""
        if self._compute is None:
            self._compute = open_compute(self.loaded, self.store)
            register_views(self._compute, self.loaded)
        return self._compute

    @property
    def model(self) -> ResolvedModel:
        """The health model with every name checked against the data's columns."""
        if self._resolved is None:
            self._resolved = resolve(self.loaded.health, self._account_columns())
        return self._resolved

    @property
    def query_cache(self) -> QueryCache:
        """Compiled scoring queries kept between runs (in the project folder, QUERY_CACHE)."""
        return QueryCache(self.folder / QUERY_CACHE)

    def _account_columns(self) -> list[str]:
        if self.compute.has_table("accounts"):
            return list(self.compute.table("accounts").columns)
        return []

    def load_model(self, file: Path | str) -> ResolvedModel:
        """Another health model file (a proposed one), checked against this project's data."""
        path = Path(file)
        path = path if path.is_absolute() else self.folder / path
        if not path.exists():
            raise NotFoundError(f"no model file {path}", where=str(path), fix="check the path")
        return resolve(load_model_file(path), self._account_columns())

    def close(self) -> None:
        """Close the engines."""
        if self._compute is not None and self._compute is not self._store:
            self._compute.close()
        if self._store is not None:
            self._store.close()
        self._compute = self._store = None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require(self, engine: Engine, table: str, fix: str) -> None:
        if not engine.has_table(table):
            raise ProjectError(f"there is no {table} data yet", where=str(self.folder), fix=fix)

    # -- data in ----------------------------------------------------------------------------
    def ingest(self) -> IngestReport:
        """Load every configured source into the store (all or nothing)."""
        report = ingest(self.store, self.compute, self.loaded, self.progress)
        self._resolved = None  # account columns may have changed
        return report

    def rejects(self, table: str | None = None) -> pd.DataFrame:
        """Rows of the ingested files kept aside, with file, row, line, column and reason."""
        rejected = self.store.table("rejected_rows")
        if table:
            rejected = rejected.filter(rejected.table_name == table)
        return self.store.execute(rejected.order_by(["table_name", "source_file", "row_number"]))

    # -- scoring -----------------------------------------------------------------------------
    def data_span(self) -> tuple[dt.date, dt.date]:
        """The first and the most recent date any event, ticket or other signal was recorded
        (today for both when there is none). The first comes from signals that happen at a
        moment (events, surveys, activities, metrics): contracts and contacts often start
        long before a company's data does."""
        compute = self.compute
        self._require(compute, "accounts", "run 'accounthealth ingest' first")
        firsts: list[dt.date] = []
        lasts: list[dt.date] = []
        for name, spec in TABLES.items():
            if name != "accounts" and compute.has_table(name):
                table = compute.table(name)
                day = table[spec.time].cast("date")
                value = compute.execute(table.aggregate(first=day.min(), last=day.max()))
                first, last = (
                    pd.Timestamp(v).date() if pd.notna(v) else None for v in value.iloc[0]
                )
                lasts += [last] if last else []
                if first and spec.end is None and name != "outcomes":
                    firsts.append(first)
        today = dt.date.today()
        last = max(lasts, default=today)
        return min(firsts, default=last), last

    def latest_data_date(self) -> dt.date:
        """The most recent date any event, ticket or other signal was recorded."""
        return self.data_span()[1]

    def score(
        self,
        as_of: dt.date | None = None,
        *,
        start: dt.date | None = None,
        end: dt.date | None = None,
        batch_days: int | None = None,
    ) -> ScoreReport:
        """Score every account as of one date (default today), or every day from start to end.

        Days are scored in batches, each one query and one transaction; a failure leaves the
        days already written intact and the failing batch unwritten. A batch holds up to 31
        days and, by default, about a million account-days, so memory stays bounded on a
        large book.
        """
        self._require(self.compute, "accounts", "run 'accounthealth ingest' first")
        if start or end:
            if not (start and end):
                raise AccountHealthError(
                    "a backfill needs both --from and --to", where="score", fix="give both dates"
                )
            dates = _dates(start, end)
        else:
            dates = [as_of or dt.date.today()]
        # Scoring reads the canonical tables and writes none of them.
        with older_objects_left_alone(), self.compute.tables_fixed(TABLES):
            return self._score(dates, batch_days)

    def _score(self, dates: list[dt.date], batch_days: int | None) -> ScoreReport:
        resolved = self.model
        started = time.perf_counter()
        # The history writer first: its thread records the model version, looks up what it
        # needs of the store and reads the overrides in force while this one works out what
        # to read and reads it (on this thread, they took 15-20 ms of a daily run of the
        # benchmark's book, with a core to spare at its start).
        with (
            self.progress.task("scoring", total=len(dates)) as advance,
            HistoryWriter(self.store, resolved) as history,
        ):
            # Written history carries the overrides in force; read once, each row keeps
            # those of its own date.
            in_force = history.reading(partial(overrides.in_force, start=dates[0], end=dates[-1]))
            resumed = self._score_into(history, advance, in_force, resolved, dates, batch_days)
        # Once the writer is done: its rows include the last batch's.
        carried = resumed.carried if resumed is not None else None
        return ScoreReport(
            resolved.version,
            tuple(dates),
            history.rows,
            time.perf_counter() - started,
            carried_from=carried.day if carried is not None else None,
            not_carried=resumed.why_not if resumed is not None else None,
        )

    def _score_into(
        self,
        history: HistoryWriter,
        advance: t.Callable[[int], None],
        in_force: Future[pd.DataFrame],
        resolved: ResolvedModel,
        dates: list[dt.date],
        batch_days: int | None,
    ) -> Resumed | None:
        """Score ``dates`` into ``history`` (``_score``); returns the kept state it carried
        on from, if it looked for one."""
        running = days = None
        cache = self.query_cache
        carry = resumed = None
        if self.compute.in_process:
            key = cache.key(self.compute, resolved)
            in_place = {
                name: source.append_only
                for name, source in self.loaded.config.sources.items()
                if source.in_engine
            }
            compiled = compiled_queries(self.compute, resolved, cache)
            carry = CarryOver(
                self.folder / CARRIED, key, self.store, self.compute, in_place, compiled, INPUTS
            )
            resumed = carry.resume(dates[0])
            if resumed.carried is not None or consecutive(dates) or carry.in_use(dates[0]):
                # A run of days, or one that carries on from the day before or starts a state
                # for the days after: each aggregate is kept day by day instead of recomputed
                # per day, and each day's grid is then worked out from them in memory
                # (scoring/day_grid.py), or by the compiled query where it cannot be.
                running = running_aggregates(
                    self.compute, resolved, dates, resumed.carried, compiled
                )
                batch_days = batch_days or 1
        # Set up while the running values' reads are in flight, or the work on what they
        # read (RunningAggregates.ready).
        try:
            if running is not None:
                days = day_grid(self.compute, resolved, running, cache)
        except BaseException:
            if running is not None:
                running.abandon()
            raise
        if running is not None:
            running.ready()
        spec = resolved.model.trend_tiers
        batches = self._batches(dates, batch_days)
        # The state for the next day is written while the days are scored: its rows from the
        # start, its running values once they reach the last day. Kept after scoring, it cost
        # a daily run of the benchmark's book 0.3-0.4 s; kept from the last day on, its rows
        # were written beside that day's scoring and history, both cores busy. It is the
        # data's, right whether or not the scores are written.
        reached: t.Callable[[], None] | None = None
        try:
            if carry is not None and running is not None:
                carry.start_keeping(running, days)
                reached = carry.last_day_reached
            return_freed_memory()  # what reading the data freed (memory.py)
            for i, batch in enumerate(batches):
                if i and running is None:
                    # What the last batch freed. Not between the one-day batches of a run of
                    # running values: each day reuses what the day before freed.
                    return_freed_memory()
                at_last_day = reached if i == len(batches) - 1 else None
                scored = score_table(
                    self.compute,
                    resolved,
                    batch,
                    cache,
                    running,
                    days,
                    at_last_day,
                    history.segment_scored,
                    history.shares,
                )
                history.begin(scored, batch, last=i == len(batches) - 1)
                earlier = None
                if spec is not None:
                    # The 4-tier split compares with stored scores `days` earlier.
                    back = dt.timedelta(days=spec.days)
                    wanted = sorted({d - back for d in batch} - set(batch))
                    earlier = history_for(self.store, resolved.version, wanted)
                final = final_scores(scored, resolved, earlier=earlier, in_force=in_force.result())
                history.finish(final)
                advance(len(batch))
            if carry is not None:
                # While the last batch is written.
                unkept = carry.finish_keeping()
                if unkept:
                    self.progress.note(unkept)
        finally:
            if carry is not None:
                carry.abandon_keeping()
        return resumed

    def evaluate(
        self, dates: t.Iterable[dt.date], model: ResolvedModel | None = None
    ) -> pd.DataFrame:
        """Scores of every account on each of ``dates``, point-in-time, with ``model`` (default
        the live one): computed and returned, not stored (for backtests and what-ifs)."""
        resolved = model or self.model
        wanted = sorted(set(dates))
        spec = resolved.model.trend_tiers
        # The 4-tier split compares with the score `days` earlier: score those dates too.
        extra = (
            sorted({d - dt.timedelta(days=spec.days) for d in wanted} - set(wanted)) if spec else []
        )
        frames = []
        cache = self.query_cache
        with self.progress.task("scoring", total=len(wanted) + len(extra)) as advance:
            for batch in self._batches(sorted(wanted + extra), None):
                scored = score_table(self.compute, resolved, batch, cache)
                frames.append(_frame(scored, final_scores(scored, resolved)))
                advance(len(batch))
        frame = pd.concat(frames, ignore_index=True)
        if spec is not None:
            frame = split_by_trend(frame[frame["as_of"].isin(wanted)], frame, resolved.model)
        return frame.reset_index(drop=True)

    def _batches(self, dates: list[dt.date], batch_days: int | None) -> list[list[dt.date]]:
        """Dates in scoring batches of up to 31 days and about ACCOUNT_DAYS_PER_BATCH rows."""
        if batch_days is None and len(dates) > 1:
            accounts = self.compute.table("accounts")
            count = int(self.compute.execute(accounts.count()))
            batch_days = max(1, min(31, ACCOUNT_DAYS_PER_BATCH // max(count, 1)))
        step = batch_days or 1
        return [dates[i : i + step] for i in range(0, len(dates), step)]

    # -- validation ---------------------------------------------------------------------------
    def backtest(self, options: BacktestOptions | None = None, **settings: t.Any) -> Backtest:
        """Score past dates point-in-time and measure how well the scores predicted churn.

        ``settings`` are BacktestOptions fields (horizon, start, end, every, segment, outcomes,
        grace, reps), e.g. ``project.backtest(horizon=90, every=30)``.
        """
        return backtest(self, options or BacktestOptions(**settings))

    def calibrate(
        self, train_until: dt.date, options: BacktestOptions | None = None, **settings: t.Any
    ) -> dict:
        """Fit suggested weights on outcomes up to ``train_until``, write the proposed model
        file next to the live one (never replacing it), and compare the live model, the
        proposed one and a gradient-boosted reference on the period after it."""
        from accounthealth.validation.calibrate import calibrate

        return calibrate(self, train_until, options or BacktestOptions(**settings))

    def plan(
        self,
        proposed: Path | str | None = None,
        options: BacktestOptions | None = None,
        **settings: t.Any,
    ) -> dict:
        """What differs between the live model and a proposed one (default
        model.proposed.yaml), and both backtested on the same dates."""
        from accounthealth.validation.changes import plan

        return plan(self, proposed, options or BacktestOptions(**settings))

    def apply(self, proposed: Path | str | None = None, *, by: str, note: str = "") -> dict:
        """Make a proposed model file the live model, recording who applied it and when."""
        from accounthealth.validation.changes import apply

        result = apply(self, proposed, by, note)
        self.loaded = load_project(self.folder)
        self._resolved = None
        return result

    def model_changes(self) -> pd.DataFrame:
        """Every applied model change, newest first."""
        changes = self.store.table("model_changes")
        return self.store.execute(changes.order_by(changes.changed_at.desc()))

    # -- results -----------------------------------------------------------------------------
    def _history(self) -> ibis.Table:
        self._require(self.store, "scores", "run 'accounthealth score' first")
        return current(self.store, self.model.version)

    def scored_dates(self) -> list[dt.date]:
        """Every date that has scores, oldest first."""
        history = self._history()
        frame = self.store.execute(history.select("as_of").distinct().order_by("as_of"))
        return [pd.Timestamp(d).date() for d in frame["as_of"]]

    def latest_scored_date(self) -> dt.date:
        """The most recent date with scores."""
        history = self._history()
        value = self.store.execute(history.aggregate(last=history.as_of.max()))["last"].iloc[0]
        if pd.isna(value):
            raise NotFoundError(
                "no scores yet", where=str(self.folder), fix="run 'accounthealth score'"
            )
        return pd.Timestamp(value).date()

    def scores(self, start: dt.date | None = None, end: dt.date | None = None) -> pd.DataFrame:
        """Score history (one row per account and date) between two dates, inclusive."""
        history = self._history()
        if start:
            history = history.filter(history.as_of >= start)
        if end:
            history = history.filter(history.as_of <= end)
        return self.store.execute(history.order_by(["as_of", "account_id"]))

    def accounts(
        self,
        as_of: dt.date | None = None,
        *,
        tier: str | None = None,
        segment: str | None = None,
        owner: str | None = None,
        sort: str = "score",
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Accounts on a date (default: the latest scored date) with score, tier, coverage,
        ARR, renewal and the score's change over each trend window."""
        history = self._history()
        as_of = as_of or self.latest_scored_date()
        day = history.filter(history.as_of == as_of)
        for name, value in (("tier", tier), ("segment", segment), ("owner", owner)):
            if value is not None:
                day = day.filter(day[name].lower() == value.lower())
        out = day
        for days in self.model.model.trends:
            # Only a score of the same model version is a change; across a model change the
            # difference is the new model's, not the account's (backfill to compare).
            past = history.filter(history.as_of == as_of - dt.timedelta(days=days)).select(
                "account_id",
                _then_version=history.model_version,
                **{f"change_{days}d": history.score},
            )
            out = out.left_join(past, "account_id").drop("account_id_right")
            change = ibis.ifelse(
                out.model_version == out._then_version, out.score - out[f"change_{days}d"], None
            )
            out = out.mutate(**{f"change_{days}d": change}).drop("_then_version")
        if sort not in SORTS:
            raise AccountHealthError(
                f"cannot sort by '{sort}'", where="--sort", fix=did_you_mean(sort, SORTS)
            )
        trends = self.model.model.trends
        # "change" sorts by the 30-day change when configured, else the first trend window.
        change_col = f"change_{30 if 30 in trends else trends[0]}d" if trends else "score"
        order = {
            "score": [out.score.asc(nulls_first=False)],
            "arr": [out.arr.desc()],
            "change": [out[change_col].asc(nulls_first=False)],
            "renewal": [out.days_to_renewal.asc(nulls_first=False)],
            "name": [out.name.asc()],
        }[sort]
        out = out.order_by([*order, out.account_id])
        if limit:
            out = out.limit(limit)
        return self.store.execute(out)

    def explain(self, account_id: str, as_of: dt.date | None = None) -> Explanation:
        """Score, components, metrics, coverage, freshness and change drivers for one account."""
        self._require(self.store, "scores", "run 'accounthealth score' first")
        return explain(self.store, self.compute, self.model.version, account_id, as_of)

    def export(
        self,
        path: Path | str,
        *,
        what: str = "scores",
        fmt: str | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
    ) -> int:
        """Write score history (or component/metric detail) to CSV or Parquet; returns rows."""
        tables = {"scores": "scores", "components": "component_scores", "metrics": "metric_values"}
        if what not in tables:
            raise AccountHealthError(
                f"cannot export '{what}'", where="export", fix=did_you_mean(what, tables)
            )
        path = Path(path)
        fmt = fmt or path.suffix.lstrip(".").lower()
        if fmt not in ("csv", "parquet"):
            raise AccountHealthError(
                f"unknown export format '{fmt}'", where="--format", fix="use csv or parquet"
            )
        history = self._history()
        if what != "scores":
            detail = self.store.table(tables[what])
            keys = history.select("account_id", "as_of", "model_version")
            history = detail.semi_join(keys, ["account_id", "as_of", "model_version"])
        if start:
            history = history.filter(history.as_of >= start)
        if end:
            history = history.filter(history.as_of <= end)
        data = self.store.to_arrow(history.order_by(["as_of", "account_id"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            import pyarrow.csv as pacsv

            pacsv.write_csv(data, path)
        else:
            import pyarrow.parquet as pq

            pq.write_table(data, path)
        return data.num_rows


def open(folder: Path | str = ".", progress: Progress = SILENT) -> Project:
    """Open the project in ``folder`` (the Python API's entry point)."""
    return Project(folder, progress)
