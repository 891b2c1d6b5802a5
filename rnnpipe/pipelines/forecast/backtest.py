"""Rolling-origin backtests of a forecaster: many forecast origins instead of one test split.

Fold k of N has an origin o_k; the folds' test parts are consecutive blocks of `step` rows
at the end of every series (fold N ends at the series' last row). A fold's model is trained
on the rows before its origin only (the last `split.val / (split.train + split.val)` of them
for validation), and forecasts, with the configured horizon, every target in
[o_k, o_k + step): the expanding-window evaluation of Tashman (2000), Darts' `backtest` and
StatsForecast's `cross_validation`. With `refit="once"` fold 1's model (and its baselines)
serves every fold, reading each fold's history up to its origin, as a deployed model would.

The baselines (naive with empirical quantiles, ridge, the StatsForecast models) are fitted
on each fold's training part, exactly as a normal run fits them. Per fold the metrics carry
the usual test names (`test_mae`, `autoets_test_mae`, ...); over the folds
(`combine_folds`) they are the means of the folds' figures, named `backtest_mae`,
`naive_backtest_mae`, `backtest_mase`, ...
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rnnpipe.errors import ConfigError, DataError
from rnnpipe.evaluation import subplots
from rnnpipe.features.splits import Split
from rnnpipe.features.windows import window_ends
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.series import SeriesFrame


def fold_splits(frame: SeriesFrame, cfg: ForecastConfig) -> list[Split]:
    """One `Split` per fold: per series [start, train end, origin, origin + step]."""
    b, s = cfg.backtest, cfg.split
    val_share = s.val / (s.train + s.val)
    need = cfg.window.lookback + cfg.window.horizon + 2
    out = []
    for k in range(1, b.folds + 1):
        rows = []
        for i, sid in enumerate(frame.series):
            lo, hi = frame.bounds(i)
            origin = hi - (b.folds - k + 1) * b.step
            before = origin - lo
            if before < 2 * need:
                raise DataError(
                    f"{frame.source}: series {sid!r} has {hi - lo} rows: too few for backtest.folds={b.folds} "
                    f"of backtest.step={b.step} (fold {k} would train on {max(before, 0)} rows); "
                    "use fewer folds or a smaller step"
                )
            train_end = lo + int(round(before * (1 - val_share)))
            rows.append([lo, train_end, origin, origin + b.step])
        out.append(Split(np.asarray(rows, dtype=np.int64)))
    return out


@dataclass
class FoldResult:
    fold: int
    origins: dict[str, str]  # series -> timestamp of the first forecast target
    train_rows: int
    metrics: dict[str, float]
    seconds: float
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def _origins(frame: SeriesFrame, split: Split) -> dict[str, str]:
    return {
        sid: str(np.datetime_as_string(frame.timestamps[split.bounds[i, 2]], unit="D"))
        for i, sid in enumerate(frame.series)
    }


def train_fold(cfg: ForecastConfig, frame: SeriesFrame, split: Split, label: str = ""):
    """Fit the preprocessing and the model on one fold's training part: (pipeline, prepared, fit);
    `label` (`fold 2`) starts the training's log lines, which interleave when folds run side by side."""
    from rnnpipe.pipelines.forecast.artefact import ForecastPipeline
    from rnnpipe.pipelines.forecast.prepare import prepare
    from rnnpipe.training import fit

    p = prepare(frame, split, cfg)
    pipe = ForecastPipeline(cfg, p.preprocessor)
    result = fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, progress=False, label=label)
    return pipe, p, result


def evaluate_fold(pipeline, prepared, baselines: dict[str, object], split: Split, cfg: ForecastConfig):
    """The test metrics of one fold: its test windows scored with `prepared`'s inputs (the
    preprocessing the model was fitted with) and `baselines` fitted on a training part."""
    from rnnpipe.pipelines.forecast.evaluation import evaluate_forecaster

    pre = prepared.preprocessor
    valid = ~np.isnan(prepared.frame.values).any(axis=1)
    ends = window_ends(
        split, "test", pre.lookback, pre.horizon, pre.encoding.skip, valid=None if valid.all() else valid
    )
    if len(ends) == 0:
        raise DataError(
            f"{prepared.frame.source}: no complete test window in a backtest fold "
            "(backtest.step shorter than window.horizon?)"
        )
    fold = replace(prepared, ends={**prepared.ends, "test": ends})
    return evaluate_forecaster(pipeline, fold, "test", baselines, cfg.window.season)


def run_fold(cfg: ForecastConfig, frame: SeriesFrame, k: int, trained=None) -> FoldResult:
    """Fold k (1-based): trained here on the rows before its origin (refit), or scored with
    `trained` = (pipeline, prepared, baselines) from fold 1 (refit once)."""
    from rnnpipe.pipelines.forecast.artefact import baseline_settings
    from rnnpipe.pipelines.forecast.evaluation import fit_forecast_baselines

    t0 = time.perf_counter()
    splits = fold_splits(frame, cfg)
    split = splits[k - 1]
    best_epoch, history = 0, []
    if trained is None:
        pipe, p, result = train_fold(cfg, frame, split, f"fold {k}")
        baselines = fit_forecast_baselines(p, **baseline_settings(cfg), quantiles=pipe.quantiles)
        best_epoch, history = result.best_epoch, result.history
    else:
        pipe, p, baselines = trained
    ev = evaluate_fold(pipe, p, baselines, split, cfg)
    train_rows = int(np.sum(p.split.bounds[:, 1] - p.split.bounds[:, 0]))
    metrics = {**ev.metrics, "fold_test_windows": float(len(ev.pred)), "fold_train_rows": float(train_rows)}
    return FoldResult(k, _origins(frame, split), train_rows, metrics, time.perf_counter() - t0, best_epoch, history)


def train_once(cfg: ForecastConfig, frame: SeriesFrame):
    """For `refit="once"`: fold 1's model, its prepared data and baselines, shared by every fold."""
    from rnnpipe.pipelines.forecast.artefact import baseline_settings
    from rnnpipe.pipelines.forecast.evaluation import fit_forecast_baselines

    pipe, p, result = train_fold(cfg, frame, fold_splits(frame, cfg)[0], "fold 1")
    baselines = fit_forecast_baselines(p, **baseline_settings(cfg), quantiles=pipe.quantiles)
    return (pipe, p, baselines), result


def methods(metrics: dict[str, float]) -> list[str]:
    """The methods scored in a fold's metrics: "" (the model), "naive", "ridge", "autoets", ..."""
    return [""] + [k[: -len("_test_mae")] for k in metrics if k.endswith("_test_mae")]


BACKTEST_SCORES = ("mae", "rmse", "mase", "smape", "pinball", "coverage_80", "interval_width")


def combine_folds(folds: list[FoldResult]) -> dict[str, float]:
    """Means over the folds of each method's scores: `backtest_mae`, `naive_backtest_mae`,
    `autoets_backtest_mase`, ..., and `backtest_mae_vs_<method>` (model mean / method mean)."""
    if not folds:
        raise ConfigError("a backtest needs at least one fold")
    out: dict[str, float] = {}
    for name in methods(folds[0].metrics):
        pre = f"{name}_" if name else ""
        for score in BACKTEST_SCORES:
            values = [f.metrics.get(f"{pre}test_{score}", np.nan) for f in folds]
            if np.isfinite(values).all():
                out[f"{pre}backtest_{score}"] = float(np.mean(values))
    for name in methods(folds[0].metrics)[1:]:
        if out.get(f"{name}_backtest_mae", 0) > 0:
            out[f"backtest_mae_vs_{name}"] = out["backtest_mae"] / out[f"{name}_backtest_mae"]
    out["backtest_folds"] = float(len(folds))
    return out


def fold_rows(folds: list[FoldResult]) -> list[dict[str, Any]]:
    """The table of a backtest: one row per fold, the MAE and MASE of every method, the
    model's pinball and coverage beside naive's."""
    rows = []
    for f in folds:
        m = f.metrics
        row: dict[str, Any] = {
            "fold": f.fold,
            "origin": min(f.origins.values()),
            "train_rows": f.train_rows,
            "test_windows": int(m["fold_test_windows"]),
        }
        for name in methods(m):
            pre = f"{name}_" if name else ""
            label = name or "model"
            for score in ("mae", "mase"):
                if f"{pre}test_{score}" in m:
                    row[f"{label}_{score}"] = round(m[f"{pre}test_{score}"], 5)
        for name in ("", "naive"):
            pre = f"{name}_" if name else ""
            for score in ("pinball", "coverage_80"):
                if f"{pre}test_{score}" in m:
                    row[f"{name or 'model'}_{score}"] = round(m[f"{pre}test_{score}"], 5)
        row["seconds"] = round(f.seconds, 1)
        rows.append(row)
    return rows


def plot_folds(folds: list[FoldResult], score: str = "mae"):
    """The score of the model and of every baseline per fold."""

    fig, ax = subplots(figsize=(8, 4.5))
    ks = [f.fold for f in folds]
    for name in methods(folds[0].metrics):
        pre = f"{name}_" if name else ""
        values = [f.metrics.get(f"{pre}test_{score}", np.nan) for f in folds]
        ax.plot(ks, values, marker="o", lw=2.2 if not name else 1.2, label=name or "model")
    ax.set_xticks(ks, [f"{f.fold}\n{min(f.origins.values())}" for f in folds], fontsize=8)
    ax.set_xlabel("fold (origin)")
    ax.set_ylabel(f"test {score.upper()}")
    ax.set_title(f"backtest: {score.upper()} per fold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
