"""What the monitor pipeline reads from raw readings before any model: the channel grid and
its scaling (`MonitorPreprocessor`), event labels and the window ends of each part, the
counts a split must hold, and an example of the input. No model here: both the in-memory
path (`artefact`) and the streamed one (`streaming`) build on it, and `artefact` dispatches
to either (so the streamed path never imports the in-memory one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rnnpipe.errors import DataError
from rnnpipe.features.events import event_flags, future_event_labels
from rnnpipe.features.resample import resample
from rnnpipe.features.scalers import SeriesScaler
from rnnpipe.features.splits import PARTS, Split
from rnnpipe.features.windows import window_ends
from rnnpipe.pipelines.monitor.config import MonitorConfig
from rnnpipe.series import SeriesFrame, series_id_column

GROUPED = "grouped by patient"  # the split kind of 3 or more patients (`split_kind`)


class MonitorPreprocessor:
    """Raw readings -> a fixed grid -> scaled input channels, fitted on training rows only.

    Inputs per channel: its value, its one-step change (`window.deltas`), and optionally the
    `observed` flag (`resample.mark`). Scaling is pooled over patients, so a patient never
    seen in training is scaled like the training population.
    """

    def __init__(self, cfg: MonitorConfig):
        self.cfg = cfg

    def grid(self, frame: SeriesFrame) -> SeriesFrame:
        r = self.cfg.resample
        return resample(frame, r.step, r.max_gap, r.fill, r.mark)

    def _raw_inputs(self, grid: SeriesFrame) -> tuple[np.ndarray, list[str]]:
        chans = self.cfg.data.channels
        x = grid.values[:, [grid.columns.index(c) for c in chans]]
        cols, names = [x], list(chans)
        if self.cfg.window.deltas:
            d = np.full_like(x, np.nan)
            d[1:] = x[1:] - x[:-1]
            d[grid.offsets[:-1]] = np.nan
            cols.append(d)
            names += [f"{c}_delta" for c in chans]
        if self.cfg.resample.mark:
            cols.append(grid.values[:, [grid.columns.index("observed")]])
            names.append("observed")
        return np.column_stack(cols), names

    def fit(self, grid: SeriesFrame, split: Split) -> MonitorPreprocessor:
        X, self.input_names_ = self._raw_inputs(grid)
        rows = split.mask("train", len(grid)) & ~np.isnan(X).any(axis=1)
        self.scaler_ = SeriesScaler(self.cfg.window.scaler).fit(X[rows], np.zeros(rows.sum(), int), 1)
        return self

    def valid(self, grid: SeriesFrame) -> np.ndarray:
        """The (T,) mask of rows whose inputs are fully known (no scaler needed)."""
        return ~np.isnan(self._raw_inputs(grid)[0]).any(axis=1)

    def transform(self, grid: SeriesFrame) -> tuple[np.ndarray, np.ndarray]:
        """-> inputs (T, C) float32 (0 where unknown) and the (T,) mask of rows fully known."""
        X, _ = self._raw_inputs(grid)
        valid = ~np.isnan(X).any(axis=1)
        Z = self.scaler_.transform(X, np.zeros(len(X), int))
        return np.nan_to_num(Z).astype(np.float32), valid

    def targets(self, grid: SeriesFrame) -> tuple[np.ndarray, np.ndarray]:
        """-> (event now, event within the next window.horizon steps), NaN where unknown."""
        events = self.events(grid)
        return events, future_event_labels(events, grid.offsets, self.cfg.window.horizon)

    def events(self, grid: SeriesFrame) -> np.ndarray:
        d = self.cfg.data
        if d.label_col:
            col = grid.values[:, grid.columns.index(d.label_col)]
            return np.where(np.isnan(col), np.nan, (col >= 0.5).astype(np.float64))
        return event_flags(grid, d.event)

    def to_dict(self) -> dict[str, Any]:
        return {"input_names_": self.input_names_, "scaler_": self.scaler_.to_dict()}

    @classmethod
    def from_dict(cls, cfg: MonitorConfig, d: dict[str, Any]) -> MonitorPreprocessor:
        p = cls(cfg)
        p.input_names_ = d["input_names_"]
        p.scaler_ = SeriesScaler.from_dict(d["scaler_"])
        return p


@dataclass
class Chunk:
    """Whole patients on the grid, with the windows of one part ending in them: what evaluation
    scores at a time (all of the data in memory, or one shard of a streamed data set)."""

    raw: np.ndarray  # (T, channels) readings on the grid, unscaled (the baselines' inputs)
    inputs: np.ndarray  # (T, C) scaled model inputs
    events: np.ndarray  # (T,) event now (NaN unknown)
    labels: np.ndarray  # (T,) event within the next K steps
    offsets: np.ndarray  # patients' bounds on the grid
    ends: np.ndarray  # last rows of the part's windows

    @property
    def y(self) -> np.ndarray:
        return self.labels[self.ends]

    @property
    def onset(self) -> np.ndarray:
        """Mask over the windows: the last observed reading is not an event."""
        return self.events[self.ends] == 0


def part_ends(
    split: Split, part: str, cfg: MonitorConfig, valid: np.ndarray, labels: np.ndarray, events: np.ndarray
) -> np.ndarray:
    """The part's windows: none spans a gap or a split boundary, each has a known label."""
    w = cfg.window
    e = window_ends(split, part, w.lookback, w.horizon, valid=valid)
    return e[~np.isnan(labels[e]) & ~np.isnan(events[e])]


def window_counts(labels: np.ndarray, events: np.ndarray, ends: np.ndarray) -> dict[str, int]:
    onset = events[ends] == 0
    return {
        "windows": len(ends),
        "positive": int(labels[ends].sum()),
        "onset": int(onset.sum()),
        "onset_positive": int(labels[ends][onset].sum()),
    }


def channel_values(grid: SeriesFrame, cfg: MonitorConfig) -> np.ndarray:
    return grid.values[:, [grid.columns.index(ch) for ch in cfg.data.channels]]


def check_event_counts(counts: dict[str, dict[str, int]], split_kind: str, cfg: MonitorConfig, source: str) -> None:
    """Refuse, before training, a split that cannot train or judge a classifier: every part
    needs a complete window, the training windows must hold both classes, and val and test at
    least `split.min_events` event windows each: onset windows for the part whose decision is
    made on onset windows (val when classify.threshold_on=onset, test when register.metric is
    an onset metric)."""
    w = cfg.window
    for part in PARTS:
        if counts[part]["windows"] == 0:
            raise DataError(
                f"{source}: no complete {part} window: every candidate spans a gap "
                f"longer than resample.max_gap={cfg.resample.max_gap} or the data is "
                f"shorter than window.lookback + window.horizon"
            )
    label = f"label = {cfg.data.event or cfg.data.label_col} within {w.horizon} steps"
    train = counts["train"]
    if train["positive"] in (0, train["windows"]):
        what = "no event" if train["positive"] == 0 else "only events"
        raise DataError(
            f"{source}: the training windows hold {what} ({train['windows']} windows, {label}); "
            "a classifier needs both classes in train"
        )
    onset_for = {"val": cfg.classify.threshold_on == "onset", "test": cfg.register.metric.endswith("_onset")}
    need = cfg.split.min_events
    for part in ("val", "test"):
        key = "onset_positive" if onset_for[part] else "positive"
        if counts[part][key] < need:
            what = "onset event windows" if onset_for[part] else "event windows"
            why = (
                "the decision threshold is chosen on them"
                if part == "val"
                else f"the gate's {cfg.register.metric} is computed on them"
            )
            per_part = ", ".join(
                f"{q} {counts[q]['positive']} (onset {counts[q]['onset_positive']})" for q in ("train", "val", "test")
            )
            if split_kind == GROUPED:  # what can move depends on how the split was made
                fix = (
                    "Draw other patients for each part (split.seed), move the fractions "
                    "(split.train / split.val), or add patients"
                )
            else:
                fix = (
                    "Move the cut (split.train / split.val, or the cut dates split.val_start / split.test_start), "
                    "split by patient (3 or more patients and no cut dates), or use a longer recording"
                )
            raise DataError(
                f"{source}: the {part} part holds {counts[part][key]} {what} ({label}; {why}); val and test "
                f"each need at least split.min_events={need}. Event windows per part: {per_part}, "
                f"{split_kind} split. {fix}"
            )


def readings_example(frame: SeriesFrame, cfg: MonitorConfig, n_series: int = 2) -> pd.DataFrame:
    """Raw recent readings of a few patients, as a user would send them."""
    d, parts = cfg.data, []
    n = int(cfg.window.lookback * 1.5) + 5
    for i, sid in enumerate(frame.series[:n_series]):
        lo, hi = frame.bounds(i)
        rows = slice(max(lo, hi - n), hi)
        part = {**series_id_column(d.series_col, sid), d.timestamp_col: frame.timestamps[rows]}
        for c in d.channels:
            part[c] = frame.values[rows, frame.columns.index(c)]
        parts.append(pd.DataFrame(part))
    return pd.concat(parts, ignore_index=True)
