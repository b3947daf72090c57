"""The same model on the same data gives the same results on every engine: each score, tier,
component and metric value of a demo book, over several days, and every figure of its
backtest match the embedded DuckDB reference to 1e-9."""

from __future__ import annotations

import datetime as dt
import shutil
import typing as t
from pathlib import Path

import pandas as pd
import pytest
import yaml

import accounthealth as ah
from accounthealth.demo.project import create

END = dt.date(2026, 6, 30)
START = END - dt.timedelta(days=2)
TOLERANCE = 1e-9
TABLES = {
    "scores": ["account_id", "as_of"],
    "component_scores": ["account_id", "as_of", "component"],
    "metric_values": ["account_id", "as_of", "metric"],
}


Results = tuple[dict[str, pd.DataFrame], dict[str, t.Any]]


def history(folder: Path) -> Results:
    """Ingest, score START..END, read back every history table (sorted), and backtest."""
    with ah.open(folder) as p:
        p.ingest()
        p.score(start=START, end=END)
        out = {}
        for name, keys in TABLES.items():
            frame = p.store.execute(p.store.table(name))
            frame = frame.drop(columns=["computed_at"], errors="ignore")
            out[name] = frame.sort_values(keys).reset_index(drop=True)
        start = END - dt.timedelta(days=330)
        figures = p.backtest(start=start, every=30, reps=20).figures
        return out, figures


def assert_same_figures(actual: t.Any, expected: t.Any, path: str = "figures") -> None:
    """Equal JSON-like figures, floats to TOLERANCE."""
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), path
        for key in expected:
            assert_same_figures(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same_figures(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, abs=TOLERANCE), path
    else:
        assert actual == expected, path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create(tmp_path_factory.mktemp("demo") / "p", demo=True, accounts=120, years=1, end=END)


@pytest.fixture(scope="module")
def reference(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Results:
    folder = tmp_path_factory.mktemp("duckdb") / "p"
    shutil.copytree(demo, folder)
    return history(folder)


def on_engine(demo: Path, root: Path, compute: dict[str, t.Any]) -> Results:
    folder = root / "p"
    shutil.copytree(demo, folder)
    config = yaml.safe_load((folder / "accounthealth.yaml").read_text())
    config["compute"] = compute
    (folder / "accounthealth.yaml").write_text(yaml.safe_dump(config))
    return history(folder)


def test_every_engine_matches_the_duckdb_reference(
    other_engine: str,
    demo: Path,
    reference: Results,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    if other_engine == "postgres":
        compute = {
            "engine": "postgres",
            "url": request.getfixturevalue("postgres_server").new_database(),
        }
    else:
        request.getfixturevalue("spark")
        compute = {"engine": "spark", "master": "local[2]"}
    got, figures = on_engine(demo, tmp_path, compute)
    tables, expected_figures = reference
    assert len(tables["scores"]) > 200  # a real book: ~100 customers x 3 days
    # A backtest with churn to find: several dates, churned accounts, figures computed.
    assert expected_figures["dates"]["count"] >= 4
    assert expected_figures["segments"]["all"]["counts"]["churned_accounts"] >= 5
    assert expected_figures["segments"]["all"]["ranking"]["auc"]["value"] is not None
    assert_same_figures(figures, expected_figures)
    for name, expected in tables.items():
        actual = got[name]
        assert list(actual.columns) == list(expected.columns), name
        assert len(actual) == len(expected), name
        for column in expected.columns:
            left, right = actual[column], expected[column]
            if pd.api.types.is_float_dtype(right):
                both_null = left.isna() & right.isna()
                diff = (left.astype(float) - right.astype(float)).abs()
                bad = ~both_null & ~(diff <= TOLERANCE)
                assert not bad.any(), f"{name}.{column}: {actual[bad].head()}"
            else:
                assert left.astype(object).where(left.notna(), None).tolist() == (
                    right.astype(object).where(right.notna(), None).tolist()
                ), f"{name}.{column}"
