"""The backtest's figures on data where the answer is known by hand."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from accounthealth.validation.measures import (
    Bootstrap,
    before_outcome,
    by_tier,
    calibration,
    deciles,
    lead_time,
    ranking,
    weighted_auc,
)

D = dt.date.fromisoformat


@pytest.mark.parametrize("seed", range(5))
def test_weighted_auc_equals_scikit_learn_with_ties_and_weights(seed: int) -> None:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, 300).astype(float)
    risk = rng.integers(0, 12, 300).astype(float) + label * rng.integers(0, 3, 300)  # ties
    weight = rng.integers(0, 4, 300).astype(float)
    assert weighted_auc(label, risk, weight) == pytest.approx(
        roc_auc_score(label, risk, sample_weight=weight), abs=1e-12
    )
    assert np.isnan(weighted_auc(np.zeros(5), np.arange(5.0)))


def book(scores: dict[str, float], churned: set[str], day: str = "2026-01-01") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": list(scores),
            "as_of": D(day),
            "score": list(scores.values()),
            "tier": ["Red" if s < 40 else "Green" for s in scores.values()],
            "churned": [a in churned for a in scores],
            "known": True,
            "event": [a in churned for a in scores],
            "duration": [30.0 if a in churned else 365.0 for a in scores],
        }
    )


def test_deciles_rank_within_each_date_and_break_ties_by_account() -> None:
    obs = pd.concat(
        [
            book({f"A{i:02d}": float(i) for i in range(20)}, set()),
            book({f"A{i:02d}": 50.0 for i in range(10)}, set(), day="2026-02-01"),
        ],
        ignore_index=True,
    )
    got = deciles(obs)
    assert got[:20].tolist() == [i // 2 for i in range(20)]
    assert got[20:].tolist() == list(range(10))  # all tied: account order decides


def test_perfect_ranking_has_auc_one_and_the_lift_of_its_churn_rate() -> None:
    # 10 accounts; the two lowest churned: the bottom decile (1 account) churns at 100%,
    # the book at 20%, so the lift is 5.
    scores = {f"A{i}": float(10 * i) for i in range(10)}
    obs = book(scores, {"A0", "A1"})
    boot = Bootstrap.draw(obs["account_id"], reps=50, seed=1)
    got = ranking(obs, boot)
    assert got["auc"]["value"] == 1.0
    assert got["top_decile_lift"]["value"] == pytest.approx(5.0)
    assert got["concordance"]["value"] == 1.0
    assert got["churn_by_decile"][:3] == [1.0, 1.0, 0.0]
    assert got["roc"][0] == [0.0, 0.0] and got["roc"][-1] == [1.0, 1.0]
    # A reversed score ranks churn perfectly wrong.
    reversed_ = ranking(book({a: 100 - s for a, s in scores.items()}, {"A0", "A1"}), boot)
    assert reversed_["auc"]["value"] == 0.0


def test_intervals_come_from_resampling_accounts_and_contain_the_value() -> None:
    rng = np.random.default_rng(3)
    scores = {f"A{i:03d}": float(s) for i, s in enumerate(rng.uniform(0, 100, 200))}
    churned = {a for a, s in scores.items() if rng.random() < (100 - s) / 150}
    obs = book(scores, churned)
    first = ranking(obs, Bootstrap.draw(obs["account_id"], reps=100, seed=7))["auc"]
    again = ranking(obs, Bootstrap.draw(obs["account_id"], reps=100, seed=7))["auc"]
    assert first == again  # seeded: the report is reproducible
    assert first["low"] < first["value"] < first["high"]
    assert first["high"] - first["low"] < 0.25
    none = ranking(obs, Bootstrap.draw(obs["account_id"], reps=0))["auc"]
    assert none["low"] is None and none["value"] == first["value"]


def test_churn_rate_by_tier_and_score_band() -> None:
    obs = book({"A": 10.0, "B": 20.0, "C": 35.0, "D": 80.0, "E": 95.0, "F": 99.0}, {"A", "B", "E"})
    boot = Bootstrap.draw(obs["account_id"], reps=0)
    tiers = {r["tier"]: r for r in by_tier(obs, ["Green", "Yellow", "Red"], boot)}
    assert tiers["Red"]["churn_rate"]["value"] == pytest.approx(2 / 3)
    assert tiers["Green"]["churn_rate"]["value"] == pytest.approx(1 / 3)
    assert tiers["Yellow"]["observations"] == 0 and tiers["Yellow"]["churn_rate"]["value"] is None
    bands = {b["band"]: b for b in calibration(obs)}
    assert bands["10-20"]["churned"] == 1 and bands["30-40"]["churn_rate"] == 0.0
    assert bands["90-100"]["observations"] == 2 and bands["90-100"]["churn_rate"] == 0.5
    assert bands["50-60"]["churn_rate"] is None


def test_share_of_churned_in_the_top_tier_and_mean_scores_before_the_outcome() -> None:
    before = pd.DataFrame(
        {
            "account_id": ["A", "B", "C", "R", "S"],
            "days_before": 30,
            "retained": [False, False, False, True, True],
            "score": [80.0, 30.0, np.nan, 90.0, 70.0],
            "tier": ["Green", "Red", None, "Green", "Green"],
        }
    )
    got = before_outcome(before, "Green", [30], Bootstrap.draw(before["account_id"], reps=0))
    # C has no score 30 days before: it is left out, not counted as not-Green.
    assert got["churned_in_top_tier"]["30"] == {"value": 0.5, "low": None, "high": None, "n": 2}
    assert got["mean_score"]["churned"]["30"]["value"] == pytest.approx(55.0)
    assert got["mean_score"]["retained"]["30"]["value"] == pytest.approx(80.0)


def test_lead_time_is_the_unbroken_run_in_the_bottom_tier_before_churn() -> None:
    days = [D("2026-01-05") + dt.timedelta(days=7 * i) for i in range(6)]
    tiers = {
        "A": ["Green", "Red", "Green", "Red", "Red", "Red"],  # Red since day 3 (Jan 26)
        "B": ["Red", "Red", "Red", "Red", "Red", "Yellow"],  # not Red at the end: no warning
    }
    obs = pd.DataFrame(
        [
            {"account_id": a, "as_of": d, "tier": t}
            for a, ts in tiers.items()
            for d, t in zip(days, ts, strict=True)
        ]
    )
    churns = pd.DataFrame({"account_id": ["A", "B"], "date": [D("2026-02-12")] * 2})
    got = lead_time(obs, churns, "Red", every=7)
    assert got["churns_observed"] == 2 and got["bottom_tier_at_churn"] == 1
    assert got["share_warned"] == 0.5
    assert got["median_days"] == (D("2026-02-12") - D("2026-01-26")).days
