"""Metrics and plots of a run: forecasts against the naive (persistence) baseline, event
warnings (binary, with a threshold) and text classes (any number of classes)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    mean_absolute_percentage_error,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

from rnnpipe.errors import DataError  # noqa: E402


def _scores(pred: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    a, p = actual.reshape(-1), pred.reshape(-1)
    denom = np.abs(a) + np.abs(p)
    smape = np.divide(2 * np.abs(a - p), denom, out=np.zeros_like(denom), where=denom > 0)
    return {
        "mae": float(mean_absolute_error(a, p)),
        "rmse": float(root_mean_squared_error(a, p)),
        "mape": float(mean_absolute_percentage_error(a, p) * 100),
        "smape": float(smape.mean() * 100),
    }


def mase_scales(frame, split, season: int = 0) -> dict[str, float]:
    """Per series, the in-sample MAE of the (seasonal) naive forecast on the training part:
    mean |y_t - y_{t-m}| with m = `season` (1 when 0). MASE divides a forecast's MAE by it
    (Hyndman & Koehler 2006; the M4 competition's definition). Pairs with a gap are left out."""
    m = max(int(season), 1)
    out = {}
    for sid, (lo, train_end, _, _) in zip(frame.series, split.bounds):
        y = frame.target[lo:train_end]
        d = np.abs(y[m:] - y[:-m]) if len(y) > m else np.array([])
        d = d[np.isfinite(d)]
        out[sid] = float(d.mean()) if len(d) else float("nan")
    return out


def forecast_metrics(
    pred: np.ndarray,
    actual: np.ndarray,
    last: np.ndarray,
    series: Sequence[str],
    prefix: str = "test",
    baselines: dict[str, np.ndarray] | None = None,
    scales: dict[str, float] | None = None,
) -> dict[str, float]:
    """Model and baseline metrics in the target's units, overall and per series.

    pred, actual: (N, H); last: (N,) last observed values (the naive forecast for every step);
    series: (N,) series id of each window; baselines: name -> (N, H) forecasts of other
    methods on the same windows (naive is always included). Names: `test_mae`,
    `naive_test_mae`, `ridge_test_mae`, `autoets_test_mae`, `test_mae_vs_naive` (model /
    baseline; below 1 beats it), per series `test_mae.AAPL`; the last step ahead alone:
    `test_mae_last_step`, `naive_test_mae_last_step`. MAPE and sMAPE are in percent.

    With `scales` (`mase_scales`), MASE too: per series its MAE over the series' scale, and
    overall (`test_mase`) the mean of the per-series figures, as M4 averages them.
    """
    naive = np.repeat(np.asarray(last, dtype=np.float64)[:, None], pred.shape[1], axis=1)
    methods = {"naive": naive, **(baselines or {})}
    series = np.asarray(series)
    out: dict[str, float] = {}
    groups = [("", np.ones(len(series), dtype=bool))] + [(f".{s}", series == s) for s in dict.fromkeys(series)]
    for suffix, m in groups:
        model = _scores(pred[m], actual[m])
        for k in ("mae", "rmse", "mape", "smape"):
            out[f"{prefix}_{k}{suffix}"] = model[k]
        for name, forecast in methods.items():
            base = _scores(forecast[m], actual[m])
            for k in ("mae", "rmse", "mape", "smape"):
                out[f"{name}_{prefix}_{k}{suffix}"] = base[k]
            for k in ("mae", "rmse"):
                out[f"{prefix}_{k}_vs_{name}{suffix}"] = model[k] / base[k] if base[k] > 0 else float("nan")
    if scales is not None:
        names = list(dict.fromkeys(series))
        for name in ["", *methods]:
            base = f"{name + '_' if name else ''}{prefix}"
            per = []
            for s in names:
                scale = scales.get(s, float("nan"))
                v = out[f"{base}_mae.{s}"] / scale if scale > 0 else float("nan")
                out[f"{base}_mase.{s}"] = v
                per.append(v)
            out[f"{base}_mase"] = float(np.mean(per))
    for name, forecast in {"": pred, **methods}.items():
        out[f"{name + '_' if name else ''}{prefix}_mae_last_step"] = float(
            np.mean(np.abs(forecast[:, -1] - actual[:, -1]))
        )
    return out


def interval_name(quantiles: Sequence[float]) -> str:
    """`coverage_80` for the outermost pair 0.1 / 0.9 (its nominal coverage in percent)."""
    return f"coverage_{round(100 * (quantiles[-1] - quantiles[0])):g}"


# a baseline's scores that stay metrics of the run (the model's own all do; per series, the MAE of each;
# a baseline's own figures without a part too: `autoets_fit_s`, `autoets_fallback_series`);
# everything else is in the run's table artefact `metrics/all.json` (`metric_rows`)
HEADLINE_SCORES = ("mae", "rmse", "mase", "pinball", "coverage_80")
HEADLINE_PER_SERIES = ("mae",)


def parse_metric(key: str, methods: Sequence[str], series: Sequence[str]) -> dict[str, str]:
    """A forecasting metric's name in parts: `autoets_test_mase.AAPL` -> method autoets, part
    test, score mase, series AAPL (the model's method is "model"; a score of no part, like
    `autoets_fit_s`, has part "")."""
    base, name = key, ""
    for s in series:
        if key.endswith(f".{s}"):
            base, name = key[: -len(s) - 1], str(s)
            break
    method = next((m for m in methods if m and base.startswith(f"{m}_")), "")
    rest = base[len(method) + 1 :] if method else base
    part, _, score = rest.partition("_")
    if part not in ("train", "val", "test", "backtest"):
        part, score = "", rest
    return {"metric": key, "method": method or "model", "part": part, "score": score, "series": name}


def metric_rows(metrics: dict[str, float], methods: Sequence[str], series: Sequence[str]) -> list[dict]:
    """Every metric as a row (metric, method, part, score, series, value): the run's table."""
    return [{**parse_metric(k, methods, series), "value": float(v)} for k, v in sorted(metrics.items())]


def headline_metrics(metrics: dict[str, float], methods: Sequence[str], series: Sequence[str]) -> dict[str, float]:
    """The metrics a run logs as MLflow metrics: the model's own, each baseline's HEADLINE_SCORES,
    and per series only the MAE of each; a run of three series logs about 130 instead of 400,
    so `train_loss` and `val_loss` stay findable in the UI."""
    out = {}
    for k, v in metrics.items():
        m = parse_metric(k, methods, series)
        own = m["method"] == "model"
        if m["series"] and m["score"] not in HEADLINE_PER_SERIES:
            continue
        if own or m["score"] in HEADLINE_SCORES or not m["part"]:  # not m["part"]: fit_s, fallback_series
            out[k] = v
    return out


def quantile_metrics(
    bands: np.ndarray,
    actual: np.ndarray,
    quantiles: Sequence[float],
    series: Sequence[str],
    prefix: str = "test",
    name: str = "",
) -> dict[str, float]:
    """Scores of quantile forecasts `bands` (N, H, Q) of `actual` (N, H), in the target's
    units, overall and per series (`.SERIES`):

    - `pinball`: the pinball (quantile) loss mean(max(q (y - f), (q - 1) (y - f))) over
      windows, steps and levels; lower is better, and for q = 0.5 it is half the MAE;
    - `coverage_80` (named after the outermost pair's nominal coverage): the share of
      targets inside [lowest, highest] quantile; `interval_width`: the mean width of it;
    - `share_below_q0.1`, ...: the share of targets at or below each quantile (a calibrated
      forecast has it equal to the level; the calibration plot shows it).

    Windows whose band is not finite (a statistical baseline's naive fallback) are left out.
    Names take the method's prefix: `test_pinball`, `naive_test_pinball`.
    """
    q = np.asarray(quantiles, dtype=np.float64)
    base = f"{name + '_' if name else ''}{prefix}"
    cover = interval_name(quantiles)
    series = np.asarray(series)
    ok = np.isfinite(bands).all(axis=(1, 2))
    out: dict[str, float] = {}
    groups = [("", ok)] + [(f".{s}", ok & (series == s)) for s in dict.fromkeys(series)]
    for suffix, m in groups:
        b, y = bands[m], actual[m][..., None]
        if len(b) == 0:
            continue
        diff = y - b
        out[f"{base}_pinball{suffix}"] = float(np.maximum(q * diff, (q - 1) * diff).mean())
        inside = (y[..., 0] >= b[..., 0]) & (y[..., 0] <= b[..., -1])
        out[f"{base}_{cover}{suffix}"] = float(inside.mean())
        out[f"{base}_interval_width{suffix}"] = float((b[..., -1] - b[..., 0]).mean())
        if not suffix:
            for k, level in enumerate(quantiles):
                out[f"{base}_share_below_q{level:g}"] = float((y[..., 0] <= b[..., k]).mean())
    return out


def plot_calibration(metrics: dict[str, float], quantiles: Sequence[float], methods: Sequence[str], part: str = "test"):
    """Nominal level vs the observed share of targets at or below each quantile, per method."""
    fig, ax = plt.subplots(figsize=(5, 5))
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
    fig, axes = plt.subplots(len(names), 1, figsize=(11, 3.2 * len(names)), squeeze=False)
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


def plot_loss_curves(history: Sequence[dict[str, float]], best_epoch: int | None = None):
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], marker="o", ms=3, label="train_loss")
    ax.plot(epochs, [h["val_loss"] for h in history], marker="o", ms=3, label="val_loss")
    if best_epoch:
        ax.axvline(best_epoch, color="gray", ls="--", lw=1, label=f"best epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (scaled units)")
    ax.set_title("loss curves")
    ax.grid(alpha=0.3)
    ax.legend()
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
    from rnnpipe.baselines import GradientBoostingForecast, NaiveQuantiles, RidgeForecast, StatisticalForecast

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
    from rnnpipe.forecast_config import BaselinesConfig

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
    from rnnpipe.baselines import StatisticalForecast

    baselines = fit_forecast_baselines(
        prepared, statistical, season, history, tuple(getattr(pipeline, "quantiles", ())), gbm, seed, forward_history
    )
    cheap = {k: b for k, b in baselines.items() if not isinstance(b, StatisticalForecast)}
    return {
        part: evaluate_forecaster(pipeline, prepared, part, baselines if part == "test" else cheap, season)
        for part in parts
    }


# --- classification -----------------------------------------------------------------------


def choose_threshold(y: np.ndarray, score: np.ndarray, objective: str = "f1", target_recall: float = 0.8) -> float:
    """A decision threshold on validation scores: the one with the highest F1, or the highest
    threshold that still reaches `target_recall`. Predict positive when score >= threshold.
    Always finite: without a positive there is nothing to choose on, and that is an error
    (`rnnpipe.monitor_prep.check_event_counts` refuses such a split before training)."""
    y = np.asarray(y)
    if y.sum() == 0:
        raise DataError("no event among the validation windows: a decision threshold cannot be chosen")
    precision, recall, thresholds = precision_recall_curve(y, score)
    precision, recall = precision[:-1], recall[:-1]
    if objective == "recall":
        ok = np.flatnonzero(recall >= target_recall)
        return float(thresholds[ok[-1]]) if len(ok) else float(thresholds[0])
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    return float(thresholds[int(np.argmax(f1))])


def classification_metrics(
    y: np.ndarray, score: np.ndarray, threshold: float, prefix: str = "test", suffix: str = ""
) -> dict[str, float]:
    """F1, precision and recall of the event class, macro-F1, ROC-AUC and PR-AUC, plus the
    confusion counts. Names like `test_f1`, `test_f1_onset` (suffix "_onset").

    Undefined is NaN, never 0: without an event, F1, recall and the AUCs are NaN (and
    precision too when nothing was flagged), so a gate can tell "cannot judge" from "wrong"."""
    y = np.asarray(y).astype(int)
    pred = (np.asarray(score) >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    events = tp + fn > 0
    nan = float("nan")
    out = {
        "f1": f1_score(y, pred, zero_division=0) if events else nan,
        "precision": precision_score(y, pred, zero_division=0) if events or tp + fp > 0 else nan,
        "recall": recall_score(y, pred, zero_division=0) if events else nan,
        "macro_f1": f1_score(y, pred, average="macro", zero_division=0),
        "roc_auc": roc_auc_score(y, score) if both else float("nan"),
        "pr_auc": average_precision_score(y, score) if both else float("nan"),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }
    return {f"{prefix}_{k}{suffix}": float(v) for k, v in out.items()}


def alert_lead_times(
    events: np.ndarray, offsets: np.ndarray, ends: np.ndarray, alerts: np.ndarray, horizon: int
) -> np.ndarray:
    """For every event onset (event now, none at the previous step) that the scored windows
    could have warned of, the lead in steps of the first alert among the windows ending in
    the `horizon` steps before it; 0 where no alert fired in time."""
    alert_at = np.zeros(len(events), dtype=bool)
    scored = np.zeros(len(events), dtype=bool)
    alert_at[ends[alerts]] = True
    scored[ends] = True
    prev = np.r_[np.nan, events[:-1]]
    prev[offsets[:-1]] = np.nan
    onsets = np.flatnonzero((events == 1) & (prev == 0))
    leads = []
    for t in onsets:
        lo = max(t - horizon, int(offsets[np.searchsorted(offsets, t, side="right") - 1]))
        if not scored[lo:t].any():
            continue
        fired = np.flatnonzero(alert_at[lo:t])
        leads.append(t - (lo + fired[0]) if len(fired) else 0)
    return np.asarray(leads, dtype=np.int64)


def plot_confusion(metrics: dict[str, float], prefix: str = "test", suffix: str = "", title: str = "confusion matrix"):
    m = np.array(
        [
            [metrics[f"{prefix}_tn{suffix}"], metrics[f"{prefix}_fp{suffix}"]],
            [metrics[f"{prefix}_fn{suffix}"], metrics[f"{prefix}_tp{suffix}"]],
        ]
    )
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, f"{int(v):,}", ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    ax.set_xticks([0, 1], ["no alert", "alert"])
    ax.set_yticks([0, 1], ["no event", "event"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual (within horizon)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_comparison(
    rows: Sequence[dict],
    keys: Sequence[str] = ("f1_onset", "pr_auc_onset", "f1_all"),
    title: str = "test: model vs baselines",
):
    """Grouped bars: one group per metric, one bar per method."""
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        vals = [row[k] for k in keys]
        bars = ax.bar(np.arange(len(keys)) + i * width, vals, width, label=row["method"])
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(np.arange(len(keys)) + width * (len(rows) - 1) / 2, keys)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


# --- multi-class (text) classification ----------------------------------------------------


def decide(proba: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class codes from probabilities: argmax, or for two classes with a `threshold`, class 1
    when its probability reaches the threshold."""
    if threshold is not None and proba.shape[1] == 2:
        return (proba[:, 1] >= threshold).astype(np.int64)
    return proba.argmax(axis=1)


def tune_binary_threshold(y: np.ndarray, p1: np.ndarray) -> float:
    """The threshold on P(class 1) with the highest macro-F1 on (validation) data; ties go to
    the one nearest 0.5."""
    y = np.asarray(y).astype(int)
    candidates = np.unique(np.concatenate([np.quantile(p1, np.linspace(0, 1, 257)), [0.5]]))
    best, best_t = -1.0, 0.5
    for t in sorted(candidates, key=lambda t: abs(t - 0.5)):
        pred = p1 >= t
        tp, fp, fn = np.sum(pred & (y == 1)), np.sum(pred & (y == 0)), np.sum(~pred & (y == 1))
        tn = len(y) - tp - fp - fn
        f1_1 = 2 * tp / max(2 * tp + fp + fn, 1)
        f1_0 = 2 * tn / max(2 * tn + fn + fp, 1)
        if (f1_0 + f1_1) / 2 > best + 1e-12:
            best, best_t = (f1_0 + f1_1) / 2, float(t)
    return best_t


def metric_key(name: str) -> str:
    """A class name as MLflow accepts it in a metric key."""
    return "".join(ch if ch.isalnum() or ch in "_-. /" else "_" for ch in str(name))


def text_classification_metrics(
    y: np.ndarray, proba: np.ndarray, pred: np.ndarray, classes: Sequence[str], prefix: str
) -> dict[str, float]:
    """Accuracy, macro-F1, F1 / precision / recall of each class (`{prefix}_f1.<class>`) and
    ROC-AUC (binary: of class 1; several classes: one-vs-rest macro average)."""
    y, pred = np.asarray(y), np.asarray(pred)
    labels = list(range(len(classes)))
    out = {
        "accuracy": accuracy_score(y, pred),
        "macro_f1": f1_score(y, pred, labels=labels, average="macro", zero_division=0),
    }
    f1 = f1_score(y, pred, labels=labels, average=None, zero_division=0)
    prec = precision_score(y, pred, labels=labels, average=None, zero_division=0)
    rec = recall_score(y, pred, labels=labels, average=None, zero_division=0)
    for i, c in enumerate(classes):
        out[f"f1.{metric_key(c)}"], out[f"precision.{metric_key(c)}"] = f1[i], prec[i]
        out[f"recall.{metric_key(c)}"] = rec[i]
    present = np.unique(y)
    if len(classes) == 2 and len(present) == 2:
        out["roc_auc"] = roc_auc_score(y, proba[:, 1])
    elif len(present) == len(classes) > 2:
        out["roc_auc"] = roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=labels)
    else:
        out["roc_auc"] = float("nan")
    return {f"{prefix}_{k}": float(v) for k, v in out.items()}


def paired_bootstrap_macro_f1(
    y: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    n_classes: int,
    replicates: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Macro-F1 of `pred_a` minus that of `pred_b` on the same rows, and a percentile interval
    of that difference from a paired bootstrap: each replicate draws the rows with replacement
    once and scores both predictions on the draw, so what the two get right together cancels
    (Efron & Tibshirani 1993; the usual check that one classifier beats another on one test
    set). Per class F1 = 2tp / (2tp + fp + fn), 0 where a class is neither present nor
    predicted, as `text_classification_metrics` scores it. Returns diff, ci_low, ci_high and
    p_not_better (the share of replicates where a does not beat b)."""
    y, a, b = (np.asarray(v, dtype=np.int64) for v in (y, pred_a, pred_b))
    n = len(y)
    if n == 0:
        raise ValueError("no rows to compare")
    ind = []  # (n, 6 per class) indicators: tp, fp, fn of a, then of b
    for c in range(n_classes):
        t = y == c
        for p in (a, b):
            q = p == c
            ind += [t & q, ~t & q, t & ~q]
    ind = np.stack(ind, axis=1).astype(np.float64)

    def macro(counts: np.ndarray) -> np.ndarray:  # (R, 6K) -> (R,) a's minus b's macro-F1
        c = counts.reshape(len(counts), n_classes, 2, 3)
        tp, fp, fn = c[..., 0], c[..., 1], c[..., 2]
        den = 2 * tp + fp + fn
        f1 = np.divide(2 * tp, den, out=np.zeros_like(den), where=den > 0).mean(axis=1)
        return f1[:, 0] - f1[:, 1]

    rng = np.random.default_rng(seed)
    per = max(1, 4_000_000 // n)  # replicates per draw: about 32 MB of weights at a time
    diffs = []
    for start in range(0, replicates, per):
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=min(per, replicates - start))
        diffs.append(macro(w @ ind))
    diffs = np.concatenate(diffs)
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return {
        "diff": float(macro(ind.sum(axis=0, keepdims=True))[0]),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p_not_better": float(np.mean(diffs <= 0)),
    }


def plot_confusion_matrix(y: np.ndarray, pred: np.ndarray, classes: Sequence[str], title: str):
    """Counts of actual (rows) by predicted (columns) class, with row shares in brackets."""
    k = len(classes)
    m = confusion_matrix(y, pred, labels=list(range(k)))
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    size = 2.6 + 0.7 * k
    fig, ax = plt.subplots(figsize=(size + 0.6, size))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(m):
        ax.text(
            j,
            i,
            f"{v:,}\n({share[i, j]:.0%})",
            ha="center",
            va="center",
            fontsize=8,
            color="white" if share[i, j] > 0.5 else "black",
        )
    ax.set_xticks(range(k), [str(c) for c in classes], rotation=30 if k > 3 else 0)
    ax.set_yticks(range(k), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
