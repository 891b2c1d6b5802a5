"""The forecasting baselines: ridge on the window, gradient boosting, StatsForecast's
statistical models and the naive forecast's quantiles."""

from __future__ import annotations

import numpy as np

from rnnpipe.features.targets import TargetEncoding
from rnnpipe.linear import fit_ridge


class RidgeForecast:
    """Ridge regression on the forecaster's own inputs: the scaled window of every input
    channel, and the inputs known for the forecast steps -> the scaled targets of every step
    ahead (the same encoding the recurrent model learns, so it is a linear model of the same
    inputs), decoded like the model's output. The penalty is chosen on validation windows
    (`fit_ridge`). The linear part of a forecaster (`model.highway=linear`) starts from this
    same fit."""

    name = "ridge"

    def __init__(self, lookback: int, horizon: int = 1):
        self.lookback, self.horizon = lookback, horizon

    def _x(self, inputs: np.ndarray, ends: np.ndarray, future: np.ndarray | None = None) -> np.ndarray:
        x = inputs[ends[:, None] + np.arange(-self.lookback + 1, 1)].reshape(len(ends), -1)
        if future is None or not future.shape[1]:
            return x
        return np.hstack([x, future[ends[:, None] + 1 + np.arange(self.horizon)].reshape(len(ends), -1)])

    def fit(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        train_ends: np.ndarray,
        val_ends: np.ndarray,
        future: np.ndarray | None = None,
    ) -> RidgeForecast:
        self.model, self.penalty_, _ = fit_ridge(
            self._x(inputs, train_ends, future),
            targets[train_ends],
            self._x(inputs, val_ends, future),
            targets[val_ends],
        )
        return self

    def predict(self, inputs: np.ndarray, ends: np.ndarray, future: np.ndarray | None = None) -> np.ndarray:
        """Scaled outputs (N, H), like the recurrent model's."""
        return self.model.predict(self._x(inputs, ends, future)).reshape(len(ends), -1)

    def forecast(self, prepared, ends: np.ndarray) -> np.ndarray:
        """Forecasts (N, H) in the target's units for the windows ending at `ends`."""
        return prepared.preprocessor.decode(self.predict(prepared.inputs, ends, prepared.future), prepared.frame, ends)


class GradientBoostingForecast:
    """Gradient boosting on the forecaster's own inputs, the practitioner's strongest
    non-neural baseline on seasonal data with covariates (the M5 winners' recipe):
    scikit-learn's `HistGradientBoostingRegressor`, one model for every step ahead with the
    step as a feature, early stopping on the validation windows.

    A row is one (window, step h) pair, its target the model's own scaled target of step h
    as a change from the window's last value (trees do not extrapolate a level outside the
    training years' range), decoded like the model's output. Its features, all from the window and the inputs known
    for the step (nothing after the window's last row but those):
    - the target's level relative to the window's last value, `lags` steps back and at one
      and two seasons back (`window.season`), and at h steps less than a season back (the
      seasonal naive forecast of step h, relative);
    - the window's mean and std of the target channel, the last value of every input channel
      (extra features, known features and calendar at the window's end);
    - the inputs known in advance at step h (calendar, known features) and h itself.
    At most `max_rows` training rows (a seeded sample of the pairs) and `max_rows // 4`
    validation rows.
    """

    name = "gbm"

    def __init__(
        self,
        lookback: int,
        horizon: int,
        centered: bool,
        season: int = 0,
        lags: int = 24,
        max_rows: int = 200_000,
        seed: int = 0,
    ):
        self.lookback, self.horizon, self.centered = lookback, horizon, centered
        self.season, self.lags, self.max_rows, self.seed = season, lags, max_rows, seed

    def _relative(self, x0: np.ndarray) -> np.ndarray:
        """(N, L) windows of the target channel -> (N, L): column k-1 holds the level k steps
        before the window's last one minus its last level (k = 1..L-1; the last column 0)."""
        if self.centered:  # level inputs
            rel = x0[:, ::-1] - x0[:, -1:]
            return np.concatenate([rel[:, 1:], np.zeros((len(x0), 1))], axis=1)
        return -np.cumsum(x0[:, ::-1], axis=1)  # the sum of the last k changes, negated

    def _design(
        self, inputs: np.ndarray, future: np.ndarray | None, ends: np.ndarray, future_starts: np.ndarray | None = None
    ) -> np.ndarray:
        """(N x H, F) features, rows window-major (window n, step h at n * H + h - 1)."""
        L, H = self.lookback, self.horizon
        W = inputs[ends[:, None] + np.arange(-L + 1, 1)]  # (N, L, C)
        rel = self._relative(W[:, :, 0].astype(np.float64))  # (N, L)
        m = self.season if 2 <= self.season < L else 0  # a season the window reaches back over
        lags = sorted({k for k in range(1, min(L, self.lags + 1))} | {k for k in (m, 2 * m) if 0 < k < L})
        per_window = np.column_stack(
            [rel[:, [k - 1 for k in lags]], W[:, :, 0].mean(1), W[:, :, 0].std(1), W[:, -1, :]]
        )
        rows = [np.repeat(per_window, H, axis=0)]
        steps = np.tile(np.arange(1, H + 1), len(ends))
        if m:  # the seasonal naive forecast of step h: the level at t + h - m (or - 2m), relative
            back = np.where(steps <= m, m - steps, 2 * m - steps)
            ok = (back >= 1) & (back < L)
            snaive = np.where(ok, rel[np.repeat(np.arange(len(ends)), H), np.clip(back - 1, 0, L - 1)], np.nan)
            rows.append(snaive[:, None])
        if future is not None and future.shape[1]:
            start = ends + 1 if future_starts is None else future_starts
            rows.append(future[(start[:, None] + np.arange(H)).reshape(-1)])
        rows.append(steps[:, None])
        return np.column_stack(rows).astype(np.float32)

    def _sample(self, n_windows: int, limit: int, rng: np.random.Generator) -> np.ndarray:
        rows = n_windows * self.horizon
        return np.arange(rows) if rows <= limit else np.sort(rng.choice(rows, limit, replace=False))

    def fit(self, prepared) -> GradientBoostingForecast:
        import time

        from sklearn.ensemble import HistGradientBoostingRegressor

        t0 = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        parts = {}
        for part, limit in (("train", self.max_rows), ("val", self.max_rows // 4)):
            ends = prepared.ends[part]
            keep = self._sample(len(ends), limit, rng)
            X = self._design(prepared.inputs, prepared.future, ends)[keep]
            y = (prepared.targets[ends] - self._last(prepared.inputs, ends)).reshape(-1)[keep]
            parts[part] = (X, y)
        self.model = HistGradientBoostingRegressor(
            max_iter=1000,
            learning_rate=0.05,
            max_leaf_nodes=31,
            min_samples_leaf=40,
            early_stopping=True,
            n_iter_no_change=30,
            random_state=self.seed,
        )
        self.model.fit(*parts["train"], X_val=parts["val"][0], y_val=parts["val"][1])
        self.fit_seconds_ = time.perf_counter() - t0
        self.fallback_series: list[str] = []
        return self

    def _last(self, inputs: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """(N, 1) what a change is measured from in the scaled target: the window's last level
        for level targets, 0 for targets that are changes already."""
        return inputs[ends, :1].astype(np.float64) if self.centered else np.zeros((len(ends), 1))

    def predict(
        self, inputs: np.ndarray, future: np.ndarray | None, ends: np.ndarray, future_starts: np.ndarray | None = None
    ) -> np.ndarray:
        """Scaled outputs (N, H), like the recurrent model's."""
        X = self._design(inputs, future, ends, future_starts)
        return self.model.predict(X).reshape(len(ends), self.horizon) + self._last(inputs, ends)

    def forecast(self, prepared, ends: np.ndarray) -> np.ndarray:
        """Forecasts (N, H) in the target's units for the windows ending at `ends`."""
        out = self.predict(prepared.inputs, prepared.future, ends)
        return prepared.preprocessor.decode(out, prepared.frame, ends)


STATISTICAL = ("autoets", "autotheta", "autoarima", "seasonalnaive")


def _statsforecast_model(name: str, season: int):
    from statsforecast import models as sf

    m = max(int(season), 1)
    return {
        "autoets": lambda: sf.AutoETS(season_length=m),
        "autotheta": lambda: sf.AutoTheta(season_length=m),
        "autoarima": lambda: sf.AutoARIMA(season_length=m),
        "seasonalnaive": lambda: sf.SeasonalNaive(season_length=m),
    }[name]()


class StatisticalForecast:
    """A StatsForecast model (Nixtla) per series, fitted on that series' training part only
    (its last `history` points), forecasting `horizon` steps from every origin it is asked
    about.

    From an origin the fitted model is applied, with its parameters fixed, to the series'
    history up to and including the origin (StatsForecast's `forward`: no refit, nothing
    after the origin is read), at most its last `forward_history` points (0: all; by
    default `history`, the points the fit reads). The cap is an
    approximation for speed: `forward` re-reads the whole history at every origin (AutoTheta
    also re-estimates its trend line on it), which costs O(length) per origin, 47 ms for
    AutoTheta at 8,000 points, and fitting AutoTheta to long series is slower still (153 s
    for the bundled glucose patients' whole training parts). Gaps (NaN) in the history are
    filled by linear interpolation between the readings around them, which all lie before the
    origin. A series the model
    cannot be fitted to (too short, constant) gets the naive forecast, counted in
    `fallback_series`.
    """

    def __init__(self, name: str, season: int = 0, history: int = 3000, forward_history: int | None = None):
        if name not in STATISTICAL:
            raise ValueError(f"statistical baseline {name!r}: expected one of {', '.join(STATISTICAL)}")
        if name == "seasonalnaive" and season < 2:
            raise ValueError("seasonalnaive needs window.season >= 2")
        self.name, self.season, self.history = name, season, history
        # the points read from each origin (None: `history`, as the fit)
        self.forward_history = history if forward_history is None else forward_history
        self.models_: dict[int, object] = {}
        self.fallback_series: list[str] = []
        self.fit_seconds_ = 0.0

    @staticmethod
    def _filled(y: np.ndarray) -> np.ndarray:
        bad = np.isnan(y)
        if not bad.any():
            return y
        idx = np.arange(len(y))
        out = y.copy()
        out[bad] = np.interp(idx[bad], idx[~bad], y[~bad])
        return out

    def fit(self, frame, split) -> StatisticalForecast:
        import time
        import warnings

        t0 = time.perf_counter()
        for i, (lo, train_end, _, _) in enumerate(split.bounds):
            y = frame.target[max(lo, train_end - self.history) if self.history else lo : train_end]
            train = self._filled(y) if (~np.isnan(y)).any() else y
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if len(train) < max(2 * max(self.season, 1), 4) or np.isnan(train).any():
                        raise ValueError("too short")
                    self.models_[i] = _statsforecast_model(self.name, self.season).fit(train)
            except Exception:  # noqa: BLE001 - any model failure: naive for this series
                self.fallback_series.append(frame.series[i])
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def forecast(self, prepared, ends: np.ndarray) -> np.ndarray:
        """Forecasts (N, H) in the target's units from the origins `ends` (row indices)."""
        return self.forecast_with_quantiles(prepared, ends)[0]

    def forecast_with_quantiles(self, prepared, ends: np.ndarray, quantiles=()) -> tuple[np.ndarray, np.ndarray | None]:
        """Point forecasts (N, H) and, for `quantiles`, the model's own prediction intervals
        read as quantiles (N, H, Q): level q < 0.5 is the lower end of the (1 - 2q) interval,
        q > 0.5 the upper end of the (2q - 1) one, 0.5 the mean. Naive fallbacks (and
        origins where the model gives no finite interval) get NaN quantiles."""
        import warnings

        frame, H = prepared.frame, prepared.preprocessor.horizon
        index = np.searchsorted(frame.offsets, ends, side="right") - 1
        out = np.repeat(frame.target[ends][:, None], H, axis=1).astype(np.float64)
        keys = [_interval_key(q) for q in quantiles]
        levels = sorted({int(k[3:]) for k in keys if k != "mean"})
        bands = np.full((len(ends), H, len(keys)), np.nan) if keys else None
        filled: dict[int, np.ndarray] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for j, (i, end) in enumerate(zip(index, ends)):
                model = self.models_.get(int(i))
                if model is None:
                    continue
                lo = int(frame.offsets[i])
                if i not in filled:  # interpolated per series once; a gap's neighbours precede any origin after it
                    filled[i] = self._filled(frame.target[lo : frame.offsets[i + 1]])
                first = end + 1 - self.forward_history if self.forward_history else lo
                y = filled[i][max(first, lo) - lo : end + 1 - lo]
                fc = model.forward(y, h=H, level=levels) if levels else model.forward(y, h=H)
                if np.isfinite(fc["mean"]).all():
                    out[j] = fc["mean"]
                    for k, key in enumerate(keys):
                        bands[j, :, k] = fc[key]
        if bands is not None:
            bands = np.sort(bands, axis=-1)  # NaN rows stay NaN (sorted last)
        return out, bands


def _interval_key(q: float) -> str:
    """The StatsForecast output column that is quantile q: `lo-80` for 0.1, `hi-80` for 0.9."""
    if abs(q - 0.5) < 1e-12:
        return "mean"
    level = round(100 * abs(2 * q - 1), 6)
    if level != int(level):
        raise ValueError(f"quantile {q}: StatsForecast intervals need whole-percent levels")
    return f"{'lo' if q < 0.5 else 'hi'}-{int(level)}"


class NaiveQuantiles:
    """The naive forecast with empirical quantiles: persistence for every step, and as its
    band the quantiles of persistence's own errors on the training and validation windows,
    per series and step ahead (pooled over series for one with no train or val window, such
    as a patient of the test part). Errors are taken as changes in the target's encoding (log
    returns for `log_return`, differences otherwise), so the band scales with the price
    as the model's does."""

    name = "naive"

    def __init__(self, quantiles):
        self.quantiles = tuple(quantiles)

    def _encoding(self, prepared) -> TargetEncoding:
        return TargetEncoding("log_return" if prepared.preprocessor.encoding.kind == "log_return" else "diff")

    def fit(self, prepared) -> NaiveQuantiles:
        frame, H = prepared.frame, prepared.preprocessor.horizon
        changes = self._encoding(prepared).encode(frame.target, frame.offsets, H)
        ends = np.concatenate([prepared.ends["train"], prepared.ends["val"]])
        index = np.searchsorted(frame.offsets, ends, side="right") - 1
        self.levels_ = np.full((len(frame.series), H, len(self.quantiles)), np.nan)
        pooled = changes[ends]  # for a series with no train or val window (a test patient)
        for i in range(len(frame.series)):
            err = changes[ends[index == i]]
            for h in range(H):
                e = err[:, h][np.isfinite(err[:, h])]
                if not len(e):
                    e = pooled[:, h][np.isfinite(pooled[:, h])]
                if len(e):
                    self.levels_[i, h] = np.quantile(e, self.quantiles)
        return self

    def forecast_with_quantiles(self, prepared, ends: np.ndarray, quantiles=()) -> tuple[np.ndarray, np.ndarray]:
        frame, H = prepared.frame, prepared.preprocessor.horizon
        index = np.searchsorted(frame.offsets, ends, side="right") - 1
        last = frame.target[ends].astype(np.float64)
        enc = self._encoding(prepared)
        bands = np.stack([enc.decode(self.levels_[index, :, k], last) for k in range(len(self.quantiles))], axis=-1)
        return np.repeat(last[:, None], H, axis=1), bands
