"""The fitted forecasting pipeline: preprocessing + model + config, as one artefact.

Training produces a `ForecastPipeline`; evaluation, the MLflow pyfunc, `rnnpipe predict` and
batch jobs load the same object. There is no second copy of the preprocessing anywhere.

On disk (a directory): `config.json`, `preprocessor.json` (scaler statistics, series, target
encoding, time step) and `weights.pt` (a state dict, not a pickled class).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rnnpipe.config import ForecastConfig, from_dict, to_dict
from rnnpipe.errors import DataError
from rnnpipe.features.scalers import SeriesScaler
from rnnpipe.features.splits import PARTS, Split
from rnnpipe.features.targets import TargetEncoding
from rnnpipe.features.windows import WindowSet, window_ends
from rnnpipe.batch import WHOLE_INPUT
from rnnpipe.ingest import load_forecast_data
from rnnpipe.io import SeriesFrame, series_id_column, to_series_frame
from rnnpipe.models import Forecaster
from rnnpipe.training import predict_batches


def infer_step(frame: SeriesFrame) -> str:
    """The sampling step as a pandas offset: "B" for business-daily data, else the median gap."""
    deltas = np.concatenate([np.diff(frame.timestamps[lo:hi]) for lo, hi in
                             zip(frame.offsets[:-1], frame.offsets[1:])])
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
    or log return); further channels are the extra features. All are scaled per series.
    """

    def __init__(self, target: str, scaler: str, lookback: int, horizon: int):
        self.encoding = TargetEncoding(target)
        self.scaler_kind, self.lookback, self.horizon = scaler, lookback, horizon

    @property
    def min_history(self) -> int:
        return self.lookback + self.encoding.skip

    def _channels(self, frame: SeriesFrame) -> np.ndarray:
        self.encoding.check(frame.target, frame.series, frame.offsets, frame.timestamps)
        steps = self.encoding.steps(frame.target, frame.offsets)
        return np.column_stack([steps, frame.features]) if frame.features.size else steps[:, None]

    def codes(self, frame: SeriesFrame) -> np.ndarray:
        index = {s: i for i, s in enumerate(self.series_)}
        per_series = np.array([index.get(s, -1) for s in frame.series], dtype=np.int64)
        return per_series[frame.codes()]

    def fit(self, frame: SeriesFrame, split: Split) -> "ForecastPreprocessor":
        self.series_ = list(frame.series)
        self.feature_names_ = list(frame.feature_names)
        self.step_ = infer_step(frame)
        X = self._channels(frame)
        rows = split.mask("train", len(frame)) & ~np.isnan(X).any(axis=1)
        self.scaler_ = SeriesScaler(self.scaler_kind).fit(X[rows], self.codes(frame)[rows],
                                                          n_groups=len(self.series_))
        return self

    def transform(self, frame: SeriesFrame) -> tuple[np.ndarray, np.ndarray]:
        """-> inputs (T, F) and scaled targets (T, H), float32; rows no window uses hold 0."""
        codes = self.codes(frame)
        inputs = self.scaler_.transform(self._channels(frame), codes)
        targets = self.encoding.encode(frame.target, frame.offsets, self.horizon)
        center, scale = self.scaler_.column_center(codes), self.scaler_.column_scale(codes)
        targets = ((targets - center[:, None]) if self.encoding.centered else targets) / scale[:, None]
        return (np.nan_to_num(inputs).astype(np.float32),
                np.nan_to_num(targets).astype(np.float32))

    def decode(self, outputs: np.ndarray, frame: SeriesFrame, ends: np.ndarray) -> np.ndarray:
        """Model outputs for windows ending at rows `ends` -> forecasts in the target's units."""
        codes = self.codes(frame)[ends]
        scaled = outputs * self.scaler_.column_scale(codes)[:, None]
        if self.encoding.centered:
            scaled = scaled + self.scaler_.column_center(codes)[:, None]
        return self.encoding.decode(scaled, frame.target[ends])

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.encoding.kind, "scaler": self.scaler_kind, "lookback": self.lookback,
                "horizon": self.horizon, "series_": self.series_,
                "feature_names_": self.feature_names_, "step_": self.step_,
                "scaler_": self.scaler_.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ForecastPreprocessor":
        p = cls(d["target"], d["scaler"], d["lookback"], d["horizon"])
        p.series_, p.feature_names_, p.step_ = d["series_"], d["feature_names_"], d["step_"]
        p.scaler_ = SeriesScaler.from_dict(d["scaler_"])
        return p


@dataclass
class Prepared:
    """Everything training and evaluation need, made once from one frame and split."""

    frame: SeriesFrame
    split: Split
    preprocessor: ForecastPreprocessor
    ends: dict[str, np.ndarray]
    inputs: np.ndarray
    targets: np.ndarray

    def windows(self, part: str) -> WindowSet:
        return WindowSet(self.inputs, self.targets, self.ends[part], self.preprocessor.lookback)

    def counts(self) -> dict[str, int]:
        return {part: len(e) for part, e in self.ends.items()}


def prepare(frame: SeriesFrame, split: Split, cfg: ForecastConfig) -> Prepared:
    """Fit the preprocessing on the training part and index the windows of every part.

    Rows with a missing value (a gap left by resampling) are never inside a window.
    """
    w = cfg.window
    pre = ForecastPreprocessor(w.target, w.scaler, w.lookback, w.horizon).fit(frame, split)
    for i, sid in enumerate(frame.series):
        one = Split(split.bounds[i:i + 1])
        for k, part in enumerate(PARTS):
            has_rows = split.bounds[i, k + 1] > split.bounds[i, k]
            if has_rows and len(window_ends(one, part, w.lookback, w.horizon, pre.encoding.skip)) == 0:
                lo, a, b, hi = split.bounds[i]
                raise DataError(
                    f"{frame.source}: series {sid!r} is too short for the window: its {hi - lo} rows "
                    f"(train {a - lo}, val {b - a}, test {hi - b}) give no {part} window with "
                    f"window.lookback={w.lookback} and window.horizon={w.horizon}; leave it out "
                    f"with data.series or shorten window.lookback")
    valid = ~np.isnan(frame.values).any(axis=1)
    ends = {part: window_ends(split, part, w.lookback, w.horizon, pre.encoding.skip,
                              valid=None if valid.all() else valid) for part in PARTS}
    for part, e in ends.items():
        if len(e) == 0:
            raise DataError(f"{frame.source}: no complete {part} window (gaps everywhere?)")
    inputs, targets = pre.transform(frame)
    return Prepared(frame, split, pre, ends, inputs, targets)


def quantile_column(q: float) -> str:
    """The output column of quantile level q: `q0.1`, `q0.05`, `q0.9`."""
    return f"q{q:g}"


class ForecastPipeline:
    KIND = "forecast"  # what a logged pyfunc model records (`rnnpipe.kinds.artefact_class`)

    def __init__(self, config: ForecastConfig, preprocessor: ForecastPreprocessor,
                 model: Forecaster | None = None):
        self.config, self.preprocessor = config, preprocessor
        if model is None:
            m = config.model
            with torch.random.fork_rng(devices=[]):  # initial weights follow train.seed
                torch.manual_seed(config.train.seed)
                model = Forecaster(1 + len(preprocessor.feature_names_), preprocessor.horizon,
                                   lookback=preprocessor.lookback, highway=m.highway,
                                   cell=m.cell, hidden_size=m.hidden_size, num_layers=m.num_layers,
                                   dropout=m.dropout, bidirectional=m.bidirectional,
                                   pooling=m.pooling, quantiles=m.quantiles)
        self.model = model

    # -- prediction ----------------------------------------------------------------------
    @property
    def quantiles(self) -> tuple[float, ...]:
        return self.model.quantiles

    def quantile_columns(self) -> list[str]:
        """The output columns of the quantile forecasts: `q0.1`, `q0.5`, `q0.9`, ..."""
        return [quantile_column(q) for q in self.quantiles]

    def predict_windows(self, frame: SeriesFrame, ends: np.ndarray, inputs: np.ndarray | None = None,
                        batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray | None]:
        """For the windows ending at rows `ends`, in the target's units: point forecasts
        (N, H), and the quantile forecasts (N, H, Q) in `quantiles` order (None without
        quantiles). Quantiles are sorted after decoding, so they never cross."""
        if inputs is None:
            inputs, _ = self.preprocessor.transform(frame)
        device = next(self.model.parameters()).device
        H = self.preprocessor.horizon
        dummy = np.zeros((len(inputs), H), dtype=np.float32)
        data = WindowSet(inputs, dummy, ends, self.preprocessor.lookback).to(device)
        outputs = predict_batches(self.model, data, batch_size).reshape(len(ends), H, -1)
        point = self.preprocessor.decode(outputs[:, :, 0], frame, ends)
        if outputs.shape[2] == 1:
            return point, None
        bands = np.stack([self.preprocessor.decode(outputs[:, :, 1 + j], frame, ends)
                          for j in range(outputs.shape[2] - 1)], axis=-1)
        return point, np.sort(bands, axis=-1)

    def forecast_windows(self, frame: SeriesFrame, ends: np.ndarray,
                         inputs: np.ndarray | None = None, batch_size: int = 2048) -> np.ndarray:
        """Point forecasts (N, H), in the target's units, for the windows ending at rows `ends`."""
        return self.predict_windows(frame, ends, inputs, batch_size)[0]

    def predict_frame(self, frame: SeriesFrame) -> pd.DataFrame:
        need = self.preprocessor.min_history
        short = [(s, int(n)) for s, n in zip(frame.series, frame.lengths()) if n < need]
        if short:
            s, n = short[0]
            raise DataError(f"series {s!r} has {n} rows of history; the model needs at least {need} "
                            f"(window.lookback={self.preprocessor.lookback}"
                            f"{' + 1 for the first change' if self.preprocessor.encoding.skip else ''})")
        ends = frame.offsets[1:] - 1
        prices, bands = self.predict_windows(frame, ends)
        H = prices.shape[1]
        step = pd.tseries.frequencies.to_offset(self.preprocessor.step_)
        last = pd.DatetimeIndex(frame.timestamps[ends])
        d = self.config.data
        stamps = [last[i] + h * step for i in range(len(ends)) for h in range(1, H + 1)]
        out = pd.DataFrame({
            **series_id_column(d.series_col, np.repeat(frame.series, H)),
            "step": np.tile(np.arange(1, H + 1), len(ends)),
            d.timestamp_col: pd.DatetimeIndex(stamps).astype("datetime64[ns]"),
            "forecast": prices.reshape(-1),
        })
        for j, name in enumerate(self.quantile_columns()):
            out[name] = bands[:, :, j].reshape(-1)
        return out

    def batch_spec(self, available: list[str]) -> tuple[list[str], str | None]:
        """(columns the model reads, the column whose groups it needs whole) for batch jobs."""
        d = self.config.data
        ids = [d.series_col] if d.series_col else []
        return [*ids, d.timestamp_col, d.target_col, *d.features], d.series_col or WHOLE_INPUT

    def predict(self, history: pd.DataFrame) -> pd.DataFrame:
        """Raw history (series id, timestamp, target, extra features) -> one row per series
        and step ahead, with the forecast's timestamp."""
        d = self.config.data
        frame = to_series_frame(history, timestamp_col=d.timestamp_col, series_col=d.series_col,
                                series_name=d.series_name, value_cols=[d.target_col, *d.features],
                                nan_policy=d.nan_policy)
        return self.predict_frame(frame)

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        (p / "config.json").write_text(json.dumps(to_dict(self.config), indent=2))
        (p / "preprocessor.json").write_text(json.dumps(self.preprocessor.to_dict()))
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        torch.save(state, p / "weights.pt")
        return p

    @staticmethod
    def saved_config(raw: dict[str, Any]) -> ForecastConfig:
        raw.setdefault("model", {}).setdefault("quantiles", [])  # saved before quantile heads existed
        return from_dict(ForecastConfig, raw)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "ForecastPipeline":
        p = Path(path)
        config = cls.saved_config(json.loads((p / "config.json").read_text()))
        pre = ForecastPreprocessor.from_dict(json.loads((p / "preprocessor.json").read_text()))
        pipe = cls(config, pre)
        pipe.model.load_state_dict(torch.load(p / "weights.pt", map_location=device, weights_only=True))
        pipe.model.to(device).eval()
        return pipe


def history_example(frame: SeriesFrame, cfg: ForecastConfig, n_series: int = 2,
                    extra_rows: int = 5) -> pd.DataFrame:
    """Raw history of the last rows of a few series, as a user would send it (the pyfunc's
    input example)."""
    need = cfg.window.lookback + 1 + extra_rows
    d, parts = cfg.data, []
    for i, sid in enumerate(frame.series[:n_series]):
        lo, hi = frame.bounds(i)
        rows = slice(max(lo, hi - need), hi)
        part = {**series_id_column(d.series_col, sid), d.timestamp_col: frame.timestamps[rows],
                d.target_col: frame.target[rows]}
        for j, name in enumerate(frame.feature_names):
            part[name] = frame.features[rows, j]
        parts.append(pd.DataFrame(part))
    return pd.concat(parts, ignore_index=True)



def gate_spec(cfg: ForecastConfig) -> dict[str, Any]:
    """The stocks gate: `register.metric` (lower is better) against the best of
    `register.gate_baselines` (naive, AutoETS, AutoTheta by default), within
    `register.naive_margin`."""
    r = cfg.register
    return dict(metric=r.metric, baselines={b: f"{b}_{r.metric}" for b in r.gate_baselines},
                margin=r.naive_margin, greater_is_better=False)


def baseline_settings(cfg: ForecastConfig) -> dict[str, Any]:
    """`evaluate_forecasts` keywords from the config: which statistical models, which season."""
    return dict(statistical=tuple(cfg.baselines.statistical), season=cfg.window.season,
                history=cfg.baselines.history)


def train_and_evaluate(cfg: ForecastConfig):
    """One sweep trial: the stocks flow's steps with no orchestration around them."""
    from rnnpipe.evaluation import evaluate_forecasts
    from rnnpipe.features.splits import chronological_split
    from rnnpipe.training import Trained, fit

    frame = load_forecast_data(cfg)
    s = cfg.split
    p = prepare(frame, chronological_split(frame, s.train, s.val, s.val_start, s.test_start), cfg)
    pipe = ForecastPipeline(cfg, p.preprocessor)
    result = fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, progress=False)
    metrics = {k: v for ev in evaluate_forecasts(pipe, p, **baseline_settings(cfg)).values()
               for k, v in ev.metrics.items()}
    return Trained(pipe, result, metrics, history_example(frame, cfg, n_series=2), frame.fingerprint)
