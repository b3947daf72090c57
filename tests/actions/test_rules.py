"""Triggers, stability (hysteresis, minimum days), cool-down and de-duplication of playbook
rules, on score sequences written by hand."""

from __future__ import annotations

import datetime as dt
import typing as t

import pandas as pd
import pytest

import accounthealth as ah
from accounthealth.actions.rules import RuleBook
from accounthealth.config.playbooks import Playbooks
from accounthealth.errors import ConfigError

from builders import TRAJECTORY_START, trajectory_project

STABLE = {"hysteresis": 3, "min_days": 2, "cooldown": "7d"}
OFF = {"hysteresis": 0, "min_days": 1, "cooldown": "1d"}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> t.Any:
    folder = trajectory_project(tmp_path_factory.mktemp("rules"), {"A1": [50]})
    with ah.open(folder) as project:
        project.ingest()
        return project.model


def tier(score: float) -> str:
    return "Green" if score >= 70 else "Yellow" if score >= 40 else "Red"


def drive(
    model: t.Any,
    rules: dict,
    series: dict[str, list[float | None]],
    stability: dict = STABLE,
    renewal_in: dict[str, int] | None = None,
    resolved_since: t.Any = None,
) -> list[tuple[int, str, str]]:
    """Step a rule book through the score series; returns (day index, rule, account) of every
    firing."""
    book = RuleBook(model, Playbooks.model_validate({"stability": stability, "rules": rules}))
    days = max(len(s) for s in series.values())
    history: list[dict] = []
    fired = []
    for i in range(days):
        day = TRAJECTORY_START + dt.timedelta(days=i)
        rows = [
            {"account_id": a, "as_of": day, "name": f"Co {a}", "segment": "smb",
             "segment_model": "default", "owner": "Ana", "manager": "Max", "score": s[i],
             "tier": None if s[i] is None else tier(s[i]), "arr": 1000.0, "use_today": s[i],
             "days_to_renewal": (renewal_in or {}).get(a, 400) - i}
            for a, s in series.items()
            if i < len(s)
        ]  # fmt: skip
        today = pd.DataFrame(rows)
        earlier = pd.DataFrame(history or {"account_id": [], "as_of": [], "score": []})
        outcome = book.step(day, today, earlier, resolved_since=resolved_since)
        fired += [(i, f.rule, f.account_id) for f in outcome.firings]
        history += [
            {"account_id": r["account_id"], "as_of": day, "score": r["score"]} for r in rows
        ]
    return fired


ENTERED_RED = {"red": {"when": {"entered": "Red"}, "task": {"title": "{name} is Red"}}}


def test_entered_fires_once_per_entry_and_stays_fired(model: t.Any) -> None:
    # Red on day 2 and 3, stays Red, back to Yellow (day 6+), Red again 10 days later.
    scores = [50, 50, 30, 30, 30, 30, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 30, 30]
    fired = drive(model, ENTERED_RED, {"A": scores})
    # Two days in a row make it count: the change is seen on day 3 (index 3).
    assert fired == [(3, "red", "A"), (17, "red", "A")]


def test_hysteresis_holds_a_score_wobbling_around_a_bound(model: t.Any) -> None:
    wobble = [75, 68, 71, 68, 72, 68, 68, 68]  # never 3 points past the bound of 70
    rules = {"yellow": {"when": {"entered": "Yellow", "from": "Green"}, "task": {"title": "x"}}}
    assert drive(model, rules, {"A": wobble}) == []
    # Without stability each crossing counts (cool-down of 1 day lets every one fire).
    assert [i for i, *_ in drive(model, rules, {"A": wobble}, OFF)] == [1, 3, 5]
    # Far enough below the bound, two days in a row: it counts.
    assert drive(model, rules, {"A": [75, 66, 65]}) == [(2, "yellow", "A")]


def test_a_one_day_dip_does_not_count(model: t.Any) -> None:
    assert drive(model, ENTERED_RED, {"A": [50, 20, 50, 50, 20, 50]}) == []
    assert [i for i, *_ in drive(model, ENTERED_RED, {"A": [50, 20, 50, 50, 20, 50]}, OFF)] == [
        1,
        4,
    ]


def test_no_score_leaves_the_tier_alone(model: t.Any) -> None:
    assert drive(model, ENTERED_RED, {"A": [50, None, None, 50]}) == []


def test_cooldown_holds_a_second_firing(model: t.Any) -> None:
    # Red, Yellow, Red again within the 7-day cool-down: one firing; later, a second.
    scores = [50, 30, 30, 50, 50, 30, 30, 50, 50, 50, 50, 50, 50, 30, 30]
    assert [i for i, *_ in drive(model, ENTERED_RED, {"A": scores})] == [2, 14]
    no_cooldown = {**STABLE, "cooldown": "1d"}
    assert [i for i, *_ in drive(model, ENTERED_RED, {"A": scores}, no_cooldown)] == [2, 6, 14]


def test_left_and_from_filters(model: t.Any) -> None:
    rules = {
        "recovered": {"when": {"left": "Red", "to": "Yellow"}, "notify": {"via": "email"}},
        "from_green": {"when": {"entered": "Red", "from": "Green"}, "task": {"title": "x"}},
    }
    fired = drive(model, rules, {"A": [50, 30, 30, 50, 50], "B": [80, 30, 30, 80, 80]})
    assert fired == [(2, "from_green", "B"), (4, "recovered", "A")]


def test_dropped_and_rose_compare_with_the_window(model: t.Any) -> None:
    rules = {
        "drop": {"when": {"dropped": {"points": 15, "within": "3d"}}, "task": {"title": "{drop}"}},
        "rise": {"when": {"rose": {"points": 20, "within": "1d"}}, "task": {"title": "{rise}"}},
    }
    # 80 -> 70 -> 64: 16 below the best of the last 3 days on day 2; back up +21 on day 4.
    fired = drive(model, rules, {"A": [80, 70, 64, 60, 81, 81]})
    assert fired == [(2, "drop", "A"), (4, "rise", "A")]


def test_time_in_tier_waits_for_a_resolved_task(model: t.Any) -> None:
    rules = {"stuck": {"when": {"in_tier": {"tier": "Red", "days": "5d"}}, "escalate":
                       {"to": "vp", "via": "email"}}}  # fmt: skip
    red = [30] * 12
    # Red from day 0 (first seen), 5 days in on day 5.
    assert drive(model, rules, {"A": red}) == [(5, "stuck", "A")]

    # A task resolved since the account turned Red holds it back.
    def resolved(since: pd.Series) -> pd.Series:
        return pd.Series(True, index=since.index)

    assert drive(model, rules, {"A": red}, resolved_since=resolved) == []


def test_condition_and_if_read_renewal_and_metrics(model: t.Any) -> None:
    rules = {
        "expand": {
            "when": {"condition": "tier = 'Green' and days_to_renewal <= 60"},
            "task": {"title": "renews {renewal_date}"},
            "key": "{rule}:{account_id}:{renewal_date}",
        },
        "low_use": {
            "when": {"entered": "Red"},
            "if": "use_today < 10",
            "task": {"title": "x"},
        },
    }
    scores = {"A": [90] * 10, "B": [90] * 10, "C": [50, 5, 5], "D": [50, 30, 30]}
    fired = drive(model, rules, scores, renewal_in={"A": 62, "B": 200})
    # A renews in 62 days on day 0, 60 on day 2; C's use is below 10, D's is not.
    assert (2, "expand", "A") in fired and not [f for f in fired if f[2] == "B"]
    assert (2, "low_use", "C") in fired and not [f for f in fired if f[2] == "D"]


def test_a_key_fires_once_even_after_the_condition_clears(model: t.Any) -> None:
    rules = {
        "expand": {
            "when": {"condition": "tier = 'Green' and days_to_renewal <= 60"},
            "task": {"title": "x"},
            "key": "{rule}:{account_id}:{renewal_date}",
        }
    }
    # Green, then Yellow for a while (clears), Green again before the same renewal.
    scores = [90, 90, 50, 50, 50, 50, 50, 50, 50, 50, 90, 90, 90]
    assert drive(model, rules, {"A": scores}, renewal_in={"A": 30}) == [(0, "expand", "A")]


def test_bad_rules_are_refused_with_their_place(model: t.Any) -> None:
    with pytest.raises(ConfigError, match=r"(?s)tier 'Redd'.*did you mean 'Red'"):
        drive(model, {"r": {"when": {"entered": "Redd"}, "task": {"title": "x"}}}, {"A": [1]})
    with pytest.raises(ConfigError, match="unknown column 'days_to_renew'"):
        drive(model, {"r": {"when": {"condition": "days_to_renew < 3"}, "task": {"title": "x"}}},
              {"A": [1]})  # fmt: skip
    with pytest.raises(ConfigError, match=r"(?s)unknown field 'nmae'.*did you mean 'name'"):
        drive(model, {"r": {"when": {"entered": "Red"}, "task": {"title": "{nmae}"}}}, {"A": [1]})
    with pytest.raises(ValueError, match="exactly one of"):
        Playbooks.model_validate({"rules": {"r": {"when": {"entered": "Red", "left": "Green"},
                                                   "task": {"title": "x"}}}})  # fmt: skip
    later = {"to": "vp", "after": "3d", "via": "e"}
    with pytest.raises(ValueError, match="needs a task to wait on"):
        Playbooks.model_validate({"rules": {"r": {"when": {"entered": "Red"}, "escalate": later}}})
