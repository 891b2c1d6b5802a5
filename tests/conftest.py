"""Test session set-up: all state (MLflow store, Prefect home, checkpoints) in a temp folder.

The environment is set at import time, before any test module imports Prefect (PREFECT_HOME
is read when Prefect is imported).
"""

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

_HOME = Path(tempfile.mkdtemp(prefix="rnnpipe-tests-"))
os.environ["RNNPIPE_HOME"] = str(_HOME)
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("PREFECT_API_URL", None)
os.environ["PREFECT_HOME"] = str(_HOME / ".prefect")

from rnnpipe import settings  # noqa: E402

settings.apply_environment()

REPO = Path(__file__).resolve().parent.parent
STOCKS = REPO / "data" / "stocks.parquet"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def stocks() -> pd.DataFrame:
    return pd.read_parquet(STOCKS)


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test API for the whole session (starting one costs ~10 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
