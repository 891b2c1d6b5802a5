"""Each series pipeline's data, read and checked under its settings: training's ingest step,
and the check of a batch input before its job starts (one code path for both).

Free of torch and MLflow on purpose: `rnnpipe train` and `rnnpipe predict` read and check the
data before any flow starts, and a user error should come back in about the time `--help`
takes (bench/bench_user_errors.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rnnpipe import settings
from rnnpipe.config import DataConfig, ForecastConfig, MonitorConfig, MonitorDataConfig, from_dict
from rnnpipe.errors import DataError
from rnnpipe.io import SeriesFrame, load_series, preloadable

# --- forecasting: a history of prices (or any series) ---------------------------------------


@preloadable
def load_forecast_data(cfg: ForecastConfig) -> SeriesFrame:
    """The forecasting table a config names: target first, then the extra features."""
    d = cfg.data
    return read_history(d, settings.resolve_data_path(d.path), d.format, d.series)


def read_history(d: DataConfig, path: str | Path, fmt: str, series: list[str] | tuple = ()) -> SeriesFrame:
    """A history table read and checked under `d`'s columns and rules."""
    return load_series(path, timestamp_col=d.timestamp_col, series_col=d.series_col,
                       value_cols=[d.target_col, *d.features], series=series, series_name=d.series_name,
                       nan_policy=d.nan_policy, fmt=fmt)


def check_history(raw_config: dict[str, Any], path: str | Path, fmt: str = "auto") -> None:
    """A batch input for a forecaster, checked as training checks its data (the model's saved
    `config.json` says how)."""
    read_history(from_dict(DataConfig, raw_config["data"]), path, fmt)


# --- monitoring: patients' readings ---------------------------------------------------------


def value_columns(cfg: MonitorConfig) -> list[str]:
    d = cfg.data
    return list(dict.fromkeys([*d.channels, *([d.label_col] if d.label_col else [])]))


@preloadable
def load_monitor_data(cfg: MonitorConfig) -> SeriesFrame:
    """The readings a config names, every channel checked to hold values."""
    d = cfg.data
    return read_readings(d, settings.resolve_data_path(d.path), d.format, value_columns(cfg), d.series)


def read_readings(d: MonitorDataConfig, path: str | Path, fmt: str, columns: list[str],
                  series: list[str] | tuple = ()) -> SeriesFrame:
    """Readings read and checked under `d`'s columns and rules, every channel holding values."""
    frame = load_series(path, timestamp_col=d.timestamp_col, series_col=d.series_col, value_cols=columns,
                        series=series, series_name=d.series_name, nan_policy="keep", duplicates=d.duplicates,
                        fmt=fmt)
    check_channels(frame, d.channels)
    return frame


def check_readings(raw_config: dict[str, Any], path: str | Path, fmt: str = "auto") -> None:
    """A batch input for a monitor model, checked as training checks its readings: dates,
    offsets, numbers, duplicates, empty channels."""
    d = from_dict(MonitorDataConfig, raw_config["data"])
    read_readings(d, path, fmt, d.channels)


def check_channels(frame: SeriesFrame, channels: list[str]) -> None:
    """Every channel has at least one reading (train and predict alike): a channel that is
    missing throughout is named, rather than reported as windows that cannot be filled."""
    for c in channels:
        if np.isnan(frame.values[:, frame.columns.index(c)]).all():
            raise DataError(f"{frame.source}: column {c!r} (one of data.channels) has no values in any of "
                            f"its {len(frame)} rows")
