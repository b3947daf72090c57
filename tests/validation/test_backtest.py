"""The backtest end to end on a hand-made book whose answer is known: churners never use the
product (Red), retainers use it daily (Green), every churn falls within the horizon."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

import accounthealth as ah
import accounthealth.cli.console as cli_console
from accounthealth.cli.app import app
from accounthealth.errors import AccountHealthError
from accounthealth.validation.backtest import BacktestOptions

from builders import CHURNERS, RETAINERS, churn_book

D = dt.date.fromisoformat
OPTIONS = {"start": D("2026-01-05"), "end": D("2026-03-30"), "every": 7, "reps": 50}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = churn_book(tmp_path_factory.mktemp("backtest") / "p")
    with ah.open(folder) as p:
        p.ingest()
    return folder


@pytest.fixture(scope="module")
def result(project: Path) -> ah.Backtest:
    with ah.open(project) as p:
        return p.backtest(**OPTIONS)


def test_a_score_that_separates_churners_perfectly_scores_perfectly(result: ah.Backtest) -> None:
    f = result.figures
    assert f["dates"] == {"first": D("2026-01-05"), "last": D("2026-03-30"), "count": 13}
    assert f["outcomes_source"] == "contracts"
    assert f["outcome_counts"] == {"churned": 4, "renewed": 6, "expanded": 0, "contracted": 0}
    everyone = f["segments"]["all"]
    assert everyone["counts"] == {
        "accounts": 10,
        "observations": 130,
        "known_observations": 130,
        "churned_observations": 52,
        "churned_accounts": 4,
    }
    ranking = everyone["ranking"]
    assert ranking["auc"]["value"] == 1.0
    # Per date, the bottom decile is one account (a churner): 100% churn against 40%.
    assert ranking["top_decile_lift"]["value"] == pytest.approx(2.5)
    # Harrell's C: every churner-retainer pair is concordant (52 x 78); the 1,248 pairs of
    # churner observations with different times to churn but the same score count one half.
    assert ranking["concordance"]["value"] == pytest.approx(
        (52 * 78 + 1248 / 2) / (52 * 78 + 1248), abs=1e-6
    )
    tiers = {r["tier"]: r for r in everyone["by_tier"]}
    assert tiers["Red"]["churn_rate"]["value"] == 1.0 and tiers["Red"]["observations"] == 52
    assert tiers["Green"]["churn_rate"]["value"] == 0.0 and tiers["Green"]["observations"] == 78
    bands = {b["band"]: b for b in everyone["calibration"]}
    assert bands["0-10"]["churn_rate"] == 1.0 and bands["90-100"]["churn_rate"] == 0.0


def test_figures_before_churn_and_the_lead_time(result: ah.Backtest) -> None:
    everyone = result.figures["segments"]["all"]
    before = everyone["before_outcome"]
    # 30 and 60 days before April 1 fall on the grid; 90 days before (Jan 1) is before it.
    assert before["churned_in_top_tier"]["30"]["value"] == 0.0
    assert before["churned_in_top_tier"]["60"]["n"] == 4
    assert before["churned_in_top_tier"]["90"]["n"] == 0
    assert before["mean_score"]["churned"]["30"]["value"] == 0.0
    assert before["mean_score"]["retained"]["30"]["value"] == 100.0
    lead = everyone["lead_time"]
    assert lead["share_warned"] == 1.0
    assert lead["median_days"] == (D("2026-04-01") - D("2026-01-05")).days


def test_each_segment_of_the_model_is_reported_and_a_thin_one_is_flagged(
    result: ah.Backtest, project: Path
) -> None:
    segments = result.figures["segments"]
    assert set(segments) == {"all", "default", "enterprise"}
    assert segments["enterprise"]["counts"]["accounts"] == 3
    assert segments["default"]["counts"]["churned_accounts"] == 3
    assert any("only 1 account(s) churned" in w for w in segments["enterprise"]["warnings"])
    with ah.open(project) as p:
        only = p.backtest(**OPTIONS, segment="enterprise")
    assert set(only.figures["segments"]) == {"all", "enterprise"}
    assert only.figures["segments"]["all"]["counts"]["accounts"] == 3


def test_recent_observations_are_censored_not_counted_as_retained(project: Path) -> None:
    with ah.open(project) as p:
        late = p.backtest(**{**OPTIONS, "end": D("2026-04-27")})
    obs = late.observations
    # After April 1 only the retainers are customers; their last 90 days pass the last data
    # (June 30) from April 2 on, so those observations are censored.
    after = obs[obs["as_of"] > D("2026-04-01")]
    assert set(after["account_id"]) == set(RETAINERS)
    assert not after["known"].any()
    assert late.figures["segments"]["all"]["counts"]["known_observations"] == 130


def test_later_data_changes_outcomes_but_no_score_of_the_past(tmp_path: Path) -> None:
    folder = churn_book(tmp_path / "p")
    with ah.open(folder) as p:
        p.ingest()
        before = p.backtest(**OPTIONS).observations
    # A burst of usage after the last observation date: it must not reach any observation.
    late = tuple(
        {"account_id": a, "user_id": "u9", "event_time": "2026-04-15 09:00:00", "event": "x"}
        for a in CHURNERS
    )
    with ah.open(churn_book(tmp_path / "q", late_events=late)) as p:
        p.ingest()
        after = p.backtest(**OPTIONS).observations
    cols = ["account_id", "as_of", "score", "tier", "churned", "known"]
    assert after[cols].equals(before[cols])


def test_an_outcomes_table_is_used_when_it_has_rows(tmp_path: Path) -> None:
    outcomes = [{"account_id": "R1", "date": "2026-02-15", "outcome": "churned"}]
    folder = churn_book(tmp_path / "p", tables={"outcomes": outcomes})
    with ah.open(folder) as p:
        p.ingest()
        got = p.backtest(**OPTIONS)
        from_contracts = p.backtest(**OPTIONS, outcomes="contracts")
    assert got.figures["outcomes_source"] == "table"
    assert got.figures["outcome_counts"]["churned"] == 1
    obs = got.observations
    # R1 churned on Feb 15 by the table: not observed after it, positive before it.
    r1 = obs[obs["account_id"] == "R1"]
    assert r1["as_of"].max() < D("2026-02-15") and r1["churned"].all()
    assert from_contracts.figures["outcome_counts"]["churned"] == 4


def test_bad_options_say_what_and_how_to_fix(project: Path) -> None:
    with ah.open(project) as p:
        for settings, message in (
            ({"every": 0}, "every must be at least one day"),
            ({"segment": "enterprize"}, "did you mean 'enterprise'"),
            ({"end": D("2026-09-01")}, r"after the last data \(2026-06-30\)"),
            ({"start": D("2026-05-01"), "end": D("2026-04-01")}, "is after --to"),
            ({"outcomes": "tabel"}, "did you mean 'table'"),
        ):
            with pytest.raises(AccountHealthError, match=message):
                p.backtest(**{**OPTIONS, **settings})
        with pytest.raises(AccountHealthError, match="no outcomes data"):
            p.backtest(BacktestOptions(outcomes="table"))


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)


def test_the_cli_prints_the_figures_and_writes_an_offline_report(
    project: Path, tmp_path: Path
) -> None:
    args = ["backtest", "-p", str(project), "--from", "2026-01-05", "--to", "2026-03-30",
            "--every", "1w", "--bootstrap", "20", "--report", str(tmp_path)]  # fmt: skip
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "AUC" in out.output and "1.00" in out.output and "13 dates" in out.output
    page = next(tmp_path.glob("backtest-*.html")).read_text()
    assert next(tmp_path.glob("backtest-*.json")).read_text().startswith("{")
    parser = _Tags()
    parser.feed(page)
    assert parser.tags.count("svg") == 5 and "script" not in parser.tags
    assert "http://" not in page and "https://" not in page  # nothing fetched when opened
    # The signal table: 6 of 10 accounts (retainers) share one 30-day count, churners another.
    assert "<td>events 30d</td><td>100%</td><td>2</td><td>60%</td><td>1.000</td>" in page
    signals = CliRunner().invoke(app, ["signals", *args[1:9]])
    assert signals.exit_code == 0, signals.output
    assert "AUC alone" in signals.output and "Scores: mean" in signals.output
    bad = CliRunner().invoke(app, [*args[:3], "--horizon", "soon"])
    assert bad.exit_code != 0 and "--horizon" in str(bad.exception or bad.output)


def test_the_figures_are_whole_on_an_80_column_terminal(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Figures with their intervals wrap onto more lines there rather than being cut short.
    monkeypatch.setattr(cli_console.console, "width", 80)
    args = ["backtest", "-p", str(project), "--from", "2026-01-05", "--to", "2026-03-30",
            "--every", "1w", "--bootstrap", "20"]  # fmt: skip
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    figures = out.output[out.output.index("How well") : out.output.index("Average score")]
    assert "…" not in figures and " to " in figures
    assert max(len(line) for line in figures.splitlines()) <= 80


def test_partial_churn_is_counted_apart_from_churn(tmp_path: Path) -> None:
    folder = churn_book(tmp_path / "p", renewal_arr={"R1": 600.0, "R2": 1500.0})
    with ah.open(folder) as p:
        p.ingest()
        got = p.backtest(**OPTIONS)
    counts = got.figures["outcome_counts"]
    assert (counts["contracted"], counts["expanded"], counts["renewed"]) == (1, 1, 4)
    obs = got.observations
    assert set(obs.loc[obs["contracted"], "account_id"]) == {"R1"}
    assert not (obs["contracted"] & obs["churned"]).any()
    tiers = {r["tier"]: r for r in got.figures["segments"]["all"]["by_tier"]}
    # R1 is one of six Green accounts on each of the 13 dates; churn is unchanged by it.
    assert tiers["Green"]["contracted"] == 13
    assert tiers["Green"]["contraction_rate"] == pytest.approx(1 / 6, abs=1e-6)
    assert tiers["Green"]["churn_rate"]["value"] == 0.0
