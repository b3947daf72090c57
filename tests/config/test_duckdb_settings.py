"""DuckDB's own settings (memory, threads) are configuration under compute.conf, checked
before the database is opened."""

from __future__ import annotations

from pathlib import Path

import pytest

import accounthealth as ah
from accounthealth.errors import ConfigError

from builders import account, make_project

MODEL = """
components:
  adoption:
    weight: 1
    metrics:
      seats: {attribute: licensed_seats, score: {linear: {bad: 0, good: 10}}}
"""


def project(folder: Path, conf: dict) -> Path:
    return make_project(folder, MODEL, {"accounts": [account("A1")]}, compute={"conf": conf})


def test_settings_apply_to_the_embedded_store(tmp_path: Path) -> None:
    with ah.open(project(tmp_path, {"memory_limit": "512MB", "threads": 1})) as p:
        limit, threads = p.store.sql(
            "SELECT current_setting('memory_limit'), current_setting('threads')"
        )[0]
        assert p.compute is p.store
    assert limit == "488.2 MiB" and int(threads) == 1


def test_an_unknown_setting_is_refused_with_the_closest_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err, ah.open(project(tmp_path, {"memory_limt": "1GB"})) as p:
        p.store  # noqa: B018 - opening the store applies the settings
    assert "memory_limt" in str(err.value) and "memory_limit" in err.value.fix
    assert "compute" in err.value.where


def test_a_bad_value_is_refused(tmp_path: Path) -> None:
    with (
        pytest.raises(ConfigError, match=r"DuckDB refuses the settings: .*must have a number"),
        ah.open(project(tmp_path, {"memory_limit": "lots"})) as p,
    ):
        p.store  # noqa: B018 - opening the store applies the settings
