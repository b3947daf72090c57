"""Calibration: the constrained fit recovers known weights, refuses thin or unstable data, and
end to end writes a proposed model (never touching the live one) judged on a later period
only; a metric that only 'knows' churn after the fact gets no weight."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner, Result

import accounthealth as ah
import accounthealth.cli.console as cli_console
from accounthealth.cli.app import app
from accounthealth.demo.project import create
from accounthealth.metrics.definitions import ScoredComponent, ScoringModel
from accounthealth.validation.calibrate import (
    assess_probability,
    fit_segment,
    fit_tiers,
    fit_weights,
    rank_matched_tiers,
    to_weights,
)

END = dt.date(2026, 6, 30)
TRAIN_UNTIL = dt.date(2025, 12, 31)


def simulate(n: int, beta: list[float], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, len(beta)))
    p = 1 / (1 + np.exp(-(2.0 - x @ np.array(beta))))
    return x, (rng.random(n) < p).astype(float)


def test_the_fit_recovers_known_weights_and_never_rewards_risk() -> None:
    x, y = simulate(20_000, [6.0, 3.0, 1.0])
    weights = to_weights(fit_weights(x, y))
    assert weights.sum() == 100
    assert weights == pytest.approx([60, 30, 10], abs=5)
    # A component whose high scores mean MORE churn gets the minimum weight, not a negative one.
    x2, y2 = simulate(20_000, [6.0, -3.0])
    assert to_weights(fit_weights(x2, y2)).tolist() == [99.0, 1.0]


def test_whole_weights_sum_to_100_with_a_floor_of_one() -> None:
    assert to_weights(np.array([1.0, 1.0, 1.0])).tolist() == [34.0, 33.0, 33.0]
    assert to_weights(np.array([5.0, 0.0])).tolist() == [99.0, 1.0]
    assert np.isnan(to_weights(np.zeros(3))).all()


def segment(*names: str) -> ScoringModel:
    components = tuple(ScoredComponent(n, 10.0, n, ()) for n in names)
    return ScoringModel("default", None, components, (), None)


def training(accounts: int, churners: int, signal: bool, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"A{i:04d}" for i in range(accounts)]
    churned = np.arange(accounts) < churners
    rows = []
    for day in range(6):
        usage = np.where(churned, 20.0, 80.0) if signal else rng.uniform(0, 100, accounts)
        rows.append(
            pd.DataFrame(
                {
                    "account_id": ids,
                    "as_of": dt.date(2025, 1, 1) + dt.timedelta(days=30 * day),
                    "segment_model": "default",
                    "churned": churned,
                    "cs__usage": usage + rng.normal(0, 5, accounts),
                    "cs__support": rng.uniform(0, 100, accounts),
                    "cs__noise": rng.uniform(0, 100, accounts),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_weights_are_refused_when_too_few_accounts_churned() -> None:
    fit = fit_segment(training(400, 12, signal=True), segment("usage", "support"), reps=10)
    assert fit["proposed"] is None
    assert fit["reason"].startswith("only 12 account(s) churned in the training period")
    assert fit["current"] == {"usage": 50.0, "support": 50.0}


def test_weights_are_refused_when_resampling_moves_them() -> None:
    fit = fit_segment(
        training(300, 40, signal=False), segment("usage", "support", "noise"), reps=30
    )
    assert fit["proposed"] is None
    assert "not stable under resampling" in fit["reason"] or "no component" in fit["reason"]


def test_a_clear_signal_gets_stable_weight() -> None:
    fit = fit_segment(training(400, 80, signal=True), segment("usage", "noise"), reps=20)
    assert fit["reason"] is None
    assert fit["proposed"]["usage"] >= 90 and fit["proposed"]["noise"] <= 10
    low, high = fit["intervals"]["usage"]
    assert low <= fit["proposed"]["usage"] <= high


def test_rank_matched_tiers_keep_the_tier_shares() -> None:
    like = pd.Series(["Green"] * 5 + ["Yellow"] * 3 + ["Red"] * 2)
    score = np.arange(10.0)  # 9 is the best
    tiers = rank_matched_tiers(score, like, ["Green", "Yellow", "Red"])
    assert tiers.tolist() == ["Red"] * 2 + ["Yellow"] * 3 + ["Green"] * 5


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo book with one more component: a 'cancellation' flag in the generic metrics
    table dated on each churn day, i.e. known only once the churn has happened."""
    folder = create(tmp_path_factory.mktemp("cal") / "p", demo=True, accounts=700, years=2, end=END)
    contracts = pd.read_csv(folder / "data" / "contracts.csv")
    churns = contracts[contracts["status"] == "churned"]
    metrics = pd.read_csv(folder / "data" / "metrics.csv")
    flags = pd.DataFrame(
        {
            "account_id": churns["account_id"],
            "metric": "cancellation",
            "date": churns["end_date"],
            "value": 1.0,
        }
    )
    pd.concat([metrics, flags]).to_csv(folder / "data" / "metrics.csv", index=False)
    model = yaml.safe_load((folder / "model.yaml").read_text())
    model["components"]["hindsight"] = {
        "weight": 10,
        "metrics": {
            "cancelled": {
                "latest": "metrics.value",
                "where": "metric = 'cancellation'",
                "score": {"linear": {"bad": 1, "good": 0}},
                "missing": {"default": 100},
            }
        },
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    with ah.open(folder) as p:
        p.ingest()
    return folder


@pytest.fixture(scope="module")
def calibrated(book: Path) -> dict:
    with ah.open(book) as p:
        return p.calibrate(TRAIN_UNTIL, every=30, reps=30)


def test_calibration_trains_before_the_date_and_judges_after_it(
    book: Path, calibrated: dict
) -> None:
    horizon = dt.timedelta(days=90)
    assert calibrated["train"]["last"] + horizon <= TRAIN_UNTIL
    assert calibrated["held_out"]["first"] > TRAIN_UNTIL
    assert set(calibrated["compared"]) == {"current", "proposed", "gradient_boosting"}
    for figures in calibrated["compared"].values():
        assert 0.5 < figures["auc"]["value"] <= 1.0
    fits = {f["segment"]: f for f in calibrated["fits"]}
    # ~84 enterprise accounts rarely churn: no weights for them, and the reason says so.
    assert fits["enterprise"]["proposed"] is None and "churned" in fits["enterprise"]["reason"]
    for fit in fits.values():
        if fit["proposed"]:
            assert sum(fit["proposed"].values()) == 100


def test_the_proposed_model_is_a_new_file_and_the_live_one_is_untouched(
    book: Path, calibrated: dict
) -> None:
    live_text = (book / "model.yaml").read_text()
    proposed = Path(calibrated["proposed_file"])
    assert proposed == book / "model.proposed.yaml"
    with ah.open(book) as p:
        assert p.model.version != calibrated["proposed_version"]
        assert p.load_model(proposed).version == calibrated["proposed_version"]
    assert (book / "model.yaml").read_text() == live_text
    document = yaml.safe_load(proposed.read_text())
    # The calibrated churn probability goes with the proposal, judged on the held-out period.
    mapping = document["churn_probability"]
    assert mapping["slope"] < 0 and mapping["fitted_until"] == str(TRAIN_UNTIL)
    judged = calibrated["probability"]
    assert 0 < judged["brier"] < 0.25 and judged["reliability"]
    fits = {f["segment"]: f for f in calibrated["fits"]}
    for name, fit in fits.items():
        if not fit["proposed"]:
            continue
        if name == "default":
            assert document["components"]["usage"]["weight"] == fit["proposed"]["usage"]
        else:
            assert document["segments"][name]["weights"] == fit["proposed"]


def test_a_metric_known_only_after_churn_gets_no_weight(calibrated: dict) -> None:
    # Point-in-time scoring never shows an observation its own future, so the flag is absent
    # on every observation date: the metric cannot differentiate and gets the minimum weight.
    proposed = [f["proposed"] for f in calibrated["fits"] if f["proposed"]]
    assert proposed, calibrated["fits"]
    assert all(weights["hindsight"] == 1 for weights in proposed)


def calibrate_from_the_cli(book: Path) -> Result:
    """`accounthealth calibrate` on the book, trained until TRAIN_UNTIL."""
    return CliRunner().invoke(
        app,
        ["calibrate", "-p", str(book), "--train-until", str(TRAIN_UNTIL), "--every", "30d",
         "--bootstrap", "10"],
    )  # fmt: skip


def test_the_cli_writes_the_comparison_and_refuses_without_a_date(book: Path) -> None:
    out = calibrate_from_the_cli(book)
    assert out.exit_code == 0, out.output
    assert "Held out" in out.output and "gradient boosting" in out.output
    assert (book / "reports" / f"calibration-{TRAIN_UNTIL}.json").exists()
    missing = CliRunner().invoke(app, ["calibrate", "-p", str(book)])
    assert missing.exit_code != 0


def test_the_held_out_comparison_is_whole_on_an_80_column_terminal(
    book: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its figures wrap onto more lines there: a figure or an interval cut short would be wrong.
    monkeypatch.setattr(cli_console.console, "width", 80)
    out = calibrate_from_the_cli(book)
    assert out.exit_code == 0, out.output
    held = out.output[out.output.index("Held out") : out.output.index("Churn probability")]
    assert "…" not in held
    assert max(len(line) for line in held.splitlines()) <= 80
    assert "gradient" in held and "boosting" in held and " to " in held


def test_brier_and_reliability_on_known_probabilities() -> None:
    p = pd.Series([0.1, 0.1, 0.9, 0.9, np.nan])
    y = pd.Series([False, True, True, True, True])
    got = assess_probability(p, y)
    # (0.01 + 0.81 + 0.01 + 0.01) / 4; the base rate 0.75 scores 3 x 0.0625 + 0.5625 over 4.
    assert got["brier"] == pytest.approx(0.21)
    assert got["brier_of_base_rate"] == pytest.approx(0.1875)
    assert got["reliability"] == [
        {"predicted": 0.1, "observed": 0.5, "observations": 2},
        {"predicted": 0.9, "observed": 1.0, "observations": 2},
    ]


def test_tier_bounds_keep_each_tiers_share_of_accounts() -> None:
    from accounthealth.config.model import DEFAULT_TIERS

    score = pd.Series(np.linspace(0, 100, 101))
    live = pd.Series(["Green"] * 30 + ["Yellow"] * 50 + ["Red"] * 21)
    got = fit_tiers(score, live, DEFAULT_TIERS)
    # 30% above 70 stays Green; Red keeps its ~21%: below 20 instead of below 40.
    assert got["proposed"] == [
        {"name": "Green", "min": 70.0},
        {"name": "Yellow", "min": 21.0},
        {"name": "Red", "min": 0.0},
    ]
    same = pd.Series(["Green"] * 31 + ["Yellow"] * 30 + ["Red"] * 40)
    unchanged = fit_tiers(score, same, DEFAULT_TIERS)
    assert unchanged["proposed"] is None and "no bound would move" in unchanged["reason"]
