"""Explanations: contributions add up to the score, and change drivers name what moved."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import accounthealth as ah
from accounthealth.explain.drivers import format_value

from builders import account, make_project

MODEL = """
components:
  usage:
    weight: 60
    label: Product usage
    metrics:
      logins:
        label: logins in 7 days
        count: events
        window: 7d
        score: {linear: {bad: 0, good: 10}}
  support:
    weight: 40
    metrics:
      open_p1:
        label: open P1 tickets
        count: tickets
        where: "priority = 'P1'"
        active: true
        score: {bands: {0: 100, 1: 40, 2: 0}}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> ah.Project:
    # A1 logs in 10 times a week until March 5th, then twice; two P1 tickets open on March 20.
    events = [
        {"event_id": f"e{i}", "account_id": "A1", "event_time": f"{day} 10:00:00"}
        for i, day in enumerate(
            [f"2026-03-0{d}" for d in range(1, 6) for _ in range(2)] + ["2026-03-20", "2026-03-21"]
        )
    ]
    tickets = [
        {
            "ticket_id": f"T{i}",
            "account_id": "A1",
            "opened_at": "2026-03-20 08:00",
            "priority": "P1",
        }
        for i in range(2)
    ]
    folder = make_project(
        tmp_path_factory.mktemp("explain"),
        MODEL,
        {"accounts": [account("A1")], "events": events, "tickets": tickets},
    )
    with ah.open(folder) as p:
        p.ingest()
        p.score(start=dt.date(2026, 3, 1), end=dt.date(2026, 4, 6))
        yield p


def test_contributions_add_up_to_the_score(project: ah.Project) -> None:
    e = project.explain("A1", dt.date(2026, 3, 7))
    # logins in (Feb 28, Mar 7] = 10 -> usage 100; no P1 -> support 100.
    assert e.score == pytest.approx(100)
    total = sum(c.contribution for c in e.components)
    assert total == pytest.approx(e.base_score)
    for c in e.components:
        assert sum(m.contribution for m in c.metrics) == pytest.approx(c.contribution)


def test_change_sentence_names_components_and_raw_values(project: ah.Project) -> None:
    e = project.explain("A1", dt.date(2026, 4, 6))
    # Apr 6: logins in (Mar 30, Apr 6] = 0 -> usage 0; 2 open P1 -> support 0; score 0.
    assert e.score == pytest.approx(0)
    previous, month = e.changes
    assert previous.since == dt.date(2026, 4, 5)
    assert "held steady" in previous.sentence
    # 30 days earlier (Mar 7): 100 -> 0, usage -60 and support -40.
    assert month.since == dt.date(2026, 3, 7)
    assert month.sentence.startswith("Score fell 100 points since 2026-03-07 (100 → 0)")
    assert "Product usage -60 (logins in 7 days 10 → 0)" in month.sentence
    assert "support -40 (open P1 tickets 0 → 2)" in month.sentence
    assert month.by_component == pytest.approx({"usage": -60, "support": -40})


def test_freshness_shows_latest_data_per_source(project: ah.Project) -> None:
    e = project.explain("A1", dt.date(2026, 3, 10))
    assert e.freshness["events"] == dt.date(2026, 3, 5)
    assert e.freshness["tickets"] is None


def test_unknown_account_is_a_clear_error(project: ah.Project) -> None:
    with pytest.raises(ah.NotFoundError, match="'A9' is not a known account"):
        project.explain("A9")
    with pytest.raises(ah.NotFoundError, match="has no score on or before 2025-01-01"):
        project.explain("A1", dt.date(2025, 1, 1))


@pytest.mark.parametrize(
    ("value", "fmt", "text"),
    [
        (0.25, "percent", "+25%"),
        (12.0, "days", "12 days"),
        (1.0, "yes_no", "yes"),
        (3.0, "number", "3"),
        (0.456, "number", "0.46"),
        (None, "number", "no data"),
    ],
)
def test_values_are_printed_for_people(value: float | None, fmt: str, text: str) -> None:
    assert format_value(value, fmt) == text


def test_history_keeps_the_model_version_that_scored_it(tmp_path: Path) -> None:
    events = [{"event_id": "e1", "account_id": "A1", "event_time": "2026-03-01 10:00:00"}]
    tables = {"accounts": [account("A1")], "events": events, "tickets": []}
    folder = make_project(tmp_path, MODEL, tables)
    with ah.open(folder) as p:
        p.ingest()
        p.score(dt.date(2026, 3, 1))
        old = p.model.version
    changed = MODEL.replace("weight: 60", "weight: 30").replace("logins in 7 days", "weekly logins")
    (folder / "model.yaml").write_text(changed)
    with ah.open(folder) as p:
        assert p.model.version != old
        p.score(dt.date(2026, 3, 2))
        before = p.explain("A1", dt.date(2026, 3, 1))
        after = p.explain("A1", dt.date(2026, 3, 2))
    assert before.model_version == old
    assert [m.label for m in before.components[0].metrics] == ["logins in 7 days"]
    assert [m.label for m in after.components[0].metrics] == ["weekly logins"]
    assert "The health model changed between these dates" in after.changes[0].sentence


def test_labels_and_descriptions_do_not_change_the_model_version(tmp_path: Path) -> None:
    folder = make_project(tmp_path, MODEL, {"accounts": [account("A1")]})
    with ah.open(folder) as p:
        version = p.model.version
    (folder / "model.yaml").write_text(MODEL.replace("Product usage", "Usage (product)"))
    with ah.open(folder) as p:
        assert p.model.version == version
