"""A forecasting baseline as a servable model: what a forecaster that lost is replaced by.

When the recurrent forecaster loses to its best gate baseline, that baseline itself is
registered as a version of the same model (alias `baseline`; `champion` when it beats the
current champion), as the reviews pipeline does with TF-IDF. It takes the same input (raw
history, plus the future rows of known features) and gives the same output columns (one
row per series and step ahead: `forecast` and the quantile columns), so `rnnpipe serve`,
`rnnpipe predict` and the scheduled batch job work unchanged whichever version is champion.

Point forecasts are the baseline's own: persistence (`naive`), gradient boosting (`gbm`)
or a StatsForecast model per series applied with its fitted parameters to the history it is
sent (`autoets`, `autotheta`, ...; a series it was not fitted on gets persistence). Its
quantiles are the point forecast plus the quantiles of its own errors on the validation
windows, per series and step (pooled over series for one without them), measured as the
target encoding measures change (log returns or differences), so the band scales like the
model's. Saved without pickle: the fitted models with skops (the types it may load are
listed here), the rest as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rnnpipe import artefact
from rnnpipe.config import to_dict
from rnnpipe.features.targets import TargetEncoding
from rnnpipe.pipelines.forecast.artefact import ForecastPipeline, Recent
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.pipelines.forecast.prepare import ForecastPreprocessor
from rnnpipe.series import SeriesFrame

SERVABLE = ("naive", "gbm", "autoets", "autotheta", "autoarima", "seasonalnaive")
TRUSTED = [  # what skops may rebuild from a saved baseline: these classes and nothing else
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "statsforecast.models.AutoETS",
    "statsforecast.models.AutoTheta",
    "statsforecast.models.AutoARIMA",
    "statsforecast.models.SeasonalNaive",
    "statsforecast.utils.results",
    "statsforecast.arima.ARIMASummary",
]


def best_servable(metrics: dict[str, float], gate_baselines: list[str], metric: str) -> str | None:
    """The gate baseline with the best `metric` (lower is better) among those that can be
    served, or None."""
    scored = {b: metrics.get(f"{b}_{metric}") for b in gate_baselines if b in SERVABLE}
    scored = {b: v for b, v in scored.items() if v is not None and np.isfinite(v)}
    return min(scored, key=scored.get) if scored else None


class BaselineForecastPipeline(ForecastPipeline):
    KIND = "forecast-baseline"
    PACKAGES: ClassVar = ("skops", "statsforecast")  # beyond the runtime packages, in its requirements

    def __init__(
        self,
        config: ForecastConfig,
        preprocessor: ForecastPreprocessor,
        name: str,
        baseline: Any = None,
        offsets: dict[str, np.ndarray] | None = None,
    ):
        if name not in SERVABLE:
            raise ValueError(f"baseline {name!r} cannot be served (servable: {', '.join(SERVABLE)})")
        self.config, self.preprocessor, self.name, self.baseline = config, preprocessor, name, baseline
        self.offsets = offsets or {}  # series ("" = pooled) -> (H, Q) error quantiles in the encoding
        self.model = None
        self._parsed = Recent()

    @property
    def quantiles(self) -> tuple[float, ...]:
        return tuple(float(q) for q in self.config.model.quantiles)

    def _encoding(self) -> TargetEncoding:
        return TargetEncoding("log_return" if self.preprocessor.encoding.kind == "log_return" else "diff")

    # -- point forecasts -------------------------------------------------------------------
    def point_forecast(
        self,
        frame: SeriesFrame,
        ends: np.ndarray,
        inputs: np.ndarray | None = None,
        future: np.ndarray | None = None,
        future_starts: np.ndarray | None = None,
    ) -> np.ndarray:
        """(N, H) forecasts in the target's units from the windows ending at rows `ends`."""
        pre, H = self.preprocessor, self.preprocessor.horizon
        if self.name == "naive":
            return np.repeat(frame.target[ends][:, None].astype(np.float64), H, axis=1)
        if self.name == "gbm":
            if inputs is None:
                inputs, _ = pre.transform(frame)
            if future is None and pre.known_size:
                future = pre.future(inputs)
            return pre.decode(self.baseline.predict(inputs, future, ends, future_starts), frame, ends)
        from rnnpipe.pipelines.forecast.baselines import StatisticalForecast

        b = self.config.baselines
        view = StatisticalForecast(self.name, self.config.window.season, b.history, b.forward_history)
        view.models_ = {i: self.baseline[s] for i, s in enumerate(frame.series) if s in self.baseline}
        return view.forecast(_Frame(frame, pre), ends)

    def predict_windows(
        self,
        frame: SeriesFrame,
        ends: np.ndarray,
        inputs: np.ndarray | None = None,
        batch_size: int = 2048,
        future: np.ndarray | None = None,
        future_starts: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        point = self.point_forecast(frame, ends, inputs, future, future_starts)
        if not self.quantiles:
            return point, None
        series = np.asarray(frame.series)[np.searchsorted(frame.offsets, ends, side="right") - 1]
        levels = np.stack([self.offsets.get(s, self.offsets[""]) for s in series])  # (N, H, Q)
        log = self._encoding().kind == "log_return"
        bands = point[..., None] * np.exp(levels) if log else point[..., None] + levels
        return point, np.sort(bands, axis=-1)

    @classmethod
    def from_run(cls, config: ForecastConfig, prepared, name: str, baseline: Any) -> BaselineForecastPipeline:
        """The baseline `name` as fitted in a run (`rnnpipe.pipelines.forecast.evaluation.fit_forecast_baselines`),
        with its error quantiles measured on the run's validation windows."""
        if name in ("naive", "gbm"):
            state = baseline if name == "gbm" else None
        else:
            state = {s: baseline.models_[i] for i, s in enumerate(prepared.frame.series) if i in baseline.models_}
        pipe = cls(config, prepared.preprocessor, name, state)
        quantiles = pipe.quantiles
        if quantiles:
            frame, ends = prepared.frame, prepared.ends["val"]
            H = prepared.preprocessor.horizon
            point = pipe.point_forecast(frame, ends, prepared.inputs, prepared.future)
            actual = frame.target[ends[:, None] + np.arange(1, H + 1)]
            err = np.log(actual / point) if pipe._encoding().kind == "log_return" else actual - point
            series = np.asarray(frame.series)[np.searchsorted(frame.offsets, ends, side="right") - 1]
            pipe.offsets = {"": np.nanquantile(err, quantiles, axis=0).T}
            for s in dict.fromkeys(series):
                pipe.offsets[s] = np.nanquantile(err[series == s], quantiles, axis=0).T
        return pipe

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        (p / "config.json").write_text(json.dumps(to_dict(self.config), indent=2))
        (p / "preprocessor.json").write_text(json.dumps(self.preprocessor.to_dict()))
        meta = {"name": self.name, "offsets": {k: v.tolist() for k, v in self.offsets.items()}}
        fitted = self.baseline
        if self.name == "gbm":  # its settings as JSON, the fitted trees with skops
            g = self.baseline
            meta["gbm"] = {
                "lookback": g.lookback,
                "horizon": g.horizon,
                "centered": g.centered,
                "season": g.season,
                "lags": g.lags,
            }
            fitted = g.model
        (p / "baseline.json").write_text(json.dumps(meta))
        if fitted is not None:  # skops only then: importing it takes 2 s (it imports every estimator)
            import skops.io as sio

            sio.dump(fitted, p / "baseline.skops")
        artefact.mark(p, self.KIND)
        return p

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> BaselineForecastPipeline:
        p = Path(path)
        artefact.check(p, cls.KIND)
        config = cls.saved_config(json.loads((p / "config.json").read_text()))
        pre = ForecastPreprocessor.from_dict(json.loads((p / "preprocessor.json").read_text()))
        meta = json.loads((p / "baseline.json").read_text())
        state = None
        if (p / "baseline.skops").is_file():
            import skops.io as sio

            blob = (p / "baseline.skops").read_bytes()
            untrusted = [t for t in sio.get_untrusted_types(data=blob) if t not in TRUSTED]
            if untrusted:
                raise ValueError(f"{p / 'baseline.skops'} holds types a baseline never has: {', '.join(untrusted)}")
            state = sio.loads(blob, trusted=TRUSTED)
        if meta["name"] == "gbm":
            from rnnpipe.pipelines.forecast.baselines import GradientBoostingForecast

            gbm = GradientBoostingForecast(**meta["gbm"])
            gbm.model, state = state, gbm
        return cls(config, pre, meta["name"], state, {k: np.asarray(v) for k, v in meta["offsets"].items()})


class _Frame:
    """The two things a statistical baseline's `forecast` reads of prepared data."""

    def __init__(self, frame: SeriesFrame, preprocessor: ForecastPreprocessor):
        self.frame, self.preprocessor = frame, preprocessor
