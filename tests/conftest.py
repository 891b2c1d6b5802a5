"""Test session set-up: all state (MLflow store, Prefect home, checkpoints) in a temp folder.

The environment is set at import time, before any test module imports Prefect (PREFECT_HOME
is read when Prefect is imported).
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
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


@pytest.fixture(autouse=True)
def _session_store_after_each_test():
    """MLflow keeps the store a test pointed it at (the module's URI and MLFLOW_TRACKING_URI,
    which every subprocess then inherits): after a test that used a store of its own, the
    next test starts on the session's store again, whatever ran before it."""
    yield
    session = f"sqlite:///{_HOME / 'mlruns' / 'mlflow.db'}"
    mlflow = sys.modules.get("mlflow")  # its own URI too: a monkeypatched env var is undone, the module's is not
    moved = mlflow is not None and mlflow.get_tracking_uri() != session
    if moved or os.environ.get("MLFLOW_TRACKING_URI", session) != session:
        import mlflow

        mlflow.set_tracking_uri(session)
        os.environ["MLFLOW_TRACKING_URI"] = session  # where the module already had it


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


@pytest.fixture(scope="session")
def inputs(tmp_path_factory, stocks):
    """Small clean inputs of each pipeline (the files the `models` are trained on)."""
    from test_monitor import patients

    root = tmp_path_factory.mktemp("ops")
    prices = stocks[stocks.Ticker.isin(["AAPL", "IBM"])].groupby("Ticker").tail(150)
    prices.to_csv(root / "prices.csv", index=False)
    vitals = patients(n=5)
    vitals.to_parquet(root / "vitals.parquet")
    reviews = pd.read_parquet(REPO / "data" / "reviews_train.parquet")
    reviews.head(300).to_parquet(root / "reviews_train.parquet")
    # a hive-partitioned dataset of 400 test reviews, many times the chunk size
    test = pd.read_parquet(REPO / "data" / "reviews_test.parquet").head(400)
    test["shard"] = np.arange(len(test)) // 100
    for k, g in test.groupby("shard"):
        (root / "reviews_in" / f"shard={k}").mkdir(parents=True)
        g.drop(columns="shard").rename(columns={"review": "text"}).to_parquet(
            root / "reviews_in" / f"shard={k}" / "part-0.parquet"
        )
    return root


@pytest.fixture(scope="session")
def models(prefect_harness, inputs):
    """name -> (model name, version) of a freshly trained tiny model of each pipeline."""
    from test_monitor import SMALL as MONITOR_SMALL

    from rnnpipe.config import load_config, to_dict
    from rnnpipe.flows.forecast import train_stocks
    from rnnpipe.flows.lm import train_lm
    from rnnpipe.flows.monitor import train_monitor
    from rnnpipe.flows.reviews import train_reviews
    from rnnpipe.pipelines.forecast.config import ForecastConfig
    from rnnpipe.pipelines.lm.artefact import LMConfig
    from rnnpipe.pipelines.monitor.config import MonitorConfig
    from rnnpipe.pipelines.reviews.config import ReviewsConfig

    stocks = load_config(
        ForecastConfig,
        overrides=[
            f"data.path={inputs / 'prices.csv'}",
            "data.series=[]",
            "window.lookback=20",
            "model.hidden_size=8",
            "model.num_layers=1",
            "train.epochs=1",
            "register.experiment=ops",
            "register.model_name=ops-stocks",
        ],
    )
    monitor = load_config(
        MonitorConfig,
        overrides=MONITOR_SMALL
        + [
            f"data.path={inputs / 'vitals.parquet'}",
            "forecast.enabled=false",
            "train.epochs=1",
            "register.experiment=ops",
            "register.model_name=ops-monitor",
        ],
    )
    reviews = load_config(
        ReviewsConfig,
        overrides=[
            f"data.path={inputs / 'reviews_train.parquet'}",
            "data.test_path=''",
            "train.epochs=1",
            "model.hidden_size=8",
            "embed.dim=16",
            "text.max_len=60",
            "register.experiment=ops",
            "register.model_name=ops-reviews",
        ],
    )
    lm = load_config(
        LMConfig,
        overrides=[
            f"data.path={inputs / 'reviews_train.parquet'}",
            "data.test_path=''",
            "train.epochs=1",
            "train.batch_size=8",
            "stream.bptt=20",
            "model.embed_dim=16",
            "model.hidden_size=16",
            "model.num_layers=1",
            "generate.max_new_tokens=6",
            "register.experiment=ops",
            "register.model_name=ops-lm",
        ],
    )
    out = {}
    for key, flow, cfg in (
        ("stocks", train_stocks, stocks),
        ("monitor", train_monitor, monitor),
        ("reviews", train_reviews, reviews),
        ("lm", train_lm, lm),
    ):
        s = flow(config=to_dict(cfg))
        out[key] = (s["model_name"], s["version"])
    return out
