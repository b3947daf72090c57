"""The compute layer: an Ibis connection over the store's engine (DuckDB by default)."""

from accounthealth.engine.connection import Engine

__all__ = ["Engine"]
