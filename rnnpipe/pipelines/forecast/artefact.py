"""The fitted forecasting pipeline: preprocessing + model + config, as one artefact.

Training produces a `ForecastPipeline`; evaluation, the MLflow pyfunc, `rnnpipe predict` and
batch jobs load the same object. There is no second copy of the preprocessing anywhere.

On disk (a directory): `config.json`, `preprocessor.json` (scaler statistics, series, target
encoding, time step) and `weights.pt` (a state dict, not a pickled class).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rnnpipe import artefact
from rnnpipe.batch_input import WHOLE_INPUT
from rnnpipe.config import from_dict, to_dict
from rnnpipe.features.windows import INFERENCE_BATCH, WindowSet
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.pipelines.forecast.data import forecast_stamps, future_values, history_fits, read_forecast_input
from rnnpipe.pipelines.forecast.model import Forecaster
from rnnpipe.pipelines.forecast.prepare import ForecastPreprocessor
from rnnpipe.series import SeriesFrame, series_id_column
from rnnpipe.training import predict_batches


def quantile_column(q: float) -> str:
    """The output column of quantile level q: `q0.1`, `q0.05`, `q0.9`."""
    return f"q{q:g}"


class Recent:
    """The last few inputs a pipeline parsed, by object identity (thread-safe: a batch job
    predicts two chunks at a time): what `drift_values` reads instead of parsing again."""

    def __init__(self, size: int = 4):
        self.size, self.items, self.lock = size, [], threading.Lock()

    def put(self, key: object, value: object) -> None:
        with self.lock:
            self.items = [*self.items[-(self.size - 1) :], (key, value)]

    def __getstate__(self) -> dict:  # a pipeline sent to another process (Dask) starts empty
        return {"size": self.size}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["size"])

    def take(self, key: object) -> object:
        with self.lock:
            for i, (k, v) in enumerate(self.items):
                if k is key:
                    del self.items[i]
                    return v
        return None


class ForecastPipeline:
    KIND = "forecast"  # what a logged pyfunc model records (`rnnpipe.kinds.artefact_class`)

    def __init__(self, config: ForecastConfig, preprocessor: ForecastPreprocessor, model: Forecaster | None = None):
        self.config, self.preprocessor = config, preprocessor
        self._parsed = Recent()  # the last inputs `predict` parsed, for `drift_values`
        if model is None:
            m = config.model
            with torch.random.fork_rng(devices=[]):  # initial weights follow train.seed
                torch.manual_seed(config.train.seed)
                model = Forecaster(
                    preprocessor.input_size,
                    preprocessor.horizon,
                    lookback=preprocessor.lookback,
                    highway=m.highway,
                    **m.encoder(),
                    quantiles=m.quantiles,
                    known_size=preprocessor.known_size,
                    recipe=m.recipe,
                    encoder_lookback=m.encoder_lookback,
                    season=config.window.season,
                    level_input=preprocessor.encoding.centered,
                    linear_lr_mult=m.linear_lr_mult,
                    stacked=m.stacked,
                )
        self.model = model

    # -- prediction ----------------------------------------------------------------------
    @property
    def quantiles(self) -> tuple[float, ...]:
        return self.model.quantiles

    def quantile_columns(self) -> list[str]:
        """The output columns of the quantile forecasts: `q0.1`, `q0.5`, `q0.9`, ..."""
        return [quantile_column(q) for q in self.quantiles]

    def predict_windows(
        self,
        frame: SeriesFrame,
        ends: np.ndarray,
        inputs: np.ndarray | None = None,
        batch_size: int = INFERENCE_BATCH,
        future: np.ndarray | None = None,
        future_starts: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """For the windows ending at rows `ends`, in the target's units: point forecasts
        (N, H), and the quantile forecasts (N, H, Q) in `quantiles` order (None without
        quantiles). Quantiles are sorted after decoding, so they never cross.

        A model with inputs known in advance reads them from `future` (R, K) at rows
        `future_starts[i] .. + H` for window i; by default the frame's own rows after each
        window (evaluation, where those rows exist)."""
        if inputs is None:
            inputs, _ = self.preprocessor.transform(frame)
        if future is None and self.preprocessor.known_size:
            future = self.preprocessor.future(inputs)
        device = next(self.model.parameters()).device
        H = self.preprocessor.horizon
        dummy = np.zeros((len(inputs), H), dtype=np.float32)
        data = WindowSet(inputs, dummy, ends, self.preprocessor.lookback, future, future_starts).to(device)
        outputs = predict_batches(self.model, data, batch_size).reshape(len(ends), H, -1)
        point = self.preprocessor.decode(outputs[:, :, 0], frame, ends)
        if outputs.shape[2] == 1:
            return point, None
        bands = np.stack(
            [self.preprocessor.decode(outputs[:, :, 1 + j], frame, ends) for j in range(outputs.shape[2] - 1)], axis=-1
        )
        return point, np.sort(bands, axis=-1)

    def forecast_windows(
        self, frame: SeriesFrame, ends: np.ndarray, inputs: np.ndarray | None = None, batch_size: int = INFERENCE_BATCH
    ) -> np.ndarray:
        """Point forecasts (N, H), in the target's units, for the windows ending at rows `ends`."""
        return self.predict_windows(frame, ends, inputs, batch_size)[0]

    def forecast_stamps(self, frame: SeriesFrame) -> np.ndarray:
        """(S, H) timestamps of the forecast steps after each series' last row."""
        return forecast_stamps(frame, self.preprocessor.step_, self.preprocessor.horizon)

    def future_inputs(self, frame: SeriesFrame, ahead: SeriesFrame | None) -> np.ndarray | None:
        """(S x H, K) inputs known in advance for every series' forecast steps: the calendar of
        their timestamps and the known features' values from the input's future rows (`ahead`),
        which must hold exactly those steps. None for a model without such inputs."""
        pre = self.preprocessor
        if not pre.known_size:
            return None
        stamps, H = self.forecast_stamps(frame), pre.horizon
        known = future_values(frame, ahead, stamps, list(pre.known_), self.config.data)
        codes = np.repeat(self.preprocessor.codes(frame)[frame.offsets[1:] - 1], H)
        return pre.future_block(known.reshape(len(frame.series) * H, len(pre.known_)), stamps.reshape(-1), codes)

    def predict_frame(self, frame: SeriesFrame, ahead: SeriesFrame | None = None) -> pd.DataFrame:
        history_fits(frame, self.preprocessor.lookback, self.preprocessor.encoding.skip)
        ends = frame.offsets[1:] - 1
        future = self.future_inputs(frame, ahead)
        H = self.preprocessor.horizon
        starts = None if future is None else np.arange(len(ends)) * H
        prices, bands = self.predict_windows(frame, ends, future=future, future_starts=starts)
        d = self.config.data
        out = pd.DataFrame(
            {
                **series_id_column(d.series_col, np.repeat(frame.series, H)),
                "step": np.tile(np.arange(1, H + 1), len(ends)),
                d.timestamp_col: self.forecast_stamps(frame).reshape(-1),
                "forecast": prices.reshape(-1),
            }
        )
        for j, name in enumerate(self.quantile_columns()):
            out[name] = bands[:, :, j].reshape(-1)
        return out

    def batch_spec(self, available: list[str]) -> tuple[list[str], str | None]:
        """(columns the model reads, the column whose groups it needs whole) for batch jobs."""
        d = self.config.data
        ids = [d.series_col] if d.series_col else []
        return [*ids, d.timestamp_col, d.target_col, *d.features, *d.known_features], d.series_col or WHOLE_INPUT

    def predict(self, history: pd.DataFrame) -> pd.DataFrame:
        """Raw history (series id, timestamp, target, extra features) -> one row per series
        and step ahead, with the forecast's timestamp. A model with `data.known_features`
        also takes, after each series' history, one row per forecast step with those
        columns' planned values and the target empty."""
        frame, ahead = read_forecast_input(history, self.config.data)
        self._parsed.put(history, frame)
        return self.predict_frame(frame, ahead)

    # -- drift (`rnnpipe.drift`) ----------------------------------------------------------
    def actuals_columns(self) -> tuple[list[str], str]:
        """What `--actuals` holds for realised accuracy: (columns, what they are)."""
        d = self.config.data
        keys = [*([d.series_col] if d.series_col else []), d.timestamp_col]
        return [*keys, d.target_col], "the target's actual values at the forecast timestamps"

    def realised_scores(self, output: pd.DataFrame, actuals: pd.DataFrame) -> dict[str, float]:
        """A job's forecasts against the actual values (`rnnpipe.realised.forecast_scores`)."""
        from rnnpipe.realised import forecast_scores

        columns, _ = self.actuals_columns()
        return forecast_scores(output, actuals, columns[:-1], columns[-1])

    def drift_features(self, frame: SeriesFrame) -> dict[str, np.ndarray]:
        """Per row, what the model reads: the target as its encoding makes it (the one-step
        change of a `diff` or `log_return` target, whose level drifts by nature), the other
        channels as they are, and the time since the row before (the data's step and gaps)."""
        enc = self.preprocessor.encoding
        name = frame.columns[0] if enc.kind == "level" else f"{frame.columns[0]} ({enc.kind})"
        out = {name: enc.steps(frame.target, frame.offsets)}
        for j, column in enumerate(frame.columns[1:], 1):
            out[column] = frame.values[:, j]
        # the time from each row's predecessor in its series: another data step, or gaps
        step = np.empty(len(frame), np.float64)
        step[1:] = np.diff(frame.timestamps).astype("timedelta64[s]").astype(np.float64)
        step[frame.offsets[:-1]] = np.nan
        out["step seconds"] = step
        return out

    def drift_predictions(self, point: np.ndarray, last: np.ndarray) -> dict[str, np.ndarray]:
        """The one-step-ahead forecasts (N,) as changes from the last values (N,), encoded as
        the target is (a level for a `level` target)."""
        kind = self.preprocessor.encoding.kind
        with np.errstate(divide="ignore", invalid="ignore"):
            change = point if kind == "level" else np.log(point / last) if kind == "log_return" else point - last
        return {f"forecast step 1 ({kind})": change}

    def drift_values(self, inputs: pd.DataFrame, outputs: pd.DataFrame) -> tuple[dict, dict, pd.Categorical]:
        """A batch chunk's (features, predictions, the series of each feature row) for its
        drift report: `inputs` as `predict` parsed them (kept a moment for this; parsing again
        would cost as much as the job)."""
        frame = self._parsed.take(inputs)
        if frame is None:
            frame, _ = read_forecast_input(inputs, self.config.data)
        first = outputs["step"].to_numpy() == 1  # one row per series, in the frame's order
        predictions = self.drift_predictions(
            outputs["forecast"].to_numpy(np.float64)[first], frame.target[frame.offsets[1:] - 1]
        )
        keep = after_first(frame)
        features = {k: v[keep] for k, v in self.drift_features(frame).items()}
        return features, predictions, row_series(frame)[keep]

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        (p / "config.json").write_text(json.dumps(to_dict(self.config), indent=2))
        (p / "preprocessor.json").write_text(json.dumps(self.preprocessor.to_dict()))
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        torch.save(state, p / "weights.pt")
        artefact.mark(p, self.KIND)
        return p

    @staticmethod
    def saved_config(raw: dict[str, Any]) -> ForecastConfig:
        raw.setdefault("model", {}).setdefault("quantiles", [])  # saved before quantile heads existed
        raw["model"].setdefault("recipe", "joint")  # saved before the residual recipe
        if "encoder_lookback" not in raw["model"]:  # ... and before its decoder read seasonal lags
            raw.setdefault("window", {})["season"] = 0
        raw["model"].setdefault("stacked", False)  # ... and before its decoder read the linear forecast
        raw.setdefault("data", {}).setdefault("calendar", [])  # ... and before calendar inputs
        baselines = raw.setdefault("baselines", {})  # ... and before a statistical baseline's origins
        baselines.setdefault("forward_history", baselines.get("history", 3000))  # read fewer points than its fit
        return from_dict(ForecastConfig, raw)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> ForecastPipeline:
        p = Path(path)
        artefact.check(p, cls.KIND)
        config = cls.saved_config(json.loads((p / "config.json").read_text()))
        pre = ForecastPreprocessor.from_dict(json.loads((p / "preprocessor.json").read_text()))
        pipe = cls(config, pre)
        pipe.model.load_state_dict(torch.load(p / "weights.pt", map_location=device, weights_only=True))
        pipe.model.to(device).eval()
        return pipe


def history_example(frame: SeriesFrame, cfg: ForecastConfig, n_series: int = 2, extra_rows: int = 5) -> pd.DataFrame:
    """Raw history of the last rows of a few series, as a user would send it (the pyfunc's
    input example). With known features, the last `window.horizon` rows of each series
    follow as the future rows: their planned values, the target empty."""
    ahead = cfg.window.horizon if cfg.data.known_features else 0
    need = cfg.window.lookback + 1 + extra_rows + ahead
    d, parts = cfg.data, []
    for i, sid in enumerate(frame.series[:n_series]):
        lo, hi = frame.bounds(i)
        rows = slice(max(lo, hi - need), hi)
        target = frame.target[rows].copy()
        if ahead:
            target[-ahead:] = np.nan
        part = {**series_id_column(d.series_col, sid), d.timestamp_col: frame.timestamps[rows], d.target_col: target}
        for j, name in enumerate(frame.feature_names):
            part[name] = frame.features[rows, j]
        parts.append(pd.DataFrame(part))
    return pd.concat(parts, ignore_index=True)


def gate_spec(cfg: ForecastConfig) -> dict[str, Any]:
    """The stocks gate: `register.metric` (lower is better) against the best of
    `register.gate_baselines` (naive, AutoETS, AutoTheta and gradient boosting by default), within
    `register.naive_margin`."""
    r = cfg.register
    return dict(
        metric=r.metric,
        baselines={b: f"{b}_{r.metric}" for b in r.gate_baselines},
        margin=r.naive_margin,
        greater_is_better=False,
    )


def baseline_settings(cfg: ForecastConfig) -> dict[str, Any]:
    """`evaluate_forecasts` keywords from the config: which statistical models, which season,
    gradient boosting or not."""
    return dict(
        statistical=tuple(cfg.baselines.statistical),
        season=cfg.window.season,
        history=cfg.baselines.history,
        forward_history=cfg.baselines.forward_history,
        gbm=cfg.baselines.gbm,
        seed=cfg.train.seed,
    )


def after_first(frame: SeriesFrame) -> np.ndarray:
    """Rows of `frame` that follow another row of their series. A series' first row has no
    change of the target and no step by construction: drift reports leave it out (of the
    reference and of every batch) rather than count it as a missing value, which a batch of
    short histories would otherwise show as a rise in the missing share."""
    keep = np.ones(len(frame), dtype=bool)
    keep[frame.offsets[:-1]] = False
    return keep


def row_series(frame: SeriesFrame) -> pd.Categorical:
    """The series of each row of `frame` (codes into the series' names: cheap for a million
    rows, where strings per row are not)."""
    codes = np.repeat(np.arange(len(frame.series)), np.diff(frame.offsets))
    return pd.Categorical.from_codes(codes, categories=pd.Index([str(s) for s in frame.series]))
