"""Monitor training on data sets larger than memory: the same steps, shard by shard.

A shard is one data file of a dataset (a file, a folder or a hive-partitioned dataset), and
holds whole patients (`rnnpipe.pipelines.monitor.data.scan_shards` refuses a patient split over files). At
most one shard's readings are in memory at a time, plus what is bounded on purpose:

- the split: the patients' ids, put in parts by the rule of the in-memory path
  (`grouped_parts` over the sorted ids, `split.seed`), so both paths split alike;
- the fitted statistics: the scaler and the baselines are fitted on a seeded sample of
  training patients of at most `data.stream_sample_rows` readings (every training patient
  when the training part is smaller: then they equal the in-memory path's);
- evaluation: one score per held-out window and scorer (`rnnpipe.pipelines.monitor.artefact.evaluate_monitor`).

`prepare_streamed` makes one pass over the shards to check every reading (the in-memory
path's checks, file by file) and to count each part's windows exactly; `StreamedMonitor`
then offers what `MonitorPrepared` offers: `windows(part)` (a `ShardStream`, which the shared
fit loop trains on like a `WindowSet`), `chunks(part)` for evaluation, `counts()`, the
preprocessor and an input example. The artefact is the same `MonitorPipeline`.

Without shuffling, a `ShardStream` yields exactly the batches of the in-memory `WindowSet`
(batches run on across shard ends); with shuffling (training), the shards come in a seeded
random order and windows are shuffled within a shard, not across the whole part.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from rnnpipe.features.events import event_flags
from rnnpipe.features.splits import PARTS, grouped_parts, split_by_series
from rnnpipe.features.windows import WindowSet
from rnnpipe.pipelines.monitor.config import MonitorConfig
from rnnpipe.pipelines.monitor.data import Shards, channels_seen, require_channels, value_columns
from rnnpipe.pipelines.monitor.prepare import (
    GROUPED,
    Chunk,
    MonitorPreprocessor,
    channel_values,
    check_event_counts,
    part_ends,
    readings_example,
    window_counts,
)
from rnnpipe.series import SeriesFrame, load_series

PART_INDEX = {p: i for i, p in enumerate(PARTS)}
OnShard = Callable[[str, int, int], None]  # (what, shards done, shards in all)


def read_shard(shards: Shards, k: int, cfg: MonitorConfig, patients: list[str] | None = None) -> SeriesFrame:
    """The readings of shard `k` (only `patients` of it, when given), checked as the
    in-memory path checks them; errors name the file and row."""
    d = cfg.data
    keep = patients if patients is not None else (shards.patients[k] if d.series else ())
    return load_series(
        shards.path,
        timestamp_col=d.timestamp_col,
        series_col=d.series_col,
        series_name=d.series_name,
        value_cols=value_columns(cfg),
        series=keep,
        nan_policy="keep",
        duplicates=d.duplicates,
        fmt=d.format,
        files=[shards.files[k]],
    )


def _concat(frames: list[SeriesFrame], source: str) -> SeriesFrame:
    """Frames of distinct patients as one, patients in sorted order (as one read would give)."""
    pieces = sorted(((f, i) for f in frames for i in range(len(f.series))), key=lambda t: t[0].series[t[1]])
    lengths = np.array([f.bounds(i)[1] - f.bounds(i)[0] for f, i in pieces], dtype=np.int64)
    rows = [slice(*f.bounds(i)) for f, i in pieces]
    return SeriesFrame(
        [f.series[i] for f, i in pieces],
        np.concatenate([[0], np.cumsum(lengths)]),
        np.concatenate([f.timestamps[r] for (f, _), r in zip(pieces, rows)]),
        np.concatenate([f.values[r] for (f, _), r in zip(pieces, rows)]),
        frames[0].columns,
        source,
        "",
    )


@dataclass
class StreamedMonitor:
    """A streamed data set, prepared: the `MonitorPrepared` interface without the data."""

    shards: Shards
    cfg: MonitorConfig
    parts: dict[str, int]  # patient -> 0 train, 1 val, 2 test
    preprocessor: MonitorPreprocessor
    counts_: dict[str, dict[str, int]]
    shard_windows: np.ndarray  # (shards, 3): windows of each part in each shard
    fingerprint: str
    sample: dict[str, int]  # the fitting sample: patients, readings
    baseline_data_: tuple[np.ndarray, np.ndarray, np.ndarray]
    example: pd.DataFrame
    split_kind: str = GROUPED
    on_shard: OnShard | None = field(default=None, repr=False)

    @property
    def source(self) -> str:
        return self.shards.source

    @property
    def patients(self) -> list[str]:
        return sorted(self.parts)

    def counts(self) -> dict[str, dict[str, int]]:
        return self.counts_

    def baseline_data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.baseline_data_

    def _shard_chunk(self, k: int, part: str) -> Chunk | None:
        """Shard `k`'s patients of `part` on the grid, scaled, with their windows."""
        mine = [p for p in self.shards.patients[k] if self.parts.get(p) == PART_INDEX[part]]
        if not mine:
            return None
        frame = read_shard(self.shards, k, self.cfg, mine)
        pre = self.preprocessor
        grid = pre.grid(frame)
        inputs, valid = pre.transform(grid)
        events, labels = pre.targets(grid)
        split = split_by_series(grid, np.full(len(grid.series), PART_INDEX[part]))
        ends = part_ends(split, part, self.cfg, valid, labels, events)
        return Chunk(channel_values(grid, self.cfg), inputs, events, labels, grid.offsets, ends)

    def chunks(self, part: str) -> Iterator[Chunk]:
        """The part's windows shard by shard, for evaluation."""
        todo = np.flatnonzero(self.shard_windows[:, PART_INDEX[part]])
        for done, k in enumerate(todo, 1):
            ch = self._shard_chunk(int(k), part)
            if ch is not None and len(ch.ends):
                yield ch
            if self.on_shard:
                self.on_shard(f"evaluate {part}", done, len(todo))

    def windows(self, part: str) -> ShardStream:
        return ShardStream(self, part)

    def train_readings(self) -> Iterator[np.ndarray]:
        """The training part's readings on the grid, shard by shard (a shard's training
        patients are wholly training data: the split is by patient)."""
        for ch in self.chunks("train"):
            yield ch.raw


class ShardStream:
    """The windows of one part of a streamed data set, with `WindowSet`'s `batches` /
    `__len__` / `to`: what the shared fit loop trains on. Its length is exact (counted when
    the data set was prepared)."""

    def __init__(self, data: StreamedMonitor, part: str, device: torch.device | str = "cpu"):
        self.data, self.part, self.device = data, part, torch.device(device)
        self.shards = np.flatnonzero(data.shard_windows[:, PART_INDEX[part]])

    def __len__(self) -> int:
        return int(self.data.shard_windows[:, PART_INDEX[self.part]].sum())

    def to(self, device) -> ShardStream:
        return ShardStream(self.data, self.part, device)

    def shard_sets(self, order) -> Iterator[WindowSet]:
        L = self.data.cfg.window.lookback
        for done, k in enumerate(order, 1):
            ch = self.data._shard_chunk(int(self.shards[k]), self.part)
            if ch is not None and len(ch.ends):
                yield WindowSet(ch.inputs, np.nan_to_num(ch.labels)[:, None], ch.ends, L).to(self.device)
            if self.data.on_shard:
                self.data.on_shard(self.part, done, len(order))

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of `batch_size` windows; a shard's last windows run on into the next
        shard's, so only the part's last batch is short (as with a `WindowSet`)."""
        n = len(self.shards)
        order = torch.randperm(n, generator=generator).tolist() if shuffle and n > 1 else range(n)
        held_x: list[torch.Tensor] = []
        held_y: list[torch.Tensor] = []
        held = 0
        for ws in self.shard_sets(order):
            for x, y in ws.batches(batch_size, shuffle, generator):
                if held == 0 and len(y) == batch_size:
                    yield x, y
                    continue
                start = 0
                while start < len(y):
                    take = min(batch_size - held, len(y) - start)
                    held_x.append(x[start : start + take])
                    held_y.append(y[start : start + take])
                    held, start = held + take, start + take
                    if held == batch_size:
                        yield torch.cat(held_x), torch.cat(held_y)
                        held_x, held_y, held = [], [], 0
        if held:
            yield torch.cat(held_x), torch.cat(held_y)


def prepare_streamed(
    shards: Shards, cfg: MonitorConfig, on_shard: OnShard | None = None, progress: bool | None = None
) -> StreamedMonitor:
    """Split the patients, read every shard once (checks, exact window counts, fingerprint),
    and fit the scaler and the baselines' data on a seeded sample of training patients."""
    d = cfg.data
    ids = shards.series
    part_of = grouped_parts(len(ids), cfg.split.train, cfg.split.val, cfg.split.seed)
    parts = dict(zip(ids, part_of.tolist()))
    pre = MonitorPreprocessor(cfg)
    counts = {p: {"windows": 0, "positive": 0, "onset": 0, "onset_positive": 0} for p in PARTS}
    per_shard = np.zeros((len(shards.files), len(PARTS)), dtype=np.int64)
    seen = np.zeros(len(d.channels), dtype=bool)
    digest = hashlib.sha256()
    bar = tqdm(
        range(len(shards.files)),
        desc="reading shards",
        unit="shard",
        leave=False,
        disable=None if progress is None else not progress,
    )
    for k in bar:
        frame = read_shard(shards, k, cfg)
        if d.label_col:
            event_flags(frame, label_col=d.label_col)  # 0/1 check on the raw readings
        digest.update(frame.fingerprint.encode())
        seen |= channels_seen(frame, d.channels)
        grid = pre.grid(frame)
        valid = pre.valid(grid)  # before any scaler is fitted
        events, labels = pre.targets(grid)
        split = split_by_series(grid, np.array([parts[s] for s in grid.series]))
        for j, part in enumerate(PARTS):
            e = part_ends(split, part, cfg, valid, labels, events)
            per_shard[k, j] = len(e)
            for key, v in window_counts(labels, events, e).items():
                counts[part][key] += v
        if on_shard:
            on_shard("read", k + 1, len(shards.files))
    require_channels(seen, d.channels, shards.source, len(shards))
    kind = GROUPED
    check_event_counts(counts, kind, cfg, shards.source)

    # the fitting sample: training patients in a seeded random order, up to the row budget
    rows = {p: n for r in shards.rows for p, n in r.items()}
    train = [p for p in ids if parts[p] == 0]
    chosen, budget = set(), d.stream_sample_rows
    for i in np.random.default_rng(cfg.split.seed).permutation(len(train)):
        if budget <= 0:
            break
        chosen.add(train[i])
        budget -= rows[train[i]]
    frames = []
    for k, ps in enumerate(shards.patients):
        mine = [p for p in ps if p in chosen]
        if mine:
            frames.append(read_shard(shards, k, cfg, mine))
    sample = _concat(frames, shards.source)
    grid = pre.grid(sample)
    split = split_by_series(grid, np.zeros(len(grid.series), dtype=np.int64))
    pre.fit(grid, split)
    events, labels = pre.targets(grid)
    e = part_ends(split, "train", cfg, pre.valid(grid), labels, events)
    return StreamedMonitor(
        shards,
        cfg,
        parts,
        pre,
        counts,
        per_shard,
        digest.hexdigest(),
        {"patients": len(chosen), "readings": len(sample), "of_patients": len(train)},
        (channel_values(grid, cfg), e, labels[e]),
        readings_example(sample, cfg),
        kind,
        on_shard,
    )
