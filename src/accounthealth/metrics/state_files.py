"""A kept state's files (metrics/carryover.py): what each holds, its name in the state's
folder, and how it is written and read back.

    ids.arrow                  the accounts, by position
    index.arrow                their ids' hashes, sorted, with their positions (metrics/hashed.py)
    running-<column>.arrow     an aggregate's running values
    series-<i>-<j>.arrow       a series' pieces, in order
    sightings-<column>.arrow   a distinct aggregate's sightings, and values-<column>.arrow
                               the values their codes index
    input-<table>.arrow        the day grid's inputs (scoring/day_grid.py)
    grid-<name>.arrow          what the day grid worked out of them (``DayGrid.kept``)
    state.json                 the day, what each file is of, and the tables' marks
"""

from __future__ import annotations

import datetime as dt
import typing as t
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather

from accounthealth.metrics.hashed import HashedPositions
from accounthealth.metrics.series import Carried, Series, Sightings

SIGHTING_COLUMNS = ("accounts", "codes", "days", "leaves", "latest")
IDS = "ids.arrow"
INDEX = "index.arrow"


# Whether an object carried on as it was read is now at a path as a second name of the file it
# was read from (``CarryOver._linked``); else it is written there.
Linked = t.Callable[[object, Path], bool]


def write_rows(carried: Carried, work: Path, linked: Linked) -> None:
    """Write what ``carried`` holds before its running values into the state's folder
    ``work``: its accounts (and their positions by hash), the series' pieces, the sightings
    and the day grid's inputs."""
    if not linked(carried.ids, work / IDS):
        write_table(pa.table({"id": carried.ids}), work / IDS)
    index = carried.index
    if index is not None and not linked(index, work / INDEX):
        write_arrays(work / INDEX, {"hash": index.hashes, "position": index.positions})
    for name, files in piece_files(carried).items():
        for piece, file in zip(carried.series[name], files, strict=True):
            if not linked(piece, work / file):
                write_arrays(
                    work / file, {"_account": piece.accounts, "_day": piece.days} | piece.columns
                )
    for col, seen in carried.sightings.items():
        columns = {c: getattr(seen, c) for c in SIGHTING_COLUMNS}
        write_arrays(work / f"sightings-{col}.arrow", columns)
        write_table(pa.table({"value": seen.values}), work / f"values-{col}.arrow")
    for table, data in carried.inputs.items():
        if not linked(data, input_file(work, table)):
            write_table(data, input_file(work, table))


def write_running(carried: Carried, work: Path, linked: Linked) -> None:
    """Write ``carried``'s running values, and what the day grid worked out of its inputs,
    into the state's folder ``work``."""
    for col in carried.columns:
        if not linked(carried.running[col], running_file(work, col)):
            write_arrays(running_file(work, col), carried.running[col])
    for name, data in carried.grid.items():
        if not linked(data, grid_file(work, name)):
            write_table(data, grid_file(work, name))


def piece_files(carried: Carried) -> dict[str, list[str]]:
    """The file of each piece of each series ``carried`` keeps, by series."""
    return {
        name: [f"series-{i}-{j}.arrow" for j in range(len(pieces))]
        for i, (name, pieces) in enumerate(carried.series.items())
    }


def running_file(folder: Path, col: str) -> Path:
    """The file of the running values of the aggregate ``col``."""
    return folder / f"running-{col}.arrow"


def input_file(folder: Path, table: str) -> Path:
    """The file of the day grid's input ``table``."""
    return folder / f"input-{table}.arrow"


def grid_file(folder: Path, name: str) -> Path:
    """The file of what the day grid worked out, ``name`` (``DayGrid.kept``)."""
    return folder / f"grid-{name}.arrow"


def write_arrays(path: Path, columns: t.Mapping[str, np.ndarray]) -> None:
    """Write NumPy ``columns`` as a kept file."""
    write_table(pa.table({name: pa.array(values) for name, values in columns.items()}), path)


def write_table(table: pa.Table, path: Path) -> None:
    """Write ``table`` as a kept file."""
    # One record batch, not the writer's default of 64K rows each: read back, each column is
    # then one chunk that NumPy takes without a copy (a 1-day run of the benchmark's book read
    # its state in 0.13-0.18 s against 0.29 s).
    feather.write_feather(table, path, compression="uncompressed", chunksize=max(1, table.num_rows))


def kept_table(path: Path) -> pa.Table:
    """A kept file as a table whose columns are the file's mapped pages, not copies: read into
    memory, each page of the state (150 MB on the benchmark's book) took a page fault, and the
    kernel zeroed it before it was filled. Mapped, pages already in the file cache are mapped
    sixteen at a time. One-day runs of the benchmark's book, in turns with reading it whole:
    80,000-84,000 page faults against 117,000-118,000, 0.45-0.53 s of system time against
    0.50-0.74 s, and 0.99-1.25 s against 1.05-1.52 s (medians 1.15 and 1.28 s, six each). Its
    arrays are read-only."""
    return feather.read_table(path, memory_map=True)


def kept_arrays(path: Path) -> dict[str, np.ndarray]:
    """A kept file's columns as (read-only) NumPy arrays."""
    table = kept_table(path)
    return {name: table.column(name).to_numpy() for name in table.column_names}


def read_from(carried: Carried, folder: Path, meta: dict[str, t.Any]) -> list[tuple[object, Path]]:
    """What ``read_state`` read from ``folder`` (with its ``meta``) that a run may carry on as it
    is, each with the file it was read from: the accounts' ids and their hashes, the running
    values, the series' pieces, the day grid's inputs and what it worked out of them."""
    read: list[tuple[object, Path]] = [(carried.ids, folder / IDS)]
    if carried.index is not None:
        read.append((carried.index, folder / INDEX))
    read += [(data, running_file(folder, col)) for col, data in carried.running.items()]
    for name, pieces in carried.series.items():
        read += [
            (piece, folder / file) for piece, file in zip(pieces, meta["series"][name], strict=True)
        ]
    read += [(data, input_file(folder, table)) for table, data in carried.inputs.items()]
    read += [(data, grid_file(folder, name)) for name, data in carried.grid.items()]
    return read


def read_state(
    folder: Path,
    meta: dict[str, t.Any],
    day: dt.date,
    good: set[str],
    quiet: frozenset[str],
    inputs: set[str],
) -> Carried:
    """The kept state of the aggregates of the ``good`` tables, and the day grid's
    ``inputs``."""
    columns = tuple(col for col, table in meta["columns"].items() if table in good)
    ids = kept_table(folder / IDS).column("id").combine_chunks()
    running = {col: kept_arrays(running_file(folder, col)) for col in columns}
    series = {}
    for name, files in meta["series"].items():
        if set(name.split("|")[0].split(",")) <= set(columns):
            series[name] = []
            for file in files:
                arrays = kept_arrays(folder / file)
                accounts, days = arrays.pop("_account"), arrays.pop("_day")
                series[name].append(Series(accounts, days, arrays))
    sightings = {}
    for col in set(meta["sightings"]) & set(columns):
        arrays = kept_arrays(folder / f"sightings-{col}.arrow")
        dictionary = kept_table(folder / f"values-{col}.arrow").column("value")
        sightings[col] = Sightings(
            *(arrays[c] for c in SIGHTING_COLUMNS), dictionary.combine_chunks()
        )
    kept = {table: kept_table(input_file(folder, table)) for table in inputs}
    index = None
    if (folder / INDEX).exists():
        arrays = kept_arrays(folder / INDEX)
        index = HashedPositions(arrays["hash"], arrays["position"])
    # What the day grid worked out of the accounts holds while they do.
    grid = (
        {name: kept_table(grid_file(folder, name)) for name in meta.get("grid", [])}
        if "accounts" in kept
        else {}
    )
    return Carried(day, ids, columns, running, series, sightings, quiet, kept, grid, index)
