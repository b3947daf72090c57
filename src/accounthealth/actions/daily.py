"""The daily job: ingest, score, run the playbooks, deliver; and a scheduler that runs it at a
set time each day for long-running deployments."""

from __future__ import annotations

import datetime as dt
import time
import typing as t
from dataclasses import dataclass

from accounthealth.actions.outbox import DeliveryReport
from accounthealth.actions.playbook_run import RulesReport
from accounthealth.sources.ingest import IngestReport

if t.TYPE_CHECKING:
    from accounthealth.project import Project


@dataclass(frozen=True)
class DailyReport:
    """What one daily run did, step by step."""

    day: dt.date
    ingest: IngestReport
    scored: tuple[dt.date, ...]
    rules: RulesReport
    delivery: DeliveryReport
    seconds: float


def daily_run(project: Project, day: dt.date | None, start: dt.date | None) -> DailyReport:
    """Ingest, score the days the playbooks have not run for yet (only those without scores of
    the live model), run the playbooks up to ``day`` and deliver what is due."""
    started = time.perf_counter()
    day = day or dt.date.today()
    ingested = project.ingest()
    store = project.store
    last = store.sql("SELECT max(as_of) FROM rule_runs")[0][0]
    first = last + dt.timedelta(days=1) if last else (start or day)
    wanted = [first + dt.timedelta(days=i) for i in range((day - first).days + 1)]
    # Only the days in question: the whole history would be a scan of every score ever stored.
    scored = {
        row[0]
        for row in store.sql(
            "SELECT DISTINCT as_of FROM scores WHERE model_version = ? AND as_of BETWEEN ? AND ?",
            [project.model.version, first, day],
        )
    }
    missing = [d for d in wanted if d not in scored]
    for run in _consecutive(missing):
        project.score(start=run[0], end=run[-1])
    rules = project.run_rules(day, start=start)
    delivery = project.deliver()
    return DailyReport(
        day, ingested, tuple(missing), rules, delivery, time.perf_counter() - started
    )


def _consecutive(days: list[dt.date]) -> list[list[dt.date]]:
    runs: list[list[dt.date]] = []
    for d in days:
        if runs and (d - runs[-1][-1]).days == 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    return runs


def next_run(now: dt.datetime, at: str) -> dt.datetime:
    """The next time of day ``at`` (HH:MM) strictly after ``now``."""
    hour, minute = (int(x) for x in at.split(":"))
    candidate = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return candidate if candidate > now else candidate + dt.timedelta(days=1)


def scheduled(
    job: t.Callable[[dt.date], t.Any],
    at: str,
    *,
    clock: t.Callable[[], dt.datetime] = dt.datetime.now,
    sleep: t.Callable[[float], None] = time.sleep,
    runs: int | None = None,
) -> None:
    """Run ``job(today)`` every day at ``at``, ``runs`` times (forever when None). A failing
    run is reported by ``job`` and the schedule goes on."""
    done = 0
    while runs is None or done < runs:
        wake = next_run(clock(), at)
        sleep(max(0.0, (wake - clock()).total_seconds()))
        job(wake.date())
        done += 1
