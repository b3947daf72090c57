"""Scores are computed in NumPy on the values an engine computed, with the engines' own rules
for what NumPy does differently: NaN is a number above every other (it reaches every band and
bound) and a NULL is missing. Checked against the same arithmetic written in DuckDB SQL, to the
last bit, on values full of ties, NaN and NULL."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from accounthealth.config.model import BooleanScore, Linear, Percentile
from accounthealth.scoring.functions import Values, bands, boolean, linear, percentile

NAN = float("nan")


def _values(rng: np.random.Generator, n: int) -> list[float | None]:
    """Small integers (many ties), NaN, infinities and NULLs."""
    out: list[float | None] = []
    for _ in range(n):
        r = rng.random()
        out.append(None if r < 0.1 else NAN if r < 0.15 else float(rng.integers(-3, 8)))
    out[:3] = [float("inf"), float("-inf"), -0.0]
    return out


def _sql(query: str, values: list[float | None], cohort: list[int]) -> list[float | None]:
    table = pa.table(
        {
            "i": pa.array(range(len(values)), pa.int64()),
            "x": pa.array(values, pa.float64()),
            "c": pa.array(cohort, pa.int64()),
        }
    )
    con = duckdb.connect()
    con.register("t", table)
    return [row[0] for row in con.execute(f"SELECT {query} FROM t ORDER BY i").fetchall()]


def _ours(result: Values) -> list[float | None]:
    return [None if null else float(v) for v, null in zip(result.data, result.null, strict=True)]


def _same(ours: list[float | None], sql: list[float | None]) -> bool:
    def key(v: float | None) -> tuple[str, float]:
        return ("null", 0.0) if v is None else ("nan", 0.0) if v != v else ("num", v)

    return [key(v) for v in ours] == [key(v) for v in sql]


@pytest.mark.parametrize("with_nan", [True, False])
@pytest.mark.parametrize("higher_is_better", [True, False])
def test_percentile_is_sql_rank_and_cume_dist_to_the_bit(
    higher_is_better: bool, with_nan: bool
) -> None:
    rng = np.random.default_rng(7)
    values = _values(rng, 400)
    if not with_nan:  # without NaN, the values are sorted by one key fewer
        values = [v if v is None or v == v else 5.0 for v in values]
    cohort = [int(c) for c in rng.integers(0, 4, len(values))]
    cohort[:2] = [9, 9]  # a cohort of two infinities
    cohort[2] = 10  # and one of a single value: 50
    ordered = "x" if higher_is_better else "-x"
    window = f"PARTITION BY c, x IS NULL ORDER BY {ordered}"
    size = "count(x) OVER (PARTITION BY c, x IS NULL)"
    mid = f"((rank() OVER ({window}) - 1)::DOUBLE + (cume_dist() OVER ({window}) * {size} - 1)) / 2"
    sql = _sql(
        f"CASE WHEN x IS NULL THEN NULL WHEN {size} <= 1 THEN 50.0 "
        f"ELSE {mid} / ({size} - 1) * 100.0 END",
        values,
        cohort,
    )
    spec = Percentile(higher_is_better=higher_is_better)
    ours = percentile(Values.of(pa.array(values, pa.float64())), spec, np.array(cohort))
    assert _same(_ours(ours), sql)
    assert _ours(ours)[2] == 50.0


def test_linear_bands_and_boolean_treat_nan_as_the_engines_do() -> None:
    values = _values(np.random.default_rng(3), 200)
    x = Values.of(pa.array(values, pa.float64()))
    cohort = [0] * len(values)
    cases = [
        (
            linear(x, Linear(bad=1, good=5)),
            "CASE WHEN x IS NULL THEN NULL ELSE GREATEST(LEAST((x - 1) / 4, 1.0), 0.0) * 100.0 END",
        ),
        (
            linear(x, Linear(bad=6, good=-2)),
            "CASE WHEN x IS NULL THEN NULL ELSE "
            "GREATEST(LEAST((x - 6) / -8, 1.0), 0.0) * 100.0 END",
        ),
        (
            bands(x, {0: 100, 1: 40, 2: 0}),
            "CASE WHEN x >= 2 THEN 0.0 WHEN x >= 1 THEN 40.0 WHEN x IS NULL THEN NULL "
            "ELSE 100.0 END",
        ),
        (
            boolean(x, BooleanScore()),
            "CASE WHEN x IS NULL THEN NULL WHEN x != 0 THEN 100.0 ELSE 0.0 END",
        ),
    ]
    for ours, query in cases:
        assert _same(_ours(ours), _sql(query, values, cohort)), query
    # NaN is above every bound and band: the best linear score either way, the last band.
    at = next(i for i, v in enumerate(values) if v is not None and v != v)
    assert [_ours(ours)[at] for ours, _ in cases] == [100.0, 100.0, 0.0, 100.0]


def test_values_become_arrow_with_their_nulls() -> None:
    data = np.arange(20, dtype=np.float64)
    null = np.zeros(20, dtype=bool)
    null[[0, 7, 8, 19]] = True
    got = Values(data, null).to_arrow()
    assert got.to_pylist() == [None if n else float(v) for v, n in zip(data, null, strict=True)]
    assert got.null_count == 4
    # Every other row of a wider array (not contiguous), without NULLs.
    strided = Values(np.arange(40, dtype=np.float64)[::2], np.zeros(20, dtype=bool)).to_arrow()
    assert strided.to_pylist() == [float(v) for v in range(0, 40, 2)]
    assert strided.null_count == 0
    # Shifted by one row (not starting on a byte of the validity bits).
    shifted = Values(data[1:], null[1:]).to_arrow()
    assert shifted.to_pylist() == got.to_pylist()[1:]
