"""The steps after scoring that need the whole book: parent rollups, the churn probability,
the 4-tier trend split and the overrides in force.

Each changes few rows (parents and their children, the middle tier, accounts with an
override), so ``final_scores`` works on the scored Arrow rows as they are and passes only the
rows a step can change through pandas, where the step is written (the rollup is in NumPy):
converting a whole batch to pandas and its results back cost more than all the steps together.
"""

from __future__ import annotations

import datetime as dt
import typing as t

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from accounthealth.actions import overrides
from accounthealth.config.model import TIER_TOLERANCE, HealthModel, Rollup
from accounthealth.metrics.definitions import ResolvedModel
from accounthealth.scoring.functions import names_at

TierOf = t.Callable[[str, float], str]
# The columns these steps set, with their types (a backtest's lack the override ones).
FINAL_COLUMNS = {
    "score": pa.float64(),
    "tier": pa.string(),
    "rollup_children": pa.int32(),
    "churn_probability": pa.float64(),
    "computed_score": pa.float64(),
    "computed_tier": pa.string(),
    "override_id": pa.string(),
}
OVERRIDE_COLUMNS = ("computed_score", "computed_tier", "override_id")


def tier_lookup(resolved: ResolvedModel) -> TierOf:
    """The tier a score reaches in a segment model's tiers (ordered best first)."""
    tiers = {seg.segment: seg.tiers for seg in resolved.segments}

    def tier_of(segment: str, value: float) -> str:
        return next(t.name for t in tiers[segment] if value >= t.min - TIER_TOLERANCE)

    return tier_of


def final_scores(
    scored: pa.Table,
    resolved: ResolvedModel,
    *,
    earlier: pd.DataFrame | None = None,
    in_force: pd.DataFrame | None = None,
) -> pa.Table:
    """The final columns of scored rows, in their order: score and rollup_children (parents
    take their children's scores), tier, churn_probability; with ``earlier`` (stored scores of
    the dates the trend compares with) the 4-tier trend split; with ``in_force`` (overrides)
    computed_score, computed_tier and override_id."""
    model = resolved.model
    tier_of = tier_lookup(resolved)
    n = scored.num_rows
    accounts = scored.column("account_id")
    score = pc.cast(scored.column("own_score"), pa.float64()).to_numpy(zero_copy_only=False)
    score = np.array(score, dtype=np.float64)  # NULL is NaN, as in pandas; a copy to change
    tier = _Tiers(scored.column("tier"))
    children = np.zeros(n, np.int32)

    def rows(at: np.ndarray, *columns: str) -> pd.DataFrame:
        """Some rows as pandas: ``columns`` as scored, the score and tier as set so far."""
        frame = scored.select(["account_id", "as_of", *columns]).take(pa.array(at)).to_pandas()
        frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
        frame["score"], frame["tier"] = score[at], tier[at]
        return frame

    if model.rollup is not None and n:
        parents = scored.column("parent_account_id")
        has_parent = pc.is_valid(parents)
        wanted = pc.unique(parents.filter(has_parent))
        is_parent = pc.is_in(accounts, value_set=wanted)
        at = np.flatnonzero(pc.or_(has_parent, is_parent).to_numpy(zero_copy_only=False))
        if len(at):
            rolled, value, count = _rolled_up(scored, at, score, model.rollup)
            at = at[rolled]
            segments = scored.column("segment_model").take(pa.array(at)).to_pylist()
            score[at], children[at] = value, count
            tier[at] = np.array(
                [tier_of(s, v) for s, v in zip(segments, value, strict=True)], dtype=object
            )
    spec = model.trend_tiers
    if spec is not None and earlier is not None:
        middle = tier.named(spec.split)
        if middle.any():
            # Every row of those accounts: the date compared with may be in this batch.
            wanted = pc.unique(accounts.filter(pa.array(middle)))
            at = np.flatnonzero(pc.is_in(accounts, value_set=wanted).to_numpy(zero_copy_only=False))
            known = rows(at)
            split = split_by_trend(known[middle[at]], pd.concat([earlier, known]), model)
            tier[at[middle[at]]] = split["tier"].to_numpy()
    final = {"score": score, "rollup_children": children, "tier": tier}
    if in_force is not None:
        final |= _with_overrides(scored, resolved, in_force, tier_of, rows, final)
    final["churn_probability"] = churn_probability(score, model)
    return pa.table({column: _arrow(part, FINAL_COLUMNS[column]) for column, part in final.items()})


class _Tiers:
    """The tier column as positions in a list of its names (-1 for none). The steps read and
    set few rows, and the column goes back to Arrow whole: as Python strings, to and from
    Arrow, it took 15-20 ms of a day of the benchmark's 184,000 accounts."""

    def __init__(self, column: pa.Array | pa.ChunkedArray) -> None:
        """From tier names, or positions in names (as scoring gives them, each segment's
        with its own)."""
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        self.names: list[str] = []
        codes = []
        for chunk in chunks:
            if not pa.types.is_dictionary(chunk.type):
                chunk = pc.dictionary_encode(chunk)
            # Each of the chunk's names at its position in ``names``; NULL at -1.
            at = np.array([*map(self._position, chunk.dictionary.to_pylist()), -1], np.int64)
            codes.append(at[pc.fill_null(chunk.indices, -1).to_numpy(zero_copy_only=False)])
        self.codes = np.concatenate(codes) if codes else np.zeros(0, np.int64)

    def _position(self, name: str) -> int:
        """Where ``name`` is in ``names``, added at their end if not there."""
        if name not in self.names:
            self.names.append(name)
        return self.names.index(name)

    def __getitem__(self, at: np.ndarray) -> np.ndarray:
        """The names at some rows (None for none)."""
        return np.array([*self.names, None], dtype=object)[self.codes[at]]

    def __setitem__(self, at: np.ndarray, names: np.ndarray) -> None:
        found, distinct = pd.factorize(names)  # a missing name is -1
        position = np.array([*map(self._position, distinct), -1], np.int64)
        self.codes[at] = position[found]

    def named(self, name: str) -> np.ndarray:
        """Which rows have the tier ``name``."""
        return self.codes == (self.names.index(name) if name in self.names else -2)

    def to_arrow(self) -> pa.Array:
        """As Arrow strings."""
        return names_at(self.names, self.codes)


def _arrow(values: np.ndarray | _Tiers | pa.Array, type_: pa.DataType) -> pa.Array:
    """A final column as Arrow."""
    if isinstance(values, _Tiers):
        return values.to_arrow()
    if isinstance(values, pa.Array):
        return values
    return pa.array(values, type_, from_pandas=True)


def _with_overrides(
    scored: pa.Table,
    resolved: ResolvedModel,
    in_force: pd.DataFrame,
    tier_of: TierOf,
    rows: t.Callable[..., pd.DataFrame],
    final: dict[str, t.Any],
) -> dict[str, np.ndarray | pa.Array]:
    """Apply the overrides in force to the rows of their accounts: score and tier change in
    ``final``; returns computed_score, computed_tier and override_id."""
    n = scored.num_rows
    if in_force.empty or not n:
        return {column: pa.nulls(n, FINAL_COLUMNS[column]) for column in OVERRIDE_COLUMNS}
    out = {
        "computed_score": np.full(n, np.nan),
        "computed_tier": np.full(n, None, dtype=object),
        "override_id": np.full(n, None, dtype=object),
    }
    wanted = pa.array(in_force["account_id"].unique(), pa.string())
    at = np.flatnonzero(
        pc.is_in(scored.column("account_id"), value_set=wanted).to_numpy(zero_copy_only=False)
    )
    if len(at):
        components = [c for c in scored.column_names if c.startswith("cs__")]
        frame = rows(at, "segment_model", "base_score", "own_score", *components)
        overrides.apply(frame, in_force, resolved, tier_of)
        for column, values in (final | out).items():
            if column in frame:
                values[at] = frame[column].to_numpy()
    return out


def _rolled_up(
    scored: pa.Table, at: np.ndarray, score: np.ndarray, rollup: Rollup
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parent accounts take the mean (or ARR-weighted mean) of their children's scores of the
    same date, with their own score counted as one more child when ``include_parent`` is set;
    a child without a score does not count, and a parent rolls up only on dates when one of
    its children has a score. Of the rows ``at`` (accounts with a parent, and parents; not
    none; ``score`` is every row's own score, NaN for none): which roll up, their scores and how
    many children each counted. By codes and sums in NumPy: pandas's group-by took 10-20 ms
    of each day of the benchmark's backfill."""
    rows = scored.select(["account_id", "parent_account_id", "as_of", "arr"]).take(pa.array(at))
    ids = pa.concat_arrays(
        [rows.column(c).combine_chunks() for c in ("account_id", "parent_account_id")]
    )
    # One code per id, the same for an account and for the parent that names it; -1: none.
    codes = pc.fill_null(pc.dictionary_encode(ids).indices, -1).to_numpy().astype(np.int64)
    n = len(at)
    day = pc.cast(rows.column("as_of"), pa.int32()).to_numpy(zero_copy_only=False)
    day = day.astype(np.int64) - int(day.min())
    span = int(day.max()) + 1
    own_key, parent_key = codes[:n] * span + day, codes[n:] * span + day
    own = score[at]
    child = (codes[n:] >= 0) & ~np.isnan(own)
    if not child.any():
        return np.zeros(n, bool), np.zeros(0), np.zeros(0, np.int64)
    weight = np.ones(n)
    if rollup.method == "arr_weighted":
        arr = rows.column("arr").to_numpy(zero_copy_only=False).astype(np.float64)
        # An account without ARR still counts, a little: otherwise all-zero ARR divides by zero.
        weight = np.where(np.nan_to_num(arr, nan=0.0) > 0, arr, 1e-9)
    keys, weights = parent_key[child], weight[child]
    if rollup.include_parent:
        parent = np.isin(own_key, keys) & ~np.isnan(own)
        keys = np.concatenate([keys, own_key[parent]])
        weights = np.concatenate([weights, weight[parent]])
        own_counted = np.concatenate([own[child], own[parent]])
    else:
        own_counted = own[child]
    groups, group = np.unique(keys, return_inverse=True)
    total = np.bincount(group, weights=own_counted * weights, minlength=len(groups))
    weighed = np.bincount(group, weights=weights, minlength=len(groups))
    counted = np.bincount(group[: int(child.sum())], minlength=len(groups))
    i = np.minimum(np.searchsorted(groups, own_key), len(groups) - 1)
    rolled = groups[i] == own_key  # every group holds a child (a parent joins only those)
    i = i[rolled]
    return rolled, total[i] / weighed[i], counted[i]


def split_by_trend(frame: pd.DataFrame, history: pd.DataFrame, model: HealthModel) -> pd.DataFrame:
    """The 4-tier model: the middle tier becomes Declining when the score fell by ``drop``
    points or more over ``days``, Stable otherwise (also when there is no earlier score)."""
    spec = model.trend_tiers
    if spec is None or frame.empty:
        return frame
    known = pd.concat(
        [history[["account_id", "as_of", "score"]], frame[["account_id", "as_of", "score"]]]
    )
    known = known.drop_duplicates(["account_id", "as_of"], keep="last")
    earlier = known.assign(as_of=known["as_of"] + dt.timedelta(days=spec.days)).rename(
        columns={"score": "_then"}
    )
    merged = frame.merge(earlier, on=["account_id", "as_of"], how="left")
    middle = merged["tier"] == spec.split
    declining = middle & ((merged["score"] - merged["_then"]) <= -spec.drop)
    merged.loc[middle, "tier"] = spec.stable
    merged.loc[declining, "tier"] = spec.declining
    return merged.drop(columns=["_then"])


def churn_probability(score: np.ndarray, model: HealthModel) -> np.ndarray:
    """P(churn within the model's horizon) from each final score, when the model has one."""
    spec = model.churn_probability
    if spec is None:
        return np.full(len(score), np.nan)
    return 1 / (1 + np.exp(-(spec.intercept + spec.slope * score)))
