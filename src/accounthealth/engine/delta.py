"""Delta tables for engines without a Delta reader of their own (DuckDB): the table's current
version, as delta-rs lists its Parquet files, read where they are.

A Delta table's folder also holds the files earlier versions replaced or removed, so reading
its Parquet files would count rows twice; the table's log says which files make the version.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.fs as pafs

from accounthealth.errors import ConfigError


def delta_dataset(path: str, where: str) -> ds.Dataset:
    """The latest version of the Delta table at ``path`` (a local folder or a URL delta-rs
    reaches) as an Arrow dataset: its files are read only when a query scans them."""
    try:
        from deltalake import DeltaTable
    except ImportError:
        raise ConfigError(
            "reading a Delta table on this engine needs the deltalake package",
            where=where,
            fix="pip install 'accounthealth[delta]'",
        ) from None
    table = DeltaTable(path)
    if "://" in path:
        return table.to_pyarrow_dataset()
    # A local table's files through Arrow's own file system: delta-rs's default reads every
    # byte through Python.
    local = pafs.SubTreeFileSystem(str(Path(path).resolve()), pafs.LocalFileSystem())
    return table.to_pyarrow_dataset(filesystem=local)


def dataset_name(path: str, kind: str = "delta") -> str:
    """The name a ``kind`` of source at ``path`` (a Delta table, Parquet files) is read
    under: the same in every process, so that a query compiled in one runs in the next, and
    the running values one run keeps are the next's (both are keyed by the queries' SQL)."""
    return f"_accounthealth_{kind}_" + hashlib.sha256(path.encode()).hexdigest()[:16]
