"""A churn probability beside every score: computed from the model's calibrated mapping,
stored with the score, shown by accounts and explain; a mapping that rewards risk is refused."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import accounthealth as ah
from accounthealth.cli.app import app
from accounthealth.errors import ConfigError

from builders import churn_book


def with_probability(folder: Path, slope: float) -> None:
    model = yaml.safe_load((folder / "model.yaml").read_text())
    model["churn_probability"] = {"horizon": "90d", "intercept": 0.0, "slope": slope}
    (folder / "model.yaml").write_text(yaml.safe_dump(model, sort_keys=False))


def test_each_score_is_stored_with_its_probability_and_shown(tmp_path: Path) -> None:
    folder = churn_book(tmp_path / "p")
    with_probability(folder, -0.1)
    day = dt.date(2026, 3, 1)
    with ah.open(folder) as p:
        p.ingest()
        p.score(day)
        scores = p.scores(day, day).set_index("account_id")
    # Churners score 0: logistic(0) = 0.5; retainers score 100: logistic(-10).
    assert scores.loc["C1", "score"] == 0 and scores.loc["C1", "churn_probability"] == 0.5
    assert scores.loc["R1", "churn_probability"] == pytest.approx(1 / (1 + math.exp(10)))
    runner = CliRunner()
    listed = runner.invoke(app, ["accounts", "-p", str(folder), "--as-of", str(day)])
    assert listed.exit_code == 0 and "Churn" in listed.output and "50%" in listed.output
    explained = runner.invoke(app, ["explain", "C1", "-p", str(folder), "--as-of", str(day)])
    assert "Churn probability: 50%; biggest risk factors: usage (-100 points)" in (explained.output)


def test_without_a_mapping_there_is_no_probability_column_to_show(tmp_path: Path) -> None:
    folder = churn_book(tmp_path / "p")
    with ah.open(folder) as p:
        p.ingest()
        p.score(dt.date(2026, 3, 1))
        assert p.scores()["churn_probability"].isna().all()
    out = CliRunner().invoke(app, ["accounts", "-p", str(folder)])
    assert out.exit_code == 0 and "Churn" not in out.output


def test_a_mapping_where_higher_scores_churn_more_is_refused(tmp_path: Path) -> None:
    folder = churn_book(tmp_path / "p")
    with_probability(folder, 0.2)
    with pytest.raises(ConfigError) as err:
        ah.open(folder)
    assert "churn_probability.slope" in err.value.message and "model.yaml" in err.value.message
