"""Forecasting data made ready for training: the preprocessing (scaling, target encoding,
calendar and known inputs) fitted on the training part, and the windows of every part."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rnnpipe.errors import DataError
from rnnpipe.features import calendar
from rnnpipe.features.scalers import SeriesScaler
from rnnpipe.features.splits import PARTS, Split
from rnnpipe.features.targets import TargetEncoding
from rnnpipe.features.windows import WindowSet, window_ends
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.series import SeriesFrame


def infer_step(frame: SeriesFrame) -> str:
    """The sampling step as a pandas offset: "B" for business-daily data, else the median gap."""
    deltas = np.concatenate([np.diff(frame.timestamps[lo:hi]) for lo, hi in zip(frame.offsets[:-1], frame.offsets[1:])])
    if len(deltas) == 0:
        return "D"
    median = pd.Timedelta(np.median(deltas.astype("int64")), unit="ns")
    weekend = (pd.DatetimeIndex(frame.timestamps).dayofweek >= 5).any()
    if median == pd.Timedelta(days=1) and not weekend:
        return "B"
    return pd.tseries.frequencies.to_offset(median).freqstr


class ForecastPreprocessor:
    """Input channels and targets of a forecaster, fitted on the training rows only.

    Channel 0 is the target series encoded as `window.target` says (level, one-step difference
    or log return); further channels are the extra features (`data.features`, then
    `data.known_features`), all scaled per series; then the calendar features of each row's
    timestamp (`data.calendar`; sin and cos, unscaled). The inputs known in advance of a row
    (`future`): its known features (scaled) and its calendar features; a window reads them
    for its forecast steps.
    """

    def __init__(
        self,
        target: str,
        scaler: str,
        lookback: int,
        horizon: int,
        known: list[str] | tuple = (),
        calendar: list[str] | tuple | str = "none",
    ):
        self.encoding = TargetEncoding(target)
        self.scaler_kind, self.lookback, self.horizon = scaler, lookback, horizon
        self.known, self.calendar = list(known), calendar

    def _channels(self, frame: SeriesFrame) -> np.ndarray:
        self.encoding.check(frame.target, frame.series, frame.offsets, frame.timestamps)
        steps = self.encoding.steps(frame.target, frame.offsets)
        return np.column_stack([steps, frame.features]) if frame.features.size else steps[:, None]

    def codes(self, frame: SeriesFrame) -> np.ndarray:
        index = {s: i for i, s in enumerate(self.series_)}
        per_series = np.array([index.get(s, -1) for s in frame.series], dtype=np.int64)
        return per_series[frame.codes()]

    @property
    def input_size(self) -> int:
        return 1 + len(self.feature_names_) + 2 * len(self.calendar_)

    @property
    def known_size(self) -> int:
        """Inputs known in advance per forecast step: known features and calendar features."""
        return len(self.known_) + 2 * len(self.calendar_)

    def _known_columns(self) -> list[int]:
        """Columns of the inputs that are known in advance (`future`)."""
        n = 1 + len(self.feature_names_)
        return [1 + self.feature_names_.index(k) for k in self.known_] + list(range(n, self.input_size))

    def fit(self, frame: SeriesFrame, split: Split) -> ForecastPreprocessor:
        self.series_ = list(frame.series)
        self.feature_names_ = list(frame.feature_names)
        self.step_ = infer_step(frame)
        self.known_ = list(self.known)
        span = pd.Timedelta(int(frame.timestamps.max().astype("int64") - frame.timestamps.min().astype("int64")))
        self.calendar_ = calendar.choose(self.calendar, self.step_, span)
        X = self._channels(frame)
        rows = split.mask("train", len(frame)) & ~np.isnan(X).any(axis=1)
        self.scaler_ = SeriesScaler(self.scaler_kind).fit(X[rows], self.codes(frame)[rows], n_groups=len(self.series_))
        return self

    def transform(self, frame: SeriesFrame) -> tuple[np.ndarray, np.ndarray]:
        """-> inputs (T, F) and scaled targets (T, H), float32; rows no window uses hold 0."""
        codes = self.codes(frame)
        inputs = self.scaler_.transform(self._channels(frame), codes)
        if self.calendar_:
            inputs = np.column_stack([inputs, calendar.calendar_features(frame.timestamps, self.calendar_)])
        targets = self.encoding.encode(frame.target, frame.offsets, self.horizon)
        center, scale = self.scaler_.column_center(codes), self.scaler_.column_scale(codes)
        targets = ((targets - center[:, None]) if self.encoding.centered else targets) / scale[:, None]
        return (np.nan_to_num(inputs).astype(np.float32), np.nan_to_num(targets).astype(np.float32))

    def future(self, inputs: np.ndarray) -> np.ndarray:
        """(T, K) the inputs of each row that are known in advance, from `transform`'s inputs."""
        return np.ascontiguousarray(inputs[:, self._known_columns()])

    def future_block(self, known: np.ndarray, timestamps: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """(n, K) inputs known in advance for forecast steps given as raw known-feature values
        (n, len(known_)), their timestamps and series codes: scaled as in training."""
        cols = [
            np.nan_to_num((known[:, j] - self.scaler_.column_center(codes, c)) / self.scaler_.column_scale(codes, c))
            for j, c in enumerate(1 + self.feature_names_.index(k) for k in self.known_)
        ]
        out = np.column_stack(cols) if cols else np.zeros((len(timestamps), 0))
        if self.calendar_:
            out = np.column_stack([out, calendar.calendar_features(timestamps, self.calendar_)])
        return out.astype(np.float32)

    def decode(self, outputs: np.ndarray, frame: SeriesFrame, ends: np.ndarray) -> np.ndarray:
        """Model outputs for windows ending at rows `ends` -> forecasts in the target's units."""
        codes = self.codes(frame)[ends]
        scaled = outputs * self.scaler_.column_scale(codes)[:, None]
        if self.encoding.centered:
            scaled = scaled + self.scaler_.column_center(codes)[:, None]
        return self.encoding.decode(scaled, frame.target[ends])

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.encoding.kind,
            "scaler": self.scaler_kind,
            "lookback": self.lookback,
            "horizon": self.horizon,
            "series_": self.series_,
            "feature_names_": self.feature_names_,
            "step_": self.step_,
            "known_": self.known_,
            "calendar_": self.calendar_,
            "scaler_": self.scaler_.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ForecastPreprocessor:
        # saved before inputs known in advance existed: none
        p = cls(d["target"], d["scaler"], d["lookback"], d["horizon"], d.get("known_", []), d.get("calendar_", []))
        p.series_, p.feature_names_, p.step_ = d["series_"], d["feature_names_"], d["step_"]
        p.known_, p.calendar_ = list(d.get("known_", [])), list(d.get("calendar_", []))
        p.scaler_ = SeriesScaler.from_dict(d["scaler_"])
        return p


@dataclass
class ForecastPrepared:
    """Everything training and evaluation need, made once from one frame and split."""

    frame: SeriesFrame
    split: Split
    preprocessor: ForecastPreprocessor
    ends: dict[str, np.ndarray]
    inputs: np.ndarray
    targets: np.ndarray
    future: np.ndarray  # (T, K) inputs known in advance of each row (K may be 0)

    def windows(self, part: str) -> WindowSet:
        return WindowSet(self.inputs, self.targets, self.ends[part], self.preprocessor.lookback, self.future)

    def counts(self) -> dict[str, int]:
        return {part: len(e) for part, e in self.ends.items()}

    @property
    def fingerprint(self) -> str:
        return self.frame.fingerprint

    @property
    def source(self) -> str:
        return str(self.frame.source)


def prepare(frame: SeriesFrame, split: Split, cfg: ForecastConfig) -> ForecastPrepared:
    """Fit the preprocessing on the training part and index the windows of every part.

    Rows with a missing value (a gap left by resampling) are never inside a window.
    """
    w, d = cfg.window, cfg.data
    pre = ForecastPreprocessor(w.target, w.scaler, w.lookback, w.horizon, d.known_features, d.calendar).fit(
        frame, split
    )
    for i, sid in enumerate(frame.series):
        one = Split(split.bounds[i : i + 1])
        for k, part in enumerate(PARTS):
            has_rows = split.bounds[i, k + 1] > split.bounds[i, k]
            if has_rows and len(window_ends(one, part, w.lookback, w.horizon, pre.encoding.skip)) == 0:
                lo, a, b, hi = split.bounds[i]
                raise DataError(
                    f"{frame.source}: series {sid!r} is too short for the window: its {hi - lo} rows "
                    f"(train {a - lo}, val {b - a}, test {hi - b}) give no {part} window with "
                    f"window.lookback={w.lookback} and window.horizon={w.horizon}; leave it out "
                    f"with data.series or shorten window.lookback"
                )
    valid = ~np.isnan(frame.values).any(axis=1)
    ends = {
        part: window_ends(split, part, w.lookback, w.horizon, pre.encoding.skip, valid=None if valid.all() else valid)
        for part in PARTS
    }
    for part, e in ends.items():
        if len(e) == 0:
            raise DataError(f"{frame.source}: no complete {part} window (gaps everywhere?)")
    inputs, targets = pre.transform(frame)
    return ForecastPrepared(frame, split, pre, ends, inputs, targets, pre.future(inputs))
