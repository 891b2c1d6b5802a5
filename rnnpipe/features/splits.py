"""Chronological train / val / test splits, per series."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rnnpipe.errors import ConfigError
from rnnpipe.series import SeriesFrame

PARTS = ("train", "val", "test")


@dataclass
class Split:
    """Per series, absolute row indices [start, val_start, test_start, end) into the frame."""

    bounds: np.ndarray  # (S, 4) int64

    def part(self, name: str) -> np.ndarray:
        """(S, 2) [begin, end) of one part for every series."""
        k = PARTS.index(name)
        return self.bounds[:, k : k + 2]

    def mask(self, name: str, n_rows: int) -> np.ndarray:
        m = np.zeros(n_rows, dtype=bool)
        for lo, hi in self.part(name):
            m[lo:hi] = True
        return m

    def summary(self, frame: SeriesFrame) -> dict[str, dict[str, object]]:
        """Rows and date range of each part of each series (logged with the run)."""
        out: dict[str, dict[str, object]] = {}
        for i, sid in enumerate(frame.series):
            row = {}
            for k, name in enumerate(PARTS):
                lo, hi = int(self.bounds[i, k]), int(self.bounds[i, k + 1])
                row[f"{name}_rows"] = hi - lo
                if hi > lo:
                    row[f"{name}_from"] = str(pd.Timestamp(frame.timestamps[lo]).date())
                    row[f"{name}_to"] = str(pd.Timestamp(frame.timestamps[hi - 1]).date())
            out[sid] = row
        return out


def chronological_split(
    frame: SeriesFrame, train: float = 0.7, val: float = 0.15, val_start: str = "", test_start: str = ""
) -> Split:
    """Split each series in time order, by fractions of its length or at cut dates.

    With cut dates, rows before `val_start` train, rows from `test_start` on test.
    """
    bounds = np.empty((len(frame.series), 4), dtype=np.int64)
    if val_start or test_start:
        v, t = np.datetime64(pd.Timestamp(val_start)), np.datetime64(pd.Timestamp(test_start))
        if not v < t:
            raise ConfigError(f"split.val_start={val_start} must come before split.test_start={test_start}")
    for i in range(len(frame.series)):
        lo, hi = frame.bounds(i)
        if val_start:
            ts = frame.timestamps[lo:hi]
            a = lo + int(np.searchsorted(ts, v, side="left"))
            b = lo + int(np.searchsorted(ts, t, side="left"))
        else:
            n = hi - lo
            a = lo + int(np.floor(n * train))
            b = a + int(np.floor(n * val))
        bounds[i] = (lo, a, b, hi)
    return Split(bounds)


def grouped_parts(n: int, train: float = 0.7, val: float = 0.15, seed: int = 0) -> np.ndarray:
    """The part (0 train, 1 val, 2 test) of each of `n` series in their sorted order, shuffled
    with `seed`: the rule of `grouped_split`, also used where the series are never all in
    memory at once (`rnnpipe.pipelines.monitor.streaming`). Needs at least three series."""
    if n < 3:
        raise ConfigError(f"a grouped split needs at least 3 series (patients); the data has {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_train = min(max(1, int(round(n * train))), n - 2)
    n_val = min(max(1, int(round(n * val))), n - n_train - 1)
    part = np.empty(n, dtype=np.int64)
    part[order[:n_train]], part[order[n_train : n_train + n_val]], part[order[n_train + n_val :]] = 0, 1, 2
    return part


def grouped_split(frame: SeriesFrame, train: float = 0.7, val: float = 0.15, seed: int = 0) -> Split:
    """Whole series (patients) to train, val or test, shuffled with `seed`: no series is in two
    parts. Needs at least three series."""
    return split_by_series(frame, grouped_parts(len(frame.series), train, val, seed))


def split_by_series(frame: SeriesFrame, part: np.ndarray) -> Split:
    """Each series wholly in one part: `part[i]` is 0 (train), 1 (val) or 2 (test)."""
    lo, hi = frame.offsets[:-1], frame.offsets[1:]
    return Split(np.column_stack([lo, np.where(part == 0, hi, lo), np.where(part <= 1, hi, lo), hi]))


def stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int = 0) -> dict[str, np.ndarray]:
    """Row indices per part for independent records (e.g. reviews): each label is shared out
    in the same proportions, shuffled with `seed`. `fractions` names the held-out parts
    (e.g. {"val": 0.15, "test": 0.2}); "train" gets the rest. Every part gets at least one
    record of each label that has enough (one per part plus one for train)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {"train": [], **{k: [] for k in fractions}}
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n, start = len(idx), 0
        for part, frac in fractions.items():
            k = int(round(n * frac))
            k = max(k, 1) if n > len(fractions) else k
            out[part].append(idx[start : start + k])
            start += k
        out["train"].append(idx[start:])
    return {part: np.sort(np.concatenate(chunks)) for part, chunks in out.items()}
