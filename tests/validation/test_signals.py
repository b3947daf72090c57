"""Signal analysis on observations where each signal's behaviour is known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from accounthealth.validation.signals import analyse, distribution


def observations(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    churned = rng.random(n) < 0.3
    good = np.where(churned, rng.uniform(0, 40, n), rng.uniform(60, 100, n))
    noise = rng.uniform(0, 100, n)
    frame = {"churned": churned, "known": True, "score": rng.normal(75, 3, n)}
    metrics = {
        "good": good,  # separates churners perfectly
        "copy": good * 0.5 + 1,  # the same thing again
        "backwards": 100 - good,  # scored the wrong way round
        "flat": np.full(n, 50.0),  # everyone the same
        "noise": noise,
        "strong": good * 0.3 + noise * 0.7,  # predictive, not suspiciously so
        "sparse": good,
    }
    for name, values in metrics.items():
        frame[f"v__{name}"] = values
        frame[f"s__{name}"] = values
        frame[f"p__{name}"] = True
    frame["p__sparse"] = rng.random(n) < 0.2
    frame["s__sparse"] = np.where(frame["p__sparse"], good, np.nan)
    frame["cs__usage"] = good
    return pd.DataFrame(frame)


@pytest.fixture(scope="module")
def found() -> dict:
    names = ["good", "copy", "backwards", "flat", "noise", "strong", "sparse"]
    return analyse(observations(), {n: n.title() for n in names}, ["usage"])


def test_each_metric_is_measured_and_flagged_for_what_it_is(found: dict) -> None:
    rows = {r["name"]: r for r in found["metrics"]}
    assert rows["good"]["auc"] == 1.0 and "a leak of the outcome" in rows["good"]["flags"][0]
    assert rows["strong"]["flags"] == [] and 0.7 < rows["strong"]["auc"] < 0.95
    assert rows["good"]["label"] == "Good" and rows["good"]["coverage"] == 1.0
    assert rows["backwards"]["auc"] == 0.0
    assert rows["backwards"]["flags"] == ["higher scores churn more: the scoring runs backwards"]
    assert rows["flat"]["same_value_share"] == 1.0 and rows["flat"]["distinct_values"] == 1
    assert "does not differentiate" in rows["flat"]["flags"][0]
    assert abs(rows["noise"]["auc"] - 0.5) < 0.1
    assert rows["sparse"]["coverage"] == pytest.approx(0.2, abs=0.06)
    assert rows["sparse"]["flags"][0].startswith("present for only")
    assert found["components"][0]["name"] == "usage" and found["components"][0]["auc"] == 1.0


def test_metrics_that_measure_the_same_thing_are_paired(found: dict) -> None:
    pairs = {(p["a"], p["b"]): p["spearman"] for p in found["correlated"]}
    assert pairs[("good", "copy")] == 1.0
    assert pairs[("good", "backwards")] == -1.0
    assert not any("noise" in pair for pair in pairs if "strong" not in pair)
    assert not any("flat" in pair for pair in pairs)  # constant: no correlation at all


def test_clustered_scores_are_warned_about(found: dict) -> None:
    # Scores ~ N(75, 3): nearly all in 70-80.
    assert found["scores"]["warnings"][0].endswith(
        "they cluster, so the score separates few accounts"
    )
    spread = distribution(pd.Series(np.linspace(0, 100, 101)))
    assert spread["warnings"] == []
    shares = [b["share"] for b in spread["bands"]]
    assert shares[0] == pytest.approx(10 / 101, abs=1e-4)  # 0..9
    assert shares[-1] == pytest.approx(11 / 101, abs=1e-4)  # 90..100: 100 is in the top band
    assert sum(shares) == pytest.approx(1.0, abs=1e-3)  # shares are rounded to 4 digits
