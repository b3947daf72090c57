"""accounthealth: customer health scores you can explain and test against churn.

The Python API for notebooks::

    import accounthealth as ah
    project = ah.open("mycompany")
    project.ingest()
    project.score()                     # today; or start=..., end=... to backfill
    project.accounts(tier="Red")        # pandas DataFrame
    project.scores(start, end)          # history
    print(project.explain("A00042").summary())
    project.backtest(horizon=90).figures  # how well the score predicted churn
"""

# First, before anything loads pyarrow or NumPy: Arrow's C++ code reads its memory pool once,
# when it loads, and NumPy its use of huge pages (accounthealth/memory.py says why both matter).
from accounthealth.memory import choose_arrow_pool_early, leave_huge_pages_early

choose_arrow_pool_early()
leave_huge_pages_early()

from accounthealth.errors import AccountHealthError, ConfigError, DataError, NotFoundError  # noqa: E402
from accounthealth.project import Project, ScoreReport, open  # noqa: E402
from accounthealth.validation.backtest import Backtest, BacktestOptions  # noqa: E402

__all__ = [
    "AccountHealthError",
    "Backtest",
    "BacktestOptions",
    "ConfigError",
    "DataError",
    "NotFoundError",
    "Project",
    "ScoreReport",
    "open",
]
__version__ = "0.1.0"
