"""Model changes: plan shows every changed setting and both backtests; apply makes the
proposed file live, records who and when with both definitions, and history keeps versions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import accounthealth as ah
from accounthealth.cli.app import app
from accounthealth.errors import AccountHealthError

from builders import churn_book

D = dt.date.fromisoformat
OPTIONS = {"start": D("2026-01-05"), "end": D("2026-03-30"), "every": 7, "reps": 10}


def propose(folder: Path, good: int = 20) -> Path:
    model = yaml.safe_load((folder / "model.yaml").read_text())
    model["components"]["usage"]["metrics"]["events_30d"]["score"]["linear"]["good"] = good
    model["tiers"] = {"green": 80, "yellow": 40}
    path = folder / "model.proposed.yaml"
    path.write_text("# Proposed by hand\n" + yaml.safe_dump(model, sort_keys=False))
    return path


@pytest.fixture
def book(tmp_path: Path) -> Path:
    folder = churn_book(tmp_path / "p")
    with ah.open(folder) as p:
        p.ingest()
    return folder


def test_plan_lists_every_changed_setting_and_backtests_both(book: Path) -> None:
    propose(book)
    with ah.open(book) as p:
        result = p.plan(**OPTIONS)
    changes = {c["setting"]: (c["live"], c["proposed"]) for c in result["changes"]}
    assert changes["components.usage.metrics.events_30d.score.linear.good"] == (10.0, 20.0)
    assert changes["tiers.Green.min"] == (70.0, 80.0)
    assert not any(k.startswith("tiers.Yellow") for k in changes)
    live, proposed = result["backtest"]["live"], result["backtest"]["proposed"]
    assert live["model_version"] == result["live_version"] != result["proposed_version"]
    assert live["dates"] == proposed["dates"]  # the same observation dates for both
    assert proposed["segments"]["all"]["ranking"]["auc"]["value"] == 1.0


def test_apply_makes_it_live_records_who_and_keeps_history_versions(book: Path) -> None:
    proposed = propose(book)
    with ah.open(book) as p:
        old = p.model.version
        p.score(D("2026-03-01"))
        result = p.apply(by="Rita Ops", note="calibrated on Q1")
        assert p.model.version == result["to_version"] != old
        p.score(D("2026-03-02"))
        changes = p.model_changes()
        applied = p.audit(action="model.applied")
        versions = sorted(p.store.execute(p.store.table("scores"))["model_version"].unique())
    assert not proposed.exists()
    text = (book / "model.yaml").read_text()
    assert text.startswith("# Applied ") and "by Rita Ops" in text and "Proposed by" not in text
    assert len(changes) == 1
    row = changes.iloc[0]
    assert (row["changed_by"], row["from_version"], row["to_version"], row["note"]) == (
        "Rita Ops",
        old,
        result["to_version"],
        "calibrated on Q1",
    )
    assert '"good": 10.0' in row["previous_definition"] and '"good": 20.0' in row["new_definition"]
    assert list(zip(applied["actor"], applied["subject"], strict=True)) == [
        ("Rita Ops", result["to_version"])
    ]
    assert versions == sorted([old, result["to_version"]])  # each score keeps its version
    with ah.open(book) as p:  # a fresh process sees the applied model
        assert p.model.version == result["to_version"]


def test_apply_refuses_what_it_cannot_do_and_changes_nothing(book: Path) -> None:
    live = (book / "model.yaml").read_text()
    with ah.open(book) as p:
        with pytest.raises(AccountHealthError, match="no proposed model"):
            p.apply(by="Rita")
        propose(book)
        with pytest.raises(AccountHealthError, match="apply needs a name"):
            p.apply(by=" ")
        (book / "model.proposed.yaml").write_text(live)
        with pytest.raises(AccountHealthError, match="is the live model already"):
            p.apply(by="Rita")
        assert p.model_changes().empty
    assert (book / "model.yaml").read_text() == live


def test_the_cli_plans_and_applies(book: Path) -> None:
    propose(book)
    runner = CliRunner()
    planned = runner.invoke(
        app,
        ["plan", "-p", str(book), "--from", "2026-01-05", "--to", "2026-03-30", "--every", "7d",
         "--bootstrap", "0"],
    )  # fmt: skip
    assert planned.exit_code == 0, planned.output
    assert "events_30d.score.linear.good" in planned.output and "AUC proposed" in planned.output
    applied = runner.invoke(app, ["apply", "-p", str(book), "--by", "Rita"])
    assert applied.exit_code == 0, applied.output
    assert "Applied model" in applied.output


def test_changes_in_the_account_list_compare_scores_of_one_model_only(book: Path) -> None:
    propose(book)
    day, week_before = D("2026-03-09"), D("2026-03-02")
    with ah.open(book) as p:
        p.score(start=week_before, end=day)
        p.apply(by="Rita")
        p.score(day)
        # The week before was scored by the old model only: no change to show yet.
        assert p.accounts(day)["change_7d"].isna().all()
        # explain says so in words instead of showing the difference as a change.
        assert "The health model changed" in p.explain("R1", day).changes[0].sentence
        p.score(start=week_before, end=day)
        assert p.accounts(day)["change_7d"].notna().all()
