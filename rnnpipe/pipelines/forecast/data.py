"""The forecasting data read and checked under its settings, for training and for a batch
input; free of torch and MLflow, as `rnnpipe train` runs it before any flow starts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rnnpipe import settings
from rnnpipe.config import from_dict
from rnnpipe.io import preloadable
from rnnpipe.pipelines.forecast.config import DataConfig, ForecastConfig
from rnnpipe.series import SeriesFrame, load_series

if TYPE_CHECKING:
    import pandas as pd


@preloadable
def load_forecast_data(cfg: ForecastConfig) -> SeriesFrame:
    """The forecasting table a config names: target first, then the extra features."""
    d = cfg.data
    return read_history(d, settings.resolve_data_path(d.path), d.format, d.series)


def read_history(
    d: DataConfig, path: str | Path, fmt: str, series: list[str] | tuple = (), for_model: bool = False
) -> SeriesFrame:
    """A history table read and checked under `d`'s columns and rules (`for_model`: a
    trained model's input)."""
    return load_series(
        path,
        timestamp_col=d.timestamp_col,
        series_col=d.series_col,
        value_cols=[d.target_col, *d.features, *d.known_features],
        series=series,
        series_name=d.series_name,
        nan_policy=d.nan_policy,
        fmt=fmt,
        for_model=for_model,
    )


def check_history(raw_config: dict[str, Any], path: str | Path, fmt: str = "auto") -> None:
    """A batch input for a forecaster, checked as training checks its data (the model's saved
    `config.json` says how); with known features, its history and future rows apart."""
    d = from_dict(DataConfig, raw_config["data"])
    if not d.known_features:
        read_history(d, path, fmt, for_model=True)
        return
    from rnnpipe.io import read_table

    ids = [d.series_col] if d.series_col else []
    columns = list(dict.fromkeys([*ids, d.timestamp_col, d.target_col, *d.features, *d.known_features]))
    table, origin = read_table(path, columns, fmt, text_columns=ids)
    read_forecast_input(table.to_pandas(), d, origin, str(path))


def future_mask(df: pd.DataFrame, d: DataConfig) -> np.ndarray:
    """Rows of a prediction's input that lie after the history: per series, those whose
    timestamp follows the series' last row with a target value, and hold no target (the
    forecast steps, carrying the known features' planned values)."""
    import pandas as pd

    from rnnpipe.series import empty_cells

    if d.target_col not in df.columns or d.timestamp_col not in df.columns:
        return np.zeros(len(df), dtype=bool)
    ts = pd.to_datetime(df[d.timestamp_col], errors="coerce", utc=True, format="mixed")
    observed = pd.Series(~empty_cells(df[d.target_col]), index=df.index)  # "" of a CSV read as text too
    key = df[d.series_col].astype(str) if d.series_col and d.series_col in df.columns else pd.Series(0, index=df.index)
    last = ts.where(observed).groupby(key).transform("max")
    return ((~observed) & (ts > last)).to_numpy()


def read_forecast_input(
    df: pd.DataFrame, d: DataConfig, origin=None, source: str = "input"
) -> tuple[SeriesFrame, SeriesFrame | None]:
    """A forecaster's prediction input -> (the history, the future rows of its known features
    or None). Without `data.known_features` every row is history. Both are checked as
    training checks its data: errors name the row."""
    from rnnpipe.io import RowOrigin
    from rnnpipe.series import to_series_frame

    value_cols = [d.target_col, *d.features, *d.known_features]
    common = dict(
        timestamp_col=d.timestamp_col, series_col=d.series_col, series_name=d.series_name, source=source, for_model=True
    )
    future = future_mask(df, d) if d.known_features else np.zeros(len(df), dtype=bool)
    if origin is None:
        rows = df.index.to_numpy() if df.index.dtype.kind in "iu" else np.arange(len(df))
        origin = RowOrigin(rows, label=source)
    past, ahead = np.flatnonzero(~future), np.flatnonzero(future)
    frame = to_series_frame(
        df.iloc[past], value_cols=value_cols, nan_policy=d.nan_policy, origin=origin.take(past), **common
    )
    if not len(ahead):
        return frame, None
    return frame, to_series_frame(
        df.iloc[ahead], value_cols=list(d.known_features), nan_policy="error", origin=origin.take(ahead), **common
    )
