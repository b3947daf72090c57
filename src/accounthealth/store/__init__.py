"""The system's own tables (ingest log, rejected rows, scores, explanations, model versions)."""

from accounthealth.store.schema import migrate

__all__ = ["migrate"]
