"""Overrides: a written reason, expiry, removal, worsen-only, component overrides, the computed
score kept beside the override, the audit trail and the review against outcomes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

import accounthealth as ah
from accounthealth.actions import overrides
from conftest import day

from builders import TRAJECTORY_MODEL, trajectory_project

# C's contract ends churned on day 9.
SCORES = {"A": [80] * 15, "B": [85] * 15, "C": [60] * 9}
TWO_PARTS = (
    TRAJECTORY_MODEL
    + """
  care:
    weight: 25
    metrics:
      seats: {attribute: licensed_seats, score: {linear: {bad: 0, good: 20}}}
"""
)


def scored(p: ah.Project, account: str) -> list[tuple]:
    rows = p.scores(day(0), day(14))
    rows = rows[rows["account_id"] == account]
    return [
        (r.as_of.date(), round(r.score, 2), r.tier, _none(r.computed_score), _none(r.override_id))
        for r in rows.itertuples()
    ]


def _none(value: object) -> object:
    return None if pd.isna(value) else value


@pytest.fixture
def project(tmp_path: Path) -> ah.Project:
    folder = trajectory_project(tmp_path / "o", SCORES, renewals={"C": str(day(9))})
    contracts = (folder / "data" / "contracts.csv").read_text()
    (folder / "data" / "contracts.csv").write_text(
        contracts.replace(f"{day(9)},12000,,active", f"{day(9)},12000,,churned")
    )
    with ah.open(folder) as p:
        p.ingest()
        p.score(start=day(0), end=day(14))
        yield p


def test_an_override_applies_between_its_dates_beside_the_computed_score(
    project: ah.Project,
) -> None:
    with pytest.raises(ah.AccountHealthError, match="written reason"):
        project.override("A", by="Ana", reason=" ", score=30)
    with pytest.raises(ah.AccountHealthError, match="did you mean 'Red'"):
        project.override("A", by="Ana", reason="x", tier="Redd")
    oid = project.override("A", by="Ana", reason="Champion left", score=30, starts=day(2),
                           expires=day(5))  # fmt: skip
    project.score(start=day(0), end=day(14))
    got = scored(project, "A")
    assert got[1] == (day(1), 80.0, "Green", None, None)
    assert got[2] == (day(2), 30.0, "Red", 80.0, oid)
    assert got[4] == (day(4), 30.0, "Red", 80.0, oid)
    assert got[5] == (day(5), 80.0, "Green", None, None)  # expired: the day it ends is free
    explained = project.explain("A", day(3)).override
    assert (explained["reason"], explained["computed_score"]) == ("Champion left", 80.0)
    assert project.explain("A", day(5)).override is None
    # The default expiry comes from the model (30 days).
    later = project.override("B", by="Ana", reason="Budget cut announced", tier="Yellow",
                             starts=day(3))  # fmt: skip
    row = project.overrides(account_id="B").iloc[0]
    assert row["expires_on"].date() == day(33)
    project.score(day(4))
    assert scored(project, "B")[4] == (day(4), 85.0, "Yellow", 85.0, later)
    project.remove_override(later, by="Lee", reason="Budget confirmed after all")
    today = dt.date.today()
    assert overrides.in_force(project.store, today, today).empty
    with pytest.raises(ah.AccountHealthError, match="removed already"):
        project.remove_override(later, by="Lee", reason="again")
    actions = list(project.audit(action="override.")["action"])
    assert actions == ["override.removed", "override.set", "override.set"]
    entry = project.audit(action="override.set").iloc[-1]
    assert (
        '"computed_score": 80.0' in entry["details"]
        and '"reason": "Champion left"' in entry["details"]
    )


def test_worsen_only_refuses_better_and_never_lifts_a_score(tmp_path: Path) -> None:
    model = TRAJECTORY_MODEL + "overrides: {worsen_only: true, expiry: 10d}\n"
    folder = trajectory_project(tmp_path / "w", {"A": [80] * 5 + [20] * 5}, model)
    with ah.open(folder) as p:
        p.ingest()
        p.score(start=day(0), end=day(3))
        with pytest.raises(ah.AccountHealthError, match="not below the computed score 80"):
            p.override("A", by="Ana", reason="Great QBR", score=90, starts=day(0))
        with pytest.raises(ah.AccountHealthError, match="Green is not worse"):
            p.override("A", by="Ana", reason="Great QBR", tier="Green", starts=day(0))
        oid = p.override("A", by="Ana", reason="Exec sponsor gone", score=50, starts=day(0))
        p.score(start=day(0), end=day(9))
        got = scored(p, "A")
        assert got[0] == (day(0), 50.0, "Yellow", 80.0, oid)
        # The computed score fell below the override: the override does not lift it.
        assert got[6] == (day(6), 20.0, "Red", 20.0, oid)


def test_a_component_override_recomputes_the_score(tmp_path: Path) -> None:
    folder = trajectory_project(tmp_path / "c", {"A": [40] * 3}, TWO_PARTS)
    with ah.open(folder) as p:
        p.ingest()
        p.score(start=day(0), end=day(2))
        assert scored(p, "A")[0][1] == pytest.approx((100 * 40 + 25 * 50) / 125)
        with pytest.raises(ah.AccountHealthError, match="did you mean 'care'"):
            p.override("A", by="Ana", reason="x", component="cares", score=0)
        oid = p.override("A", by="Ana", reason="Sponsor unhappy", component="care", score=0,
                         starts=day(1))  # fmt: skip
        p.score(start=day(0), end=day(2))
        got = scored(p, "A")
        expected = (pytest.approx(100 * 40 / 125), "Red", pytest.approx(42.0), oid)
        assert got[1][1:] == expected


def test_the_review_says_who_was_right(project: ah.Project) -> None:
    # Ana lowered C, which churned on day 9; Lee lowered B, which stayed.
    project.override("C", by="Ana", reason="No usage growth", score=30, starts=day(1))
    project.override("B", by="Lee", reason="Reorg", score=50, starts=day(1))
    project.score(start=day(0), end=day(14))
    rows, authors = project.override_review(horizon=10)
    right = dict(zip(rows["account_id"], rows["right"], strict=True))
    assert right == {"C": "override", "B": "computed"}
    ana = authors.set_index("author").loc["Ana"]
    assert (ana["active"], ana["judged"], ana["override_right"]) == (0, 1, 1)
    assert ana["mean_points"] == pytest.approx(-30.0)
    # With a horizon longer than the data, staying is not known yet: B is not judged.
    rows, _ = project.override_review(horizon=90)
    assert dict(zip(rows["account_id"], rows["right"], strict=True)) == {
        "C": "override",
        "B": None,
    }
