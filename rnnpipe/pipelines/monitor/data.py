"""The monitor's readings read and checked under its settings (in memory, or as shards for
streamed training), for training and for a batch input; free of torch and MLflow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rnnpipe import settings
from rnnpipe.config import from_dict
from rnnpipe.errors import DataError
from rnnpipe.io import preloadable
from rnnpipe.pipelines.monitor.config import MonitorConfig, MonitorDataConfig
from rnnpipe.series import SeriesFrame, load_series

if TYPE_CHECKING:
    pass


def value_columns(cfg: MonitorConfig) -> list[str]:
    d = cfg.data
    return list(dict.fromkeys([*d.channels, *([d.label_col] if d.label_col else [])]))


@preloadable
def load_monitor_data(cfg: MonitorConfig) -> SeriesFrame | Shards:
    """The readings a config names, every channel checked to hold values; for streamed
    training (`data.streaming`, `streamed`) only the `Shards` they lie in, which are read one
    at a time later (`rnnpipe.pipelines.monitor.streaming`)."""
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


def check_readings(raw_config: dict[str, Any], path: str | Path, fmt: str = "auto", saved: Any = None) -> None:
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
