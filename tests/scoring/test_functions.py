"""Scoring functions, missing-data policies, coverage, weights, tiers, segments, renewal
proximity and parent rollups, with account attributes as exact inputs."""

from __future__ import annotations

import datetime as dt
import functools
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import accounthealth as ah
from accounthealth.config.model import Percentile
from accounthealth.metrics.definitions import ResolvedModel
from accounthealth.scoring.finish import final_scores, tier_lookup
from accounthealth.scoring.functions import Values, percentile

from builders import account, make_project

AS_OF = dt.date(2026, 3, 31)


def score(
    tmp_path: Path, compute: dict | None, model: str, accounts: list[dict], **tables: list[dict]
) -> dict:
    """Score the accounts as of AS_OF on the engine under test; returns {account_id: row}."""
    folder = make_project(tmp_path, model, {"accounts": accounts, **tables}, compute=compute)
    with ah.open(folder) as p:
        p.ingest()
        p.score(AS_OF)
        frame = p.scores()
        metrics = p.store.execute(p.store.table("metric_values"))
    out = {r["account_id"]: dict(r) for r in frame.to_dict("records")}
    for r in metrics.to_dict("records"):
        out[r["account_id"]][f"m:{r['metric']}"] = r["score"]
    return out


def one_metric(spec: str, extra: str = "") -> str:
    return f"components:\n  c:\n    weight: 1\n    metrics:\n      m: {spec}\n{extra}"


@pytest.mark.parametrize(
    ("spec", "inputs", "expected"),
    [
        # linear 0 at bad, 100 at good, clipped on both sides
        (
            "{attribute: employees, score: {linear: {bad: 10, good: 20}}}",
            [5, 10, 15, 20, 99],
            [0, 0, 50, 100, 100],
        ),
        # bad > good: fewer is better
        ("{attribute: employees, score: {linear: {bad: 20, good: 10}}}", [5, 12, 25], [100, 80, 0]),
        # bands: highest threshold reached; below all, the lowest's score
        (
            "{attribute: employees, score: {bands: {0: 100, 1: 40, 2: 0}}}",
            [0, 1, 2, 7],
            [100, 40, 0, 0],
        ),
        (
            "{attribute: employees, score: {bands: {10: 20, 20: 60, 30: 90}}}",
            [5, 10, 19, 20, 30, 31],
            [20, 20, 20, 60, 90, 90],
        ),
        # boolean (numbers count as yes when not 0), and inverted
        ("{attribute: employees, score: boolean}", [0, 3], [0, 100]),
        ("{attribute: employees, score: {boolean: {true: 10, false: 90}}}", [0, 3], [90, 10]),
    ],
)
def test_scoring_functions(
    tmp_path: Path, compute: dict | None, spec: str, inputs: list[float], expected: list[float]
) -> None:
    accounts = [account(f"A{i}", employees=v) for i, v in enumerate(inputs)]
    rows = score(tmp_path, compute, one_metric(spec), accounts)
    assert [rows[f"A{i}"]["score"] for i in range(len(inputs))] == pytest.approx(expected)


def test_percent_band_thresholds(tmp_path: Path, compute: dict | None) -> None:
    spec = "{ratio: [employees, licensed_seats], score: {bands: {-50%: 0, 0%: 70, 20%: 100}}}"
    # employees / seats: -0.6 -> 0; -0.2 -> 0 (below 0%); 0.1 -> 70; 0.2 -> 100
    accounts = [
        account(f"A{i}", employees=e, licensed_seats=10) for i, e in enumerate([-6, -2, 1, 2])
    ]
    rows = score(tmp_path, compute, one_metric(spec), accounts)
    assert [rows[f"A{i}"]["score"] for i in range(4)] == pytest.approx([0, 0, 70, 100])


def test_percentile_within_cohort_with_ties(tmp_path: Path, compute: dict | None) -> None:
    spec = "{attribute: employees, score: {percentile: {within: segment}}}"
    accounts = [
        account("S1", employees=1),
        account("S2", employees=2),
        account("S3", employees=2),
        account("S4", employees=3),
        account("E1", segment="enterprise", employees=100),  # a cohort of one
    ]
    rows = score(tmp_path, compute, one_metric(spec), accounts)
    # smb ranks 0..3: S1 0, S2/S3 share ranks 1 and 2 -> 1.5, S4 3; percent = rank / 3
    assert [rows[a]["score"] for a in ("S1", "S2", "S3", "S4")] == pytest.approx([0, 50, 50, 100])
    assert rows["E1"]["score"] == pytest.approx(50)


def test_percentile_lower_is_better_and_tenure_cohorts(
    tmp_path: Path, compute: dict | None
) -> None:
    spec = (
        "{attribute: employees, score: {percentile: {within: tenure, "
        "higher_is_better: false, tenure_buckets: [100]}}}"
    )
    accounts = [
        account("N1", employees=1, created_at="2026-03-01"),
        account("N2", employees=5, created_at="2026-03-01"),
        account("O1", employees=50, created_at="2024-01-01"),
        account("O2", employees=9, created_at="2024-01-01"),
    ]
    rows = score(tmp_path, compute, one_metric(spec), accounts)
    # new accounts compared only with each other, old with old; fewer is better
    assert [rows[a]["score"] for a in ("N1", "N2", "O1", "O2")] == pytest.approx([100, 0, 0, 100])


TWO = """
components:
  a:
    weight: 3
    metrics:
      x: {attribute: employees, score: {linear: {bad: 0, good: 100}}}
      y: {ratio: [employees, licensed_seats], score: {linear: {bad: 0, good: 1}}, MISSING}
  b:
    weight: 1
    metrics:
      z: {attribute: licensed_seats, score: {linear: {bad: 0, good: 100}}}
"""


def test_missing_redistribute_default_and_unknown(tmp_path: Path, compute: dict | None) -> None:
    accounts = [account("A1", employees=40, licensed_seats=0)]  # y: 40 / 0 -> no value
    # redistribute: component a = x only = 40; score = (3*40 + 1*0) / 4 = 30
    r = score(tmp_path / "r", compute, TWO.replace(", MISSING", ""), accounts)["A1"]
    assert r["score"] == pytest.approx(30)
    assert r["coverage"] == pytest.approx(0.75 * 0.5 + 0.25)
    # default 80: a = (40 + 80) / 2 = 60; score = (3*60 + 0) / 4 = 45; coverage unchanged
    r = score(tmp_path / "d", compute, TWO.replace("MISSING", "missing: {default: 80}"), accounts)[
        "A1"
    ]
    assert r["score"] == pytest.approx(45)
    assert r["coverage"] == pytest.approx(0.625)
    # unknown: no score and no tier
    r = score(tmp_path / "u", compute, TWO.replace("MISSING", "missing: unknown"), accounts)["A1"]
    assert pd.isna(r["score"])
    assert pd.isna(r["tier"])


def test_a_component_without_data_gives_its_weight_to_the_others(
    tmp_path: Path, compute: dict | None
) -> None:
    model = TWO.replace(", MISSING", "").replace(
        "z: {attribute: licensed_seats,", "z: {avg: tickets.csat,"
    )
    rows = score(
        tmp_path, compute, model, [account("A1", employees=40, licensed_seats=0)], tickets=[]
    )
    assert rows["A1"]["score"] == pytest.approx(40)  # a alone
    assert rows["A1"]["coverage"] == pytest.approx(0.375)


def test_tiers_default_bounds_and_custom_labels(tmp_path: Path, compute: dict | None) -> None:
    spec = "{attribute: employees, score: {linear: {bad: 0, good: 100}}}"
    accounts = [account(f"A{v}", employees=v) for v in (39, 40, 69, 70)]
    rows = score(tmp_path / "d", compute, one_metric(spec), accounts)
    assert [rows[f"A{v}"]["tier"] for v in (39, 40, 69, 70)] == ["Red", "Yellow", "Yellow", "Green"]
    custom = "tiers: [{name: Healthy, min: 50}, {name: At risk, min: 0}]\n"
    rows = score(tmp_path / "c", compute, custom + one_metric(spec), accounts)
    assert [rows[f"A{v}"]["tier"] for v in (39, 40, 69, 70)] == ["At risk"] * 2 + ["Healthy"] * 2


SEGMENTED = """
components:
  a:
    weight: 1
    metrics:
      x: {attribute: employees, score: {linear: {bad: 0, good: 100}}}
  b:
    weight: 1
    metrics:
      z: {attribute: licensed_seats, score: {linear: {bad: 0, good: 100}}}
segments:
  big:
    when: "segment = 'enterprise' and employees >= 50"
    weights: {a: 3}
  ent:
    when: "segment = 'enterprise'"
    components:
      b: null
      c: {weight: 1, metrics: {w: {attribute: employees, score: {linear: {bad: 0, good: 50}}}}}
"""


def test_segments_first_match_wins(tmp_path: Path, compute: dict | None) -> None:
    accounts = [
        account("S", employees=60, licensed_seats=20),  # smb: default, (60 + 20) / 2
        account("B", segment="enterprise", employees=60, licensed_seats=20),  # big: 3:1
        account("E", segment="enterprise", employees=20, licensed_seats=20),  # ent: a + c
    ]
    rows = score(tmp_path, compute, SEGMENTED, accounts)
    assert rows["S"]["segment_model"] == "default"
    assert rows["S"]["score"] == pytest.approx(40)
    assert rows["B"]["segment_model"] == "big"
    assert rows["B"]["score"] == pytest.approx((3 * 60 + 20) / 4)
    assert rows["E"]["segment_model"] == "ent"
    assert rows["E"]["score"] == pytest.approx((20 + 40) / 2)
    assert "m:z" not in rows["E"]


def test_renewal_proximity_amplifies_risk(tmp_path: Path, compute: dict | None) -> None:
    model = "renewal: {within_days: 100, amplify: 1}\n" + one_metric(
        "{attribute: employees, score: {linear: {bad: 0, good: 100}}}"
    )
    contracts = [
        {
            "contract_id": f"C{a}",
            "account_id": a,
            "start_date": "2025-01-01",
            "end_date": str(AS_OF + dt.timedelta(days=d)),
            "arr": 100,
        }
        for a, d in (("A1", 50), ("A2", 150), ("A3", 1))
    ]
    accounts = [account(a, employees=60) for a in ("A1", "A2", "A3")]
    rows = score(tmp_path, compute, model, accounts, contracts=contracts)
    # risk 40; 50 days out: x(1 + 1 * 0.5) = 60 -> 40; beyond 100 days: unchanged
    assert rows["A1"]["score"] == pytest.approx(40)
    assert rows["A1"]["renewal_adjustment"] == pytest.approx(-20)
    assert rows["A2"]["score"] == pytest.approx(60)
    # 1 day out: risk 40 x 1.99 = 79.6 -> 20.4
    assert rows["A3"]["score"] == pytest.approx(20.4)


@pytest.mark.parametrize(
    ("rollup", "expected"),
    [
        ("{method: mean}", (20 + 60 + 100) / 3),
        ("{method: arr_weighted}", (20 * 1 + 60 * 1 + 100 * 2) / 4),
        ("{method: mean, include_parent: false}", (60 + 100) / 2),
    ],
)
def test_parent_rollup(tmp_path: Path, compute: dict | None, rollup: str, expected: float) -> None:
    model = f"rollup: {rollup}\n" + one_metric(
        "{attribute: employees, score: {linear: {bad: 0, good: 100}}}"
    )
    accounts = [
        account("P", employees=20),
        account("K1", employees=60, parent_account_id="P"),
        account("K2", employees=100, parent_account_id="P"),
    ]
    contracts = [
        {
            "contract_id": f"C{a}",
            "account_id": a,
            "start_date": "2025-01-01",
            "end_date": "2027-01-01",
            "arr": arr,
        }
        for a, arr in (("P", 100), ("K1", 100), ("K2", 200))
    ]
    rows = score(tmp_path, compute, model, accounts, contracts=contracts)
    assert rows["P"]["score"] == pytest.approx(expected)
    assert rows["P"]["own_score"] == pytest.approx(20)
    assert rows["P"]["rollup_children"] == 2
    assert rows["K1"]["score"] == pytest.approx(60)


@functools.cache
def rollup_model(rollup: str) -> ResolvedModel:
    """The resolved model of a project rolling parents up as ``rollup`` says."""
    with tempfile.TemporaryDirectory() as tmp:
        model = f"rollup: {rollup}\n" + one_metric(
            "{attribute: employees, score: {linear: {bad: 0, good: 100}}}"
        )
        with ah.open(make_project(Path(tmp), model, {"accounts": [account("A")]})) as p:
            return p.model


scored_rows = st.lists(
    st.tuples(
        st.sampled_from(["P1", "P2", "K1", "K2", "K3"]),  # the account
        st.sampled_from([None, "P1", "P2", "K1", "X"]),  # its parent (X: not scored)
        st.integers(0, 2),  # the date, from AS_OF
        st.one_of(st.none(), st.floats(0, 100)),  # its own score
        st.one_of(st.none(), st.floats(-50, 1000)),  # its ARR
    ),
    min_size=1,
    max_size=25,
    unique_by=lambda r: (r[0], r[2]),
)


@settings(max_examples=60, deadline=None)
@given(
    rows=scored_rows,
    rollup=st.sampled_from(
        ["{method: mean}", "{method: arr_weighted}", "{method: mean, include_parent: false}"]
    ),
)
def test_parents_take_their_childrens_scores_of_the_same_date(rows: list, rollup: str) -> None:
    """Against the rule worked out one parent and date at a time: the mean (or ARR-weighted
    mean, an account without ARR weighing 1e-9) of the children's own scores that date, with
    the parent's own when include_parent; children without a score do not count, and a
    parent none of whose children has a score that date keeps its own."""
    resolved = rollup_model(rollup)
    spec = resolved.model.rollup
    assert spec is not None
    table = pa.table(
        {
            "account_id": [r[0] for r in rows],
            "as_of": pa.array([AS_OF + dt.timedelta(days=r[2]) for r in rows], pa.date32()),
            "own_score": pa.array([r[3] for r in rows], pa.float64()),
            "tier": pa.array(["Red"] * len(rows)),
            "parent_account_id": pa.array([r[1] for r in rows], pa.string()),
            "arr": pa.array([r[4] for r in rows], pa.float64()),
            "segment_model": ["default"] * len(rows),
        }
    )
    final = final_scores(table, resolved).to_pylist()

    def weight(arr: float | None) -> float:
        if spec.method == "mean":
            return 1.0
        return arr if arr is not None and arr > 0 else 1e-9

    tier_of = tier_lookup(resolved)
    for (account_id, _, day, own, arr), got in zip(rows, final, strict=True):
        children = [r for r in rows if r[1] == account_id and r[2] == day and r[3] is not None]
        if not children:
            assert got["rollup_children"] == 0
            assert got["score"] == own or (own is None and got["score"] is None)
            continue
        counted = [(r[3], weight(r[4])) for r in children]
        if spec.include_parent and own is not None:
            counted.append((own, weight(arr)))
        expected = sum(v * w for v, w in counted) / sum(w for _, w in counted)
        assert got["rollup_children"] == len(children)
        assert math.isclose(got["score"], expected, rel_tol=1e-9, abs_tol=1e-9)
        assert got["tier"] == tier_of("default", got["score"])


def test_four_tier_split_by_trend(tmp_path: Path, compute: dict | None) -> None:
    model = "trend_tiers: {days: 1, drop: 5}\n" + one_metric(
        "{count: events, window: 1d, score: {linear: {bad: 0, good: 100}}}"
    )
    events = [
        {"event_id": f"{a}{d}{i}", "account_id": a, "event_time": f"2026-03-{d} 10:00:00"}
        for a, counts in (("A1", {30: 60, 31: 50}), ("A2", {30: 50, 31: 52}))
        for d, n in counts.items()
        for i in range(n)
    ]
    folder = make_project(
        tmp_path,
        model,
        {"accounts": [account("A1"), account("A2")], "events": events},
        compute=compute,
    )
    with ah.open(folder) as p:
        p.ingest()
        p.score(start=AS_OF - dt.timedelta(days=1), end=AS_OF)
        frame = p.scores(AS_OF, AS_OF)
    tiers = dict(zip(frame["account_id"], frame["tier"], strict=True))
    assert tiers == {"A1": "Declining", "A2": "Stable"}  # 60 -> 50 fell 10; 50 -> 52 rose


def test_float_noise_at_a_bound_does_not_decide_the_tier() -> None:
    import numpy as np

    from accounthealth.config.model import DEFAULT_TIERS
    from accounthealth.scoring.combine import tiers_of
    from accounthealth.scoring.functions import Values

    def tier(value: float) -> str:
        position = tiers_of(Values(np.array([value]), np.array([False])), DEFAULT_TIERS)[0]
        return DEFAULT_TIERS[position].name

    # A weighted mean that is 70 in exact arithmetic can land a hair below it.
    assert tier(69.99999999999999) == "Green"
    assert tier(69.9999) == "Yellow"
    assert tier(39.99999999999999) == "Yellow"


@pytest.mark.parametrize("other_cohort", [1, 40_000])
def test_percentile_ranks_within_cohorts_whatever_their_codes(other_cohort: int) -> None:
    # Cohort codes grow with the dates and peers of a batch; past 16 bits they are sorted
    # another way, to the same ranks.
    data = np.array([5.0, 1.0, 3.0, 3.0, 7.0, 2.0, 0.0, 2.0])
    null = np.array([False, False, False, False, False, False, True, False])
    cohort = np.array([0, 0, 0, 0, other_cohort, other_cohort, other_cohort, other_cohort])
    out = percentile(Values(data, null), Percentile(within="segment"), cohort)
    # First cohort ranks 1 < 3 = 3 < 5: 0, 50, 50, 100. The other, 7 > 2 = 2 (0.0 is NULL).
    assert out.data[[1, 2, 3, 0]].tolist() == [0.0, 50.0, 50.0, 100.0]
    assert out.data[[5, 7, 4]].tolist() == [25.0, 25.0, 100.0]
    assert out.null.tolist() == null.tolist()
