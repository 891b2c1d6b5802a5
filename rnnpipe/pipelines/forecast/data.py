"""The forecasting data read and checked under its settings, for training and for a batch
input; free of torch and MLflow, as `rnnpipe train` runs it before any flow starts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rnnpipe import settings
from rnnpipe.config import from_dict
from rnnpipe.errors import DataError
from rnnpipe.features.targets import TargetEncoding
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


def check_history(
    raw_config: dict[str, Any], path: str | Path, fmt: str = "auto", saved: Callable[[str], Path] | None = None
) -> None:
    """A batch input for a forecaster, checked as training checks its data (the model's saved
    `config.json` says how); with known features, its history and future rows apart, and
    (`saved`: a file of the saved pipeline by name, for the model's time step) a future row
    for every forecast step of every series."""
    d = from_dict(DataConfig, raw_config["data"])
    if d.known_features:
        from rnnpipe.io import read_table

        ids = [d.series_col] if d.series_col else []
        columns = list(dict.fromkeys([*ids, d.timestamp_col, d.target_col, *d.features, *d.known_features]))
        table, origin = read_table(path, columns, fmt, text_columns=ids)
        frame, ahead = read_forecast_input(table.to_pandas(), d, origin, str(path))
    else:
        frame, ahead = read_history(d, path, fmt, for_model=True), None
    if saved is None:
        return
    try:
        pre = json.loads(saved("pipeline/preprocessor.json").read_text())
    except Exception:  # noqa: BLE001 - unreadable here: the job checks the history when it loads the model
        return
    try:  # what the model needs of the history, as predicting checks it
        encoding = TargetEncoding(pre["target"])
        history_fits(frame, pre["lookback"], encoding.skip)
        encoding.check(frame.target, frame.series, frame.offsets, frame.timestamps)
        if pre.get("known_"):
            future_values(frame, ahead, forecast_stamps(frame, pre["step_"], pre["horizon"]), pre["known_"], d)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def history_fits(frame: SeriesFrame, lookback: int, skip: int) -> None:
    """Every series of a prediction's history holds a window of `lookback` rows (plus `skip`,
    the rows a change target has no value at), or the error names the first that does not."""
    need = lookback + skip
    short = [(s, int(n)) for s, n in zip(frame.series, frame.lengths()) if n < need]
    if short:
        s, n = short[0]
        raise DataError(
            f"series {s!r} has {n} rows of history; the model needs at least {need} "
            f"(window.lookback={lookback}{' + 1 for the first change' if skip else ''})"
        )


def forecast_stamps(frame: SeriesFrame, step: str, horizon: int) -> np.ndarray:
    """(S, H) timestamps of the `horizon` forecast steps after each series' last row, `step`
    (a pandas offset alias, the model's time step) apart."""
    import pandas as pd

    offset = pd.tseries.frequencies.to_offset(step)
    last = pd.DatetimeIndex(frame.timestamps[frame.offsets[1:] - 1])
    stamps = [last[i] + h * offset for i in range(len(last)) for h in range(1, horizon + 1)]
    return pd.DatetimeIndex(stamps).astype("datetime64[ns]").to_numpy().reshape(len(last), horizon)


def future_values(
    frame: SeriesFrame, ahead: SeriesFrame | None, stamps: np.ndarray, known: list[str], d: DataConfig
) -> np.ndarray:
    """(S, H, K) values of the `known` features at every series' forecast steps (`stamps`),
    from the input's future rows (`ahead`). A step without its row is an error naming the
    series, the features and the timestamps needed."""
    import pandas as pd

    S, H = stamps.shape
    values = np.full((S, H, len(known)), np.nan)
    if ahead is not None:
        index = {s: i for i, s in enumerate(ahead.series)}
        for i, sid in enumerate(frame.series):
            if sid not in index:
                continue
            lo, hi = ahead.bounds(index[sid])
            pos = {t: r for r, t in enumerate(ahead.timestamps[lo:hi])}
            for h, t in enumerate(stamps[i]):
                if t in pos:
                    values[i, h] = ahead.values[lo + pos[t]]
    for i, sid in enumerate(frame.series):
        gaps = [h for h in range(H) if np.isnan(values[i, h]).any()]
        if gaps and known:
            when = ", ".join(str(pd.Timestamp(stamps[i][h])) for h in gaps[:4]) + (", ..." if len(gaps) > 4 else "")
            who = f"series {sid!r}: " if d.series_col else ""  # a file of one series: the file is named
            raise DataError(
                f"{who}no future value of {', '.join(map(repr, known))} (data.known_features) at "
                f"{len(gaps)} of the {H} forecast steps ({when}); send a row for each of the {H} steps "
                f"after the history ({d.timestamp_col} {pd.Timestamp(stamps[i][0])} to "
                f"{pd.Timestamp(stamps[i][-1])}) with {', '.join(known)} and the target empty"
            )
    return values


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
