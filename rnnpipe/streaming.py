"""Training on data sets larger than memory: windows streamed shard by shard.

`ShardStream` reads a partitioned dataset one file at a time, keeps the patients of one part
(train / val / test, assigned by a stable hash of the patient id, so no global pass and no
patient in two parts), resamples them, scales them with an already fitted preprocessor, and
yields batches of windows. At most one shard's rows are in memory (plus the scaler's fitting
sample, `fit_streaming_preprocessor(max_rows=...)`). It has the same
`batches` / `__len__` / `to` interface as `WindowSet`, so the one fit loop trains on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import torch

from rnnpipe.config import MonitorConfig
from rnnpipe.errors import DataError
from rnnpipe.features.events import future_event_labels
from rnnpipe.features.splits import PARTS, Split
from rnnpipe.features.windows import WindowSet, window_ends
from rnnpipe.io import SeriesFrame, load_series
from rnnpipe.ingest import value_columns
from rnnpipe.monitor import MonitorPreprocessor


def part_of(patient_id: str, train: float, val: float) -> str:
    """Stable assignment of a patient to a part: the same id always lands in the same part."""
    u = int.from_bytes(hashlib.sha1(patient_id.encode()).digest()[:8], "big") / 2**64
    return "train" if u < train else "val" if u < train + val else "test"


def shard_files(path: str | Path) -> list[str]:
    files = sorted(ds.dataset(str(path), format="parquet", partitioning="hive").files)
    if not files:
        raise DataError(f"{path}: no Parquet files")
    return files


def _load_part(file: str, cfg: MonitorConfig, part: str) -> SeriesFrame | None:
    d = cfg.data
    frame = load_series(file, timestamp_col=d.timestamp_col, series_col=d.series_col, series_name=d.series_name,
                        value_cols=value_columns(cfg), nan_policy="keep", duplicates=d.duplicates)
    keep = [i for i, s in enumerate(frame.series) if part_of(s, cfg.split.train, cfg.split.val) == part]
    if not keep:
        return None
    rows = np.concatenate([np.arange(*frame.bounds(i)) for i in keep])
    offsets = np.concatenate([[0], np.cumsum(frame.lengths()[keep])])
    return SeriesFrame([frame.series[i] for i in keep], offsets, frame.timestamps[rows],
                       frame.values[rows], frame.columns, frame.source, frame.fingerprint)


def _whole(frame: SeriesFrame, part: str) -> Split:
    """Every row of every series in `part`."""
    if part not in PARTS:
        raise ValueError(part)
    lo, hi = frame.offsets[:-1], frame.offsets[1:]
    val_start = hi if part == "train" else lo
    test_start = lo if part == "test" else hi
    return Split(np.column_stack([lo, val_start, test_start, hi]))


def fit_streaming_preprocessor(path: str | Path, cfg: MonitorConfig, max_rows: int = 300_000) -> MonitorPreprocessor:
    """Fit the scaler on the training patients of the first shards, up to `max_rows` readings
    (a sample: memory stays bounded whatever the size of the data set)."""
    frames, n = [], 0
    for f in shard_files(path):
        fr = _load_part(f, cfg, "train")
        if fr is not None:
            frames.append(fr)
            n += len(fr)
        if n >= max_rows:
            break
    if not frames:
        raise DataError(f"{path}: no training patients")
    pre = MonitorPreprocessor(cfg)
    grids = [pre.grid(f) for f in frames]
    offsets = np.concatenate([[0], np.cumsum(np.concatenate([g.lengths() for g in grids]))])
    grid = SeriesFrame(sum((g.series for g in grids), []), offsets,
                       np.concatenate([g.timestamps for g in grids]), np.concatenate([g.values for g in grids]),
                       grids[0].columns, str(path), "")
    return pre.fit(grid, _whole(grid, "train"))


class ShardStream:
    def __init__(self, path: str | Path, cfg: MonitorConfig, preprocessor: MonitorPreprocessor,
                 part: str, device: torch.device | str = "cpu", stride: int = 1):
        """`stride` keeps every stride-th window (all patients, fewer overlapping windows)."""
        self.path, self.cfg, self.pre, self.part = str(path), cfg, preprocessor, part
        self.stride = stride
        self.files = shard_files(path)
        self.device = torch.device(device)
        self._estimate: int | None = None

    def to(self, device) -> "ShardStream":
        s = ShardStream.__new__(ShardStream)
        s.__dict__.update(self.__dict__)
        s.device = torch.device(device)
        return s

    def shard_windows(self, file: str) -> WindowSet | None:
        frame = _load_part(file, self.cfg, self.part)
        if frame is None:
            return None
        grid = self.pre.grid(frame)
        inputs, valid = self.pre.transform(grid)
        events = self.pre.events(grid)
        w = self.cfg.window
        labels = future_event_labels(events, grid.offsets, w.horizon)
        ends = window_ends(_whole(grid, self.part), self.part, w.lookback, w.horizon, valid=valid)
        ends = ends[~np.isnan(labels[ends]) & ~np.isnan(events[ends])][::self.stride]
        return WindowSet(inputs, np.nan_to_num(labels)[:, None], ends, w.lookback)

    def __len__(self) -> int:
        """Windows in the part, estimated from the first shard and the files' row counts
        (exact counting would need a pass over the data)."""
        if self._estimate is None:
            first = self.shard_windows(self.files[0])
            rows = [pq.ParquetFile(f).metadata.num_rows for f in self.files]
            per_row = (len(first) if first is not None else 0) / max(rows[0], 1)
            self._estimate = int(per_row * sum(rows))
        return self._estimate

    def batches(self, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = (torch.randperm(len(self.files), generator=generator).tolist() if shuffle
                 else range(len(self.files)))
        for i in order:
            ws = self.shard_windows(self.files[i])
            if ws is not None and len(ws):
                yield from ws.to(self.device).batches(batch_size, shuffle, generator)
