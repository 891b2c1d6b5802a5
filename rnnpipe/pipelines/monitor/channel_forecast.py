"""The monitor's channel forecaster: a forecaster of one channel (e.g. glucose), trained in
the same flow on the monitor's grid and split, with its own run and registered model."""

from __future__ import annotations

from rnnpipe.pipelines.forecast.config import DataConfig, ForecastConfig, RegisterConfig, WindowConfig
from rnnpipe.pipelines.forecast.evaluation import ForecastEvaluation, evaluate_forecasts
from rnnpipe.pipelines.monitor.artefact import MonitorPrepared
from rnnpipe.pipelines.monitor.config import MonitorConfig


def channel_forecast_config(cfg: MonitorConfig) -> ForecastConfig:
    """The forecaster's settings, derived from the monitor's: same grid, split, lookback,
    horizon, encoder and training; its own experiment run."""
    d, f, w = cfg.data, cfg.forecast, cfg.window
    return ForecastConfig(
        data=DataConfig(
            path=d.path,
            format=d.format,
            timestamp_col=d.timestamp_col,
            series_col=d.series_col,
            series_name=d.series_name,
            target_col=f.channel,
            features=[],
            series=d.series,
            nan_policy="error",
        ),
        window=WindowConfig(lookback=w.lookback, horizon=w.horizon, target=f.target, scaler=w.scaler),
        model=cfg.model,
        train=cfg.train,
        register=RegisterConfig(
            experiment=cfg.register.experiment,
            model_name=f"{cfg.register.model_name}-{f.channel}-forecaster",
            metric="test_mae",
        ),
    )


def prepare_channel_forecast(p: MonitorPrepared, cfg: MonitorConfig):
    """(ForecastConfig, ForecastPrepared) for the channel forecaster on the monitor's grid and split."""
    from rnnpipe.pipelines.forecast.prepare import prepare

    fc = channel_forecast_config(cfg)
    return fc, prepare(p.grid.select([cfg.forecast.channel]), p.split, fc)


def evaluate_channel_forecast(pipeline, prepared) -> ForecastEvaluation:
    """Test metrics of the forecaster against the last value (naive) and a ridge regression
    on the window, all in the channel's units (steps 1..H averaged, and the last step alone:
    `*_mae_last_step`, e.g. 30 minutes ahead)."""
    return evaluate_forecasts(pipeline, prepared, ("test",))["test"]
