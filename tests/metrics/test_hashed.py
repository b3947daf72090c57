"""Accounts' positions found by the hashes of their ids (metrics/hashed.py)."""

from __future__ import annotations

import ibis
import numpy as np
import pyarrow as pa

from accounthealth.engine.duckdb import DuckDBEngine
from accounthealth.metrics.hashed import HASH, HashedPositions, hashed_rows
from accounthealth.metrics.series import POSITION


def _index(hashes: list[int]) -> HashedPositions | None:
    """The index of accounts whose hashes, in position order, are ``hashes``."""
    return HashedPositions.of(np.array(hashes, np.uint64), np.arange(len(hashes)))


def _rows(hashes: list[int], values: list[str]) -> pa.Table:
    return pa.table({"_v": values, HASH: pa.array(hashes, pa.uint64())})


def test_rows_get_their_accounts_positions_and_rows_of_no_account_are_dropped() -> None:
    index = _index([30, 10, 2**63 + 5, 20])
    assert index is not None
    placed = index.place(_rows([20, 99, 2**63 + 5, 30, 10, 0], ["a", "b", "c", "d", "e", "f"]))
    # In their order: the hash 99 (beyond every account's) and 0 (before them) are no account.
    assert placed.column_names == ["_v", POSITION]
    assert placed.to_pydict() == {"_v": ["a", "c", "d", "e"], POSITION: [3, 2, 0, 1]}
    assert placed.schema.field(POSITION).type == pa.int32()


def test_two_accounts_sharing_a_hash_leave_the_run_to_join_their_ids() -> None:
    assert _index([7, 3, 7]) is None


def test_a_run_without_accounts_places_no_row() -> None:
    index = _index([])
    assert index is not None
    placed = index.place(_rows([1, 2], ["a", "b"]))
    assert placed.num_rows == 0 and placed.column_names == ["_v", POSITION]


def test_the_engines_hashes_of_the_ids_find_each_account_at_its_position() -> None:
    """The index holds the engine's hash of each id, as a read computes it (``hashed_rows``),
    with the position each id came with, whatever order the engine returns them in (here
    given shuffled, on an engine free to reorder): rows of the ids in reverse order, and of one
    that is no account, each find their account's position, in their own order."""
    engine = DuckDBEngine(settings={"preserve_insertion_order": "false", "threads": "2"})
    ids = [f"A{i:05d}" for i in range(50_000)]
    shuffled = np.random.default_rng(7).permutation(len(ids))
    accounts = pa.table(
        {"_account": [ids[i] for i in shuffled], POSITION: pa.array(shuffled, pa.int32())}
    )
    index = HashedPositions.found(engine, accounts)
    assert index is not None
    asked = [*reversed(ids), "not an account"]
    rows = ibis.memtable(pa.table({"account_id": asked, "_d": range(len(asked))}))
    read = engine.to_arrow(hashed_rows(rows).order_by("_d"))
    assert read.column_names == ["_d", HASH]
    placed = index.place(read)
    assert placed.column(POSITION).to_pylist() == list(range(len(ids) - 1, -1, -1))
    assert placed.column("_d").to_pylist() == list(range(len(ids)))
