"""Made the saved artefacts in this folder, once, with the code of commit 4c33f85 (before
saved models carried a format version): a tiny forecaster and a tiny monitor, each with an
input and the predictions that code made. tests/test_artefacts.py loads them with today's
code; rerunning this script would save them with today's code and test nothing, so don't.

    python tests/saved_models/make.py
"""

from pathlib import Path

import pandas as pd
import torch

from rnnpipe.config import load_config
from rnnpipe.features.splits import chronological_split
from rnnpipe.pipelines.forecast.artefact import ForecastPipeline
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.pipelines.forecast.prepare import prepare
from rnnpipe.pipelines.monitor.artefact import MonitorPipeline, evaluate_monitor, prepare_monitor
from rnnpipe.pipelines.monitor.config import MonitorConfig
from rnnpipe.series import load_series, to_series_frame
from rnnpipe.training import fit

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def forecaster() -> None:
    stocks = pd.read_parquet(REPO / "data" / "stocks.parquet")
    small = stocks[stocks.Ticker.isin(["AAPL", "IBM"])].groupby("Ticker").tail(200)
    small.to_csv(HERE / "prices.csv", index=False)
    cfg = load_config(
        ForecastConfig,
        overrides=[
            f"data.path={HERE / 'prices.csv'}",
            "data.series=[]",
            "window.lookback=20",
            "window.horizon=2",
            "model.hidden_size=8",
            "model.num_layers=1",
            "train.epochs=1",
            "baselines.statistical=[]",
            "register.gate_baselines=[naive]",
        ],
    )
    frame = load_series(HERE / "prices.csv", timestamp_col="Date", series_col="Ticker", value_cols=["Close"])
    p = prepare(frame, chronological_split(frame, cfg.split.train, cfg.split.val), cfg)
    pipe = ForecastPipeline(cfg, p.preprocessor)
    fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, progress=False)
    pipe.save(HERE / "forecast")
    history = small.groupby("Ticker").tail(40)
    history.to_csv(HERE / "forecast_input.csv", index=False)
    pipe.predict(history).to_csv(HERE / "forecast_output.csv", index=False)
    (HERE / "prices.csv").unlink()


def monitor() -> None:
    import sys

    sys.path.insert(0, str(HERE.parent))
    from test_monitor import SMALL, patients

    cfg = load_config(MonitorConfig, overrides=SMALL)
    df = patients()
    frame = to_series_frame(df, timestamp_col="ts", series_col="pid", value_cols=["glucose"], nan_policy="keep")
    p = prepare_monitor(frame, cfg)
    pipe = MonitorPipeline(cfg, p.preprocessor)

    def loss(pred, y):
        return torch.nn.functional.binary_cross_entropy_with_logits(pred, y[:, 0])

    fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, loss_fn=loss, progress=False)
    evaluate_monitor(pipe, p)  # chooses the threshold
    pipe.save(HERE / "monitor")
    recent = df.groupby("pid").tail(30)
    recent.to_csv(HERE / "monitor_input.csv", index=False)
    pipe.predict(recent).to_csv(HERE / "monitor_output.csv", index=False)


if __name__ == "__main__":
    torch.manual_seed(0)
    forecaster()
    monitor()
