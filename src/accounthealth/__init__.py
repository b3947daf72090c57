"""accounthealth: customer health scores you can explain and test against churn.

The Python API for notebooks::

    import accounthealth as ah
    project = ah.open("mycompany")
    project.ingest()
    project.score()                     # today; or start=..., end=... to backfill
    project.accounts(tier="Red")        # pandas DataFrame
    project.scores(start, end)          # history
    print(project.explain("A00042").summary())
"""

from accounthealth.errors import AccountHealthError, ConfigError, DataError, NotFoundError
from accounthealth.project import Project, ScoreReport, open

__all__ = [
    "AccountHealthError",
    "ConfigError",
    "DataError",
    "NotFoundError",
    "Project",
    "ScoreReport",
    "open",
]
__version__ = "0.1.0"
