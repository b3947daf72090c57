"""The running values of a backfill (metrics/sliding.py) on the data that trips running sums and
maxima: infinite values entering and leaving a window (a running sum must not keep them once
their row has left) and times with fractional seconds (latest orders by the time itself).
Each day of the backfill must equal the day scored alone."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest

import accounthealth as ah
from accounthealth.metrics.series import Series, stable_order

from builders import account, make_project

START = dt.date(2026, 3, 1)
END = dt.date(2026, 3, 12)

MODEL = """
components:
  all:
    weight: 1
    metrics:
      qty_sum_3d: {sum: events.quantity, window: 3d, score: {linear: {bad: 0, good: 10}}}
      qty_avg_3d: {avg: events.quantity, window: 3d, score: {linear: {bad: 0, good: 10}}}
      qty_sum: {sum: events.quantity, score: {linear: {bad: 0, good: 10}}}
      last_nps: {latest: surveys.score, score: {linear: {bad: 0, good: 10}}}
      last_nps_4d: {latest: surveys.score, window: 4d, score: {linear: {bad: 0, good: 10}}}
"""


def event(i: int, when: str, quantity: str) -> dict:
    return {
        "event_id": f"e{i}",
        "account_id": "A1",
        "user_id": "u1",
        "event_time": when,
        "event": "login",
        "quantity": quantity,
    }


def survey(i: int, when: str, score: int) -> dict:
    return {
        "response_id": f"r{i}",
        "account_id": "A1",
        "responded_at": when,
        "kind": "nps",
        "score": score,
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    events = [
        event(1, "2026-03-01 09:00:00", "1"),
        event(2, "2026-03-02 09:00:00", "nan"),  # read from a file as no value
        event(6, "2026-03-04 09:00:00", "4"),
        event(3, "2026-03-06 09:00:00", "inf"),  # Mar 6 to Mar 8
        event(4, "2026-03-07 09:00:00", "-inf"),  # with +inf: NaN on Mar 7 and 8
        event(5, "2026-03-10 09:00:00", "2"),  # finite again from Mar 10
    ]
    surveys = [
        survey(1, "2026-03-02 10:00:00.250", 7),
        survey(2, "2026-03-02 10:00:00.750", 9),  # later by half a second: the latest
        survey(3, "2026-03-08 23:59:59.999", 3),
    ]
    return make_project(
        tmp_path / "p",
        MODEL,
        {"accounts": [account("A1")], "events": events, "surveys": surveys},
    )


def values(p: ah.Project, day: dt.date) -> dict[str, str]:
    """Metric values of the day as text, so that NaN equals NaN."""
    table = p.store.table("metric_values")
    frame = p.store.execute(table.filter(table.as_of == day))
    return {r.metric: repr(r.value) for r in frame.itertuples()}


def test_running_values_equal_each_day_alone(project: Path) -> None:
    days = [START + dt.timedelta(days=i) for i in range((END - START).days + 1)]
    with ah.open(project) as p:
        p.ingest()
        # A table read in place may hold rows of an account that is not in accounts: a day
        # scored alone leaves them out, and so must the running values (a row of no account
        # must not count for another).
        p.compute.raw.execute(
            "INSERT INTO events BY NAME SELECT 'e9' AS event_id, 'ZZ' AS account_id, "
            "TIMESTAMP '2026-03-05 09:00:00' AS event_time, 'login' AS event, 50.0 AS quantity"
        )
        alone = {}
        for day in days:
            p.score(day)
            alone[day] = values(p, day)
        p.score(start=START, end=END)
        for day in days:
            assert values(p, day) == alone[day], day
    # What the days show, worked out by hand.
    sums = {day: float(alone[day]["qty_sum_3d"]) for day in days}
    assert sums[dt.date(2026, 3, 3)] == 1  # Mar 1 to 3: 1 and no value
    assert float(alone[dt.date(2026, 3, 3)]["qty_avg_3d"]) == 1
    assert sums[dt.date(2026, 3, 5)] == 4
    assert sums[dt.date(2026, 3, 6)] == math.inf
    assert math.isnan(sums[dt.date(2026, 3, 7)])  # +inf and -inf
    assert sums[dt.date(2026, 3, 9)] == -math.inf
    assert sums[dt.date(2026, 3, 12)] == 2  # Mar 10 to 12: only the 2
    assert alone[dt.date(2026, 3, 5)]["last_nps"] == "9.0"  # later by half a second
    assert alone[dt.date(2026, 3, 6)]["last_nps_4d"] == "nan"  # Mar 2 has left the window
    assert alone[dt.date(2026, 3, 9)]["last_nps_4d"] == "3.0"


def test_series_rows_of_a_day_across_gaps_and_outside_its_days() -> None:
    days = np.array([-3, -3, 0, 2, 2, 2, 5], np.int32)
    series = Series(accounts=np.arange(len(days), dtype=np.int32), days=days)
    rows = {day: series.accounts[series.on(day)].tolist() for day in range(-5, 8)}
    assert rows == {
        -5: [], -4: [], -3: [0, 1], -2: [], -1: [], 0: [2], 1: [],
        2: [3, 4, 5], 3: [], 4: [], 5: [6], 6: [], 7: [],
    }  # fmt: skip
    empty = Series(np.zeros(0, np.int32), np.zeros(0, np.int32))
    assert empty.accounts[empty.on(0)].size == 0


# Small integers (a 16-bit radix sort), large ones, fractions and NaN (merge sorts).
@pytest.mark.parametrize(
    "values",
    [[3, -2, 3, 0, -2, 7], [40000, -5, 40000, 2], [0.5, 0.2, 0.5, -1.5], [2.0, math.nan, 1.0]],
)
def test_stable_order_keeps_equal_values_in_their_order(values: list) -> None:
    order = stable_order(np.array(values * 3))
    # Python's sort is stable; NaN last, as NumPy puts it.
    key = [(math.isnan(v), 0 if math.isnan(v) else v) for v in values * 3]
    assert order.tolist() == sorted(range(len(key)), key=key.__getitem__)
