"""Forecast scores: MAE, RMSE, MAPE, sMAPE and MASE of point forecasts, pinball loss and
coverage of quantile forecasts, and how they are named (`<method>_<part>_<score>[.<series>]`),
tabled (`metrics/all.json`) and chosen as headline metrics for MLflow."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    root_mean_squared_error,
)


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
