"""Each series pipeline's data, read and checked under its settings: training's ingest step,
and the check of a batch input before its job starts (one code path for both).

Free of torch and MLflow on purpose: `rnnpipe train` and `rnnpipe predict` read and check the
data before any flow starts, and a user error should come back in about the time `--help`
takes (bench/bench_user_errors.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rnnpipe import settings
from rnnpipe.config import from_dict
from rnnpipe.errors import DataError
from rnnpipe.forecast_config import DataConfig, ForecastConfig
from rnnpipe.io import SeriesFrame, load_series, preloadable
from rnnpipe.monitor_config import MonitorConfig, MonitorDataConfig

if TYPE_CHECKING:
    import pandas as pd

# --- forecasting: a history of prices (or any series) ---------------------------------------


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

    if d.target_col not in df.columns or d.timestamp_col not in df.columns:
        return np.zeros(len(df), dtype=bool)
    ts = pd.to_datetime(df[d.timestamp_col], errors="coerce", utc=True, format="mixed")
    observed = df[d.target_col].notna()
    key = df[d.series_col].astype(str) if d.series_col and d.series_col in df.columns else pd.Series(0, index=df.index)
    last = ts.where(observed).groupby(key).transform("max")
    return ((~observed) & (ts > last)).to_numpy()


def read_forecast_input(
    df: pd.DataFrame, d: DataConfig, origin=None, source: str = "input"
) -> tuple[SeriesFrame, SeriesFrame | None]:
    """A forecaster's prediction input -> (the history, the future rows of its known features
    or None). Without `data.known_features` every row is history. Both are checked as
    training checks its data: errors name the row."""
    from rnnpipe.io import RowOrigin, to_series_frame

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


# --- monitoring: patients' readings ---------------------------------------------------------


def value_columns(cfg: MonitorConfig) -> list[str]:
    d = cfg.data
    return list(dict.fromkeys([*d.channels, *([d.label_col] if d.label_col else [])]))


@preloadable
def load_monitor_data(cfg: MonitorConfig) -> SeriesFrame | Shards:
    """The readings a config names, every channel checked to hold values; for streamed
    training (`data.streaming`, `streamed`) only the `Shards` they lie in, which are read one
    at a time later (`rnnpipe.streaming`)."""
    d = cfg.data
    path = settings.resolve_data_path(d.path)
    if streamed(d, path):
        return scan_shards(d, path)
    return read_readings(d, path, d.format, value_columns(cfg), d.series)


def streamed(d: MonitorDataConfig, path: str | Path) -> bool:
    """Whether training streams the data shard by shard: `data.streaming=true`, or `auto` and a
    Parquet dataset whose metadata counts more than `data.stream_above_rows` readings."""
    if d.streaming != "auto":
        return d.streaming == "true"
    if not d.series_col:
        return False
    from rnnpipe.io import open_dataset

    dataset, kind = open_dataset(path, d.format)
    if kind != "parquet":
        return False
    return sum(f.metadata.num_rows for f in dataset.get_fragments()) > d.stream_above_rows


@dataclass
class Shards:
    """A dataset of patients' readings as its data files (the shards of streamed training),
    each holding whole patients: what can be known from the patient column alone."""

    path: str
    files: list[str]
    patients: list[list[str]]  # per file, sorted
    rows: list[dict[str, int]]  # per file: readings of each of its patients

    @property
    def source(self) -> str:
        return self.path

    @property
    def series(self) -> list[str]:
        return sorted(p for ps in self.patients for p in ps)

    def __len__(self) -> int:
        return sum(sum(r.values()) for r in self.rows)


def scan_shards(d: MonitorDataConfig, path: str | Path) -> Shards:
    """Read only the patient column of every data file: which patients each file holds and
    how many readings each has. A patient whose readings are split over files is refused,
    naming both files (a streamed shard must hold whole patients)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from rnnpipe.io import open_dataset

    dataset, kind = open_dataset(path, d.format, csv_types={d.series_col: pa.string()})
    if d.series_col not in dataset.schema.names:
        raise DataError(f"{path}: column {d.series_col!r} not found (columns: {', '.join(dataset.schema.names)})")
    wanted = set(d.series)
    where: dict[str, str] = {}
    files, patients, rows = [], [], []
    for fragment in dataset.get_fragments():
        try:
            col = fragment.to_table(schema=dataset.schema, columns=[d.series_col]).column(0)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{fragment.path}: cannot read as {kind}: {exc}") from None
        if col.null_count:
            row = int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
            raise DataError(f"{fragment.path}, row {row + 1}: column {d.series_col!r} is empty")
        counts = pc.value_counts(col.cast(pa.string())).to_pylist()
        here = {c["values"]: int(c["counts"]) for c in counts if not wanted or c["values"] in wanted}
        for pid in here:
            if pid in where:
                raise DataError(
                    f"{path}: patient {pid!r} has readings in {where[pid]} and in {fragment.path}; "
                    "streamed training needs each patient's readings in one data file (write "
                    "the data partitioned by patient, or set data.streaming=false)"
                )
            where[pid] = fragment.path
        if here:
            files.append(fragment.path)
            patients.append(sorted(here))
            rows.append(here)
    absent = sorted(wanted - set(where))
    if absent:
        raise DataError(
            f"{path}: series {absent[0]!r} not found in column {d.series_col!r} "
            f"(data.series names {len(absent)} absent patients)"
        )
    if not files:
        raise DataError(f"{path}: no rows")
    return Shards(str(path), files, patients, rows)


def read_readings(
    d: MonitorDataConfig, path: str | Path, fmt: str, columns: list[str], series: list[str] | tuple = ()
) -> SeriesFrame:
    """Readings read and checked under `d`'s columns and rules, every channel holding values."""
    frame = load_series(
        path,
        timestamp_col=d.timestamp_col,
        series_col=d.series_col,
        value_cols=columns,
        series=series,
        series_name=d.series_name,
        nan_policy="keep",
        duplicates=d.duplicates,
        fmt=fmt,
    )
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
    require_channels(channels_seen(frame, channels), channels, frame.source, len(frame))


def channels_seen(frame: SeriesFrame, channels: list[str]) -> np.ndarray:
    """Per channel: whether it has at least one reading in `frame`."""
    return ~np.isnan(frame.values[:, [frame.columns.index(c) for c in channels]]).all(axis=0)


def require_channels(seen: np.ndarray, channels: list[str], source: str, rows: int) -> None:
    """`check_channels` over data read in parts (`seen`: `channels_seen` of every part, or-ed)."""
    for c, ok in zip(channels, seen):
        if not ok:
            raise DataError(f"{source}: column {c!r} (one of data.channels) has no values in any of its {rows} rows")


# --- texts: what the reviews classifier and the language model read -------------------------

TEXT_COLUMN = "text"  # what a served or batch reviews model reads (else its training text column)
PROMPT_COLUMN = "prompt"  # what a served or batch language model reads


def check_text_column(path: str | Path, fmt: str, accepted: list[str]) -> None:
    """The first of `accepted` in a batch input must hold text: an integer column (star
    ratings mapped as the text) is refused, naming the file and column, rather than answered
    row by row with notes. CSV columns carry no type (every column can be read as text)."""
    import pyarrow as pa

    from rnnpipe.io import open_dataset

    dataset, kind = open_dataset(path, fmt)
    present = [c for c in accepted if c in dataset.schema.names]
    if kind == "csv" or not present:
        return
    t = dataset.schema.field(present[0]).type
    if not (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_null(t)
        or pa.types.is_dictionary(t)
    ):
        raise DataError(f"{path}: column {present[0]!r} holds {t} values, expected text")


def check_reviews_input(raw_config: dict[str, Any], path: str | Path, fmt: str = "auto") -> None:
    check_text_column(path, fmt, [TEXT_COLUMN, raw_config["data"]["text_col"]])


def check_prompts_input(raw_config: dict[str, Any], path: str | Path, fmt: str = "auto") -> None:
    check_text_column(path, fmt, [PROMPT_COLUMN])
