"""The intervention-effectiveness report: score and tier moves after tasks, against accounts in
the same tier on the same days without a task, and the wait for a first action."""

from __future__ import annotations

from pathlib import Path

import pytest

import accounthealth as ah
from conftest import PLAYBOOKS, day

from builders import TRAJECTORY_MODEL, trajectory_project


def test_moves_after_tasks_against_the_baseline(tmp_path: Path) -> None:
    scores = {
        "A": [80] * 5 + [20] * 10 + [80] * 90,  # Red on day 5 (a task), Green again on day 15
        "D": [20] * 105,  # Red throughout: no entry, no task (the baseline)
        "E": [90] * 5 + [25] * 100,  # Red on day 5 (a task), stays Red
    }
    folder = trajectory_project(tmp_path / "e", scores, TRAJECTORY_MODEL + PLAYBOOKS)
    with ah.open(folder) as p:
        p.run(day(104), start=day(0))
        task = p.tasks(account_id="A").iloc[0]
        p.update_task(task["task_id"], "resolve", by="Ana", note="Onboarding redone")
        report = p.effectiveness().set_index("rule")
    red = report.loc["red"]
    assert (red["kind"], red["tasks"], red["resolved"], red["waiting"]) == ("red", 2, 0.5, 1)
    assert red["median_days_to_first_action"] == pytest.approx(0, abs=0.01)
    # A: 20 -> 80, E: 25 -> 25; D, Red on day 5 without a task, stayed at 20.
    assert red["score_change_30d"] == pytest.approx(30.0)
    assert red["baseline_change_30d"] == pytest.approx(0.0)
    assert red["tier_improved_90d"] == pytest.approx(0.5)
    assert red["n_90d"] == 2
