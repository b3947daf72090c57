"""Config errors name the file, line and YAML path, say what is wrong and how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest

import accounthealth as ah
from accounthealth.config.model import HealthModel

from builders import account, make_project

BASE = """components:
  usage:
    weight: 35
    metrics:
      logins:
        METRIC
"""


def error_for(tmp_path: Path, metric: str, model: str = BASE) -> str:
    folder = make_project(tmp_path, model.replace("METRIC", metric), {"accounts": [account("A1")]})
    with pytest.raises(ah.ConfigError) as info, ah.open(folder) as p:
        p.model  # noqa: B018  (resolving the model is what raises)
    return info.value.message


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        (
            "{count: events, wher: x, score: boolean}",
            [
                "model.yaml:6 at components.usage.metrics.logins.wher",
                "unknown key 'wher'",
                "did you mean 'where'?",
            ],
        ),
        (
            "{count: events, window: 28x, score: boolean}",
            ["model.yaml:6", "a window must be like '28d'"],
        ),
        (
            "{count: events, sum: events.quantity, score: boolean}",
            ["give exactly one metric kind", "got 2: count, sum"],
        ),
        ("{count: events, score: {linear: {bad: 1}}}", ["'good' is required here"]),
        ("{count: events}", ["needs a 'score:' function"]),
        ("{count: tickts, score: boolean}", ["unknown table 'tickts'", "did you mean 'tickets'?"]),
        (
            "{avg: tickets.csta, score: boolean}",
            ["table 'tickets' has no column 'csta'", "did you mean 'csat'?"],
        ),
        (
            "{ratio: [active_usrs, licensed_seats], score: boolean}",
            [
                "at components.usage.metrics.logins.ratio.0",
                "unknown metric, signal or account attribute 'active_usrs'",
            ],
        ),
        (
            "{count: tickets, where: \"priorty = 'P1'\", score: boolean}",
            ["names unknown column 'priorty'", "did you mean 'priority'?"],
        ),
        (
            '{count: tickets, where: "csat + 1 > 2", score: boolean}',
            ["which filters do not support"],
        ),
        ("{change: {count: events}, score: boolean}", ["its metric has no window"]),
        ("{count: activities, active: true, score: boolean}", ["'active' needs an end column"]),
        (
            "{exists: tickets, score: {linear: {bad: 0, good: 1}}}",
            ["score it with 'score: boolean'"],
        ),
        ("{ratio: [logins, licensed_seats], score: boolean}", ["refers to itself"]),
    ],
)
def test_model_errors(tmp_path: Path, metric: str, expected: list[str]) -> None:
    message = error_for(tmp_path, metric)
    assert "model.yaml" in message
    for text in expected:
        assert text in message


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    message = error_for(tmp_path, "{count: events, score: boolean", BASE)
    assert "model.yaml:" in message and "not valid YAML" in message


def test_segment_errors(tmp_path: Path) -> None:
    seg = BASE + "segments:\n  big:\n    when: \"segmnt = 'x'\"\n"
    message = error_for(tmp_path, "{count: events, score: boolean}", seg)
    assert "model.yaml:" in message and "did you mean 'segment'?" in message
    seg = BASE + "segments:\n  big:\n    when: \"segment = 'x'\"\n    weights: {usge: 3}\n"
    message = error_for(tmp_path / "w", "{count: events, score: boolean}", seg)
    assert "unknown component 'usge'" in message and "did you mean 'usage'?" in message
    seg = BASE + "segments:\n  big:\n    when: \"segment = 'x'\"\n    weights: {usage: 0}\n"
    message = error_for(tmp_path / "z", "{count: events, score: boolean}", seg)
    assert "model.yaml:" in message and "segments.big.weights.usage" in message
    assert "greater than 0" in message
    # 'default' names the model of the accounts no segment matches: a segment by that name
    # would take them over.
    seg = BASE + "segments:\n  default:\n    when: \"segment = 'x'\"\n"
    message = error_for(tmp_path / "d", "{count: events, score: boolean}", seg)
    assert "model.yaml:" in message and "segments.default" in message
    assert "cannot be named 'default'" in message and "rename it" in message


def test_project_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ah.ConfigError, match=r"no accounthealth\.yaml"):
        ah.open(tmp_path)
    folder = make_project(
        tmp_path / "p",
        BASE.replace("METRIC", "{count: events, score: boolean}"),
        {"accounts": [account("A1")]},
    )
    (folder / "accounthealth.yaml").write_text(
        "model: model.yaml\nsources:\n  acounts: {file: data/accounts.csv}\n"
    )
    with pytest.raises(ah.ConfigError) as info:
        ah.open(folder)
    assert "accounthealth.yaml:3" in info.value.message
    assert "did you mean 'accounts'?" in info.value.message


def test_tier_forms() -> None:
    model = HealthModel.model_validate(
        {
            "tiers": {"green": 70, "yellow": 40},
            "components": {
                "c": {"weight": 1, "metrics": {"m": {"count": "events", "score": "boolean"}}}
            },
        }
    )
    assert [(t.name, t.min) for t in model.tiers] == [("Green", 70), ("Yellow", 40), ("Red", 0)]
    with pytest.raises(ValueError, match=r"lowest tier must start at 0"):
        HealthModel.model_validate(
            {
                "tiers": [{"name": "A", "min": 50}, {"name": "B", "min": 10}],
                "components": {
                    "c": {"weight": 1, "metrics": {"m": {"count": "events", "score": "boolean"}}}
                },
            }
        )
