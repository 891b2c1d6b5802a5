"""A forecaster against every baseline on the same test points: the baselines fitted on the
training part, the forecasts scored (`rnnpipe.pipelines.forecast.metrics`), and the plots
(forecasts, calibration)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rnnpipe.evaluation import subplots
from rnnpipe.pipelines.forecast.metrics import forecast_metrics, interval_name, mase_scales, quantile_metrics


def plot_calibration(metrics: dict[str, float], quantiles: Sequence[float], methods: Sequence[str], part: str = "test"):
    """Nominal level vs the observed share of targets at or below each quantile, per method."""
    fig, ax = subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="calibrated")
    for name in methods:
        base = f"{name + '_' if name else ''}{part}"
        keys = [f"{base}_share_below_q{q:g}" for q in quantiles]
        if all(k in metrics for k in keys):
            ax.plot(quantiles, [metrics[k] for k in keys], marker="o", label=name or "model")
    ax.set_xlabel("nominal level")
    ax.set_ylabel(f"share of {part} targets at or below the quantile")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{part}: quantile calibration")
    fig.tight_layout()
    return fig


def plot_forecasts(
    timestamps: np.ndarray,
    actual: np.ndarray,
    pred: np.ndarray,
    series: Sequence[str],
    title: str = "test: forecast vs actual (1 step ahead)",
    band: tuple[np.ndarray, np.ndarray, str] | None = None,
):
    """One panel per series: actual vs the model's 1-step forecast, and the quantile band
    (lower, upper, label) around it when given."""
    series = np.asarray(series)
    names = list(dict.fromkeys(series))
    fig, axes = subplots(len(names), 1, figsize=(11, 3.2 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        m = series == name
        t, a, p = timestamps[m], actual[m], pred[m]
        if band is not None:
            ax.fill_between(t, band[0][m], band[1][m], color="tab:blue", alpha=0.2, lw=0, label=band[2])
        ax.plot(t, a, color="black", lw=1.0, label="actual")
        ax.plot(t, p, color="tab:blue", lw=1.0, alpha=0.85, label="forecast")
        mae = np.mean(np.abs(p - a))
        naive_mae = np.mean(np.abs(a[1:] - a[:-1])) if len(a) > 1 else float("nan")
        ax.set_title(f"{name}: MAE {mae:.3f} (naive, consecutive days: {naive_mae:.3f})", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


@dataclass
class ForecastEvaluation:
    """Forecasts of every window of one part, with what is needed to score and plot them."""

    part: str
    timestamps: np.ndarray  # (N,) time of the first step ahead
    series: np.ndarray  # (N,) series id of each window
    actual: np.ndarray  # (N, H) in the target's units
    pred: np.ndarray  # (N, H)
    last: np.ndarray  # (N,) last observed value: the naive forecast
    metrics: dict[str, float]
    baselines: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N, H), besides naive
    quantiles: tuple[float, ...] = ()
    bands: dict[str, np.ndarray] = field(default_factory=dict)  # "" (the model), "naive", ... -> (N, H, Q)
    fitted: dict[str, object] = field(default_factory=dict)  # name -> the fitted baseline that scored

    def names(self) -> list[str]:
        return ["naive", *self.baselines]

    def best_baseline(self) -> str:
        return min(self.names(), key=lambda n: self.metrics[f"{n}_{self.part}_mae"])

    def standing(self) -> str:
        """One sentence: where the model stands against each baseline."""
        m, p = self.metrics, self.part
        parts = []
        for name in self.names():
            ratio = m[f"{p}_mae_vs_{name}"]
            verdict = (
                f"beats it by {100 * (1 - ratio):.3f}%"
                if ratio < 1
                else "ties it"
                if ratio == 1
                else f"loses by {100 * (ratio - 1):.3f}%"
            )
            parts.append(f"{name} {m[f'{name}_{p}_mae']:.4f} ({verdict})")
        return f"{p} MAE {m[f'{p}_mae']:.4f} vs " + ", ".join(parts)

    def per_series(self) -> list[dict[str, float | str]]:
        m, p = self.metrics, self.part
        rows = []
        for s in dict.fromkeys(self.series):
            row: dict[str, float | str] = {"series": s, f"{p}_mae": m[f"{p}_mae.{s}"]}
            for name in self.names():
                row[f"{name}_{p}_mae"] = m[f"{name}_{p}_mae.{s}"]
                row[f"{p}_mae_vs_{name}"] = m[f"{p}_mae_vs_{name}.{s}"]
            row[f"{p}_mape"] = m[f"{p}_mape.{s}"]
            rows.append(row)
        return rows

    def plot(self):
        band = None
        if "" in self.bands:
            b, q = self.bands[""], self.quantiles
            band = (b[:, 0, 0], b[:, 0, -1], f"q{q[0]:g} to q{q[-1]:g}")
        return plot_forecasts(
            self.timestamps,
            self.actual[:, 0],
            self.pred[:, 0],
            self.series,
            title=f"{self.part}: forecast vs actual (1 step ahead)",
            band=band,
        )

    def plot_calibration(self):
        return plot_calibration(self.metrics, self.quantiles, list(self.bands), self.part)

    def figures(self) -> dict[str, object]:
        """The run's plots: artefact path -> figure (the calibration plot with quantiles)."""
        out = {f"plots/{self.part}_forecast_vs_actual.png": self.plot()}
        if self.bands:
            out[f"plots/{self.part}_quantile_calibration.png"] = self.plot_calibration()
        return out

    def interval_standing(self) -> str:
        """One sentence on the quantile forecasts against each baseline's ('' without them)."""
        if "" not in self.bands:
            return ""
        m, p, cover = self.metrics, self.part, interval_name(self.quantiles)
        parts = [
            f"{name} {m[f'{name}_{p}_pinball']:.4f} ({cover} {m[f'{name}_{p}_{cover}']:.3f})"
            for name in self.bands
            if name and f"{name}_{p}_pinball" in m
        ]
        return (
            f"{p} pinball {m[f'{p}_pinball']:.4f}, {cover} {m[f'{p}_{cover}']:.3f}, "
            f"width {m[f'{p}_interval_width']:.3f} vs " + ", ".join(parts)
        )


def fit_forecast_baselines(
    prepared,
    statistical: Sequence[str] = ("autoets", "autotheta"),
    season: int = 0,
    history: int = 3000,
    quantiles: Sequence[float] = (),
    gbm: bool = False,
    seed: int = 0,
    forward_history: int | None = None,
) -> dict[str, object]:
    """The forecasting baselines besides naive, fitted on the training part of `ForecastPrepared`
    data only (settings chosen on validation): ridge on the window, and the `statistical`
    StatsForecast models per series (`StatisticalForecast`); seasonal naive is added when
    `season` >= 2; `gbm`, gradient boosting (`GradientBoostingForecast`); with `quantiles`,
    "naive" is the naive forecast with empirical quantiles
    (`NaiveQuantiles`). name -> an object with `forecast(prepared, ends)`, and
    `forecast_with_quantiles(prepared, ends, quantiles)` where it gives intervals."""
    from rnnpipe.pipelines.forecast.baselines import (
        GradientBoostingForecast,
        NaiveQuantiles,
        RidgeForecast,
        StatisticalForecast,
    )

    pre = prepared.preprocessor
    ridge = RidgeForecast(pre.lookback, pre.horizon)
    ridge.fit(prepared.inputs, prepared.targets, prepared.ends["train"], prepared.ends["val"], prepared.future)
    out: dict[str, object] = {ridge.name: ridge}
    if gbm:
        out["gbm"] = GradientBoostingForecast(pre.lookback, pre.horizon, pre.encoding.centered, season, seed=seed).fit(
            prepared
        )
    names = list(dict.fromkeys([*statistical, *(["seasonalnaive"] if season >= 2 else [])]))
    for name in names:
        out[name] = StatisticalForecast(name, season, history, _forward(forward_history)).fit(
            prepared.frame, prepared.split
        )
    if quantiles:
        out["naive"] = NaiveQuantiles(quantiles).fit(prepared)
    return out


def evaluate_forecaster(
    pipeline, prepared, part: str = "test", baselines: dict[str, object] | None = None, season: int = 0
) -> ForecastEvaluation:
    """Score a trained `ForecastPipeline` on the windows of one part of `ForecastPrepared` data, side
    by side with the naive forecast and `baselines` (`fit_forecast_baselines`); MASE scaled
    by the training part's (seasonal, with `season`) naive MAE."""
    frame, ends = prepared.frame, prepared.ends[part]
    H = prepared.preprocessor.horizon
    quantiles = tuple(getattr(pipeline, "quantiles", ()))
    pred, band = pipeline.predict_windows(frame, ends, prepared.inputs)
    actual = frame.target[ends[:, None] + np.arange(1, H + 1)]
    series = np.asarray(frame.series)[np.searchsorted(frame.offsets, ends, side="right") - 1]
    last = frame.target[ends]
    others, seconds, bands = {}, {}, {}
    if band is not None:
        bands[""] = band
    for name, b in (baselines or {}).items():
        t0 = time.perf_counter()
        if quantiles and hasattr(b, "forecast_with_quantiles"):
            point, b_band = b.forecast_with_quantiles(prepared, ends, quantiles)
            if b_band is not None:
                bands[name] = b_band
        else:
            point = b.forecast(prepared, ends)
        if name != "naive":  # naive's point forecast is the last value, scored as always
            others[name] = point
        seconds[f"{name}_{part}_forecast_s"] = time.perf_counter() - t0
        if getattr(b, "fit_seconds_", None) is not None:
            seconds[f"{name}_fit_s"] = b.fit_seconds_
            seconds[f"{name}_fallback_series"] = float(len(b.fallback_series))
    scales = mase_scales(frame, prepared.split, season)
    metrics = forecast_metrics(pred, actual, last, series, part, others, scales)
    for name, b_band in bands.items():
        metrics.update(quantile_metrics(b_band, actual, quantiles, series, part, name))
    if f"{part}_pinball" in metrics and f"naive_{part}_pinball" in metrics:
        metrics[f"{part}_pinball_vs_naive"] = metrics[f"{part}_pinball"] / metrics[f"naive_{part}_pinball"]
    return ForecastEvaluation(
        part,
        frame.timestamps[ends + 1],
        series,
        actual,
        pred,
        last,
        {**metrics, **seconds},
        others,
        quantiles,
        bands,
        dict(baselines or {}),
    )


def _forward(forward_history: int | None) -> int:
    """The points a statistical model reads from each origin: the config's default unless given."""
    from rnnpipe.pipelines.forecast.config import BaselinesConfig

    return BaselinesConfig().forward_history if forward_history is None else forward_history


def evaluate_forecasts(
    pipeline,
    prepared,
    parts: Sequence[str] = ("val", "test"),
    statistical: Sequence[str] = ("autoets", "autotheta"),
    season: int = 0,
    history: int = 3000,
    gbm: bool = False,
    seed: int = 0,
    forward_history: int | None = None,
) -> dict[str, ForecastEvaluation]:
    """`evaluate_forecaster` on several parts, the baselines fitted once. The statistical
    models forecast the test part only: forecasting from every origin is most of an
    evaluation's time (`forward` per origin), and no choice is made on their validation
    figures; ridge and naive score every part."""
    from rnnpipe.pipelines.forecast.baselines import StatisticalForecast

    baselines = fit_forecast_baselines(
        prepared, statistical, season, history, tuple(getattr(pipeline, "quantiles", ())), gbm, seed, forward_history
    )
    cheap = {k: b for k, b in baselines.items() if not isinstance(b, StatisticalForecast)}
    return {
        part: evaluate_forecaster(pipeline, prepared, part, baselines if part == "test" else cheap, season)
        for part in parts
    }
