"""Accounts' positions found by the hash of their ids, for the reads of a run carrying on
(metrics/sliding.py).

A run's reads come back with each row's account as its position among the run's accounts.
Joined by the engine, each read built a hash table of all the accounts' ids, whatever it
read: a daily run of the benchmark's book has five reads of one day's rows, and the joins
were two thirds of their CPU. A read instead returns the engine's 64-bit hash of each row's
id (``HASH``), and the run looks the hashes up among its accounts', sorted once and kept with
the state from day to day (``Carried.index``): one-day runs in turns took 0.487 s against
0.544 s (medians of six).

Exact where the accounts' hashes differ, which ``HashedPositions.of`` checks (else the run
joins). A row whose account is none of the run's is dropped, as the join drops it, unless its
id's hash equals an account's. Were the hash random, that would be 2^-64 for a pair of ids;
DuckDB's hash is not cryptographic, so ids made to collide could. Such ids are rare to begin
with: ingest rejects rows of unknown accounts, so they are accounts since removed, or rows of
tables read in place. The hashes are the engine's own function as Ibis types it (a signed
64-bit reinterpretation of DuckDB's unsigned hash): the kept state, and so the index, is for
one version of each (scoring/querycache.py's fingerprint).
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from accounthealth.engine.base import Engine
from accounthealth.metrics.series import POSITION

# The column of a read that holds its rows' accounts' hashes (replaced by ``POSITION``).
HASH = "_account_hash"


@dataclass(frozen=True, eq=False)
class HashedPositions:
    """The hashes of a run's accounts' ids, sorted, with the position of each one's account."""

    hashes: np.ndarray
    positions: np.ndarray

    @classmethod
    def of(cls, hashes: np.ndarray, positions: np.ndarray) -> HashedPositions | None:
        """From each account's hash and position; None where two accounts share a hash."""
        order = np.argsort(hashes)
        ordered = hashes[order]
        if len(ordered) > 1 and bool((ordered[1:] == ordered[:-1]).any()):
            return None
        return cls(ordered, positions[order].astype(np.int32))

    @classmethod
    def found(cls, engine: Engine, accounts: pa.Table) -> HashedPositions | None:
        """The positions of ``accounts`` (``_account`` ids, ``POSITION``) by the hash
        ``engine`` gives each id; None where two share one. Each row brings its position:
        the engine may return them in any order."""
        rows = ibis.memtable(accounts)
        data = engine.to_arrow(rows.select(POSITION, **{HASH: rows._account.hash()}))
        positions = data.column(POSITION).to_numpy()
        return cls.of(_unsigned(data.column(HASH).to_numpy()), positions)

    def place(self, data: pa.Table) -> pa.Table:
        """``data``'s rows of the run's accounts, each with its account's ``POSITION`` instead
        of its id's hash (``HASH``), in their order."""
        hashes = _unsigned(data.column(HASH).to_numpy())
        data = data.drop_columns([HASH])
        if not len(self.hashes):
            return data.slice(0, 0).append_column(POSITION, pa.array([], pa.int32()))
        # Where each hash would go among the accounts'; one past them all is compared with
        # the last, which it is not.
        at = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        known = self.hashes[at] == hashes
        data = data.append_column(POSITION, pa.array(self.positions[at]))
        return data if known.all() else data.filter(pa.array(known))


def hashed_rows(rows: ir.Table) -> ir.Table:
    """``rows`` (with an ``account_id``) with its hash (``HASH``) instead."""
    return rows.mutate(**{HASH: rows.account_id.hash()}).drop("account_id")


def _unsigned(hashes: np.ndarray) -> np.ndarray:
    """Hashes as unsigned 64-bit integers: Ibis types DuckDB's as signed ones."""
    if hashes.dtype == np.int64:
        return hashes.view(np.uint64)
    return hashes.astype(np.uint64, copy=False)
