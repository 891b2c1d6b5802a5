"""Rolling-origin backtests of a forecaster: many forecast origins instead of one test split.

Fold k of N has an origin o_k; the folds' test parts are consecutive blocks of `step` rows
at the end of every series (fold N ends at the series' last row). A fold's model is trained
on the rows before its origin only (the last `split.val / (split.train + split.val)` of them
for validation), and forecasts, with the configured horizon, every target in
[o_k, o_k + step): the expanding-window evaluation of Tashman (2000), Darts' `backtest` and
StatsForecast's `cross_validation`. With `refit="once"` fold 1's model (and its baselines)
serves every fold, reading each fold's history up to its origin, as a deployed model would.

A fold runs the forecaster's own step sequence (`FoldSteps`, `rnnpipe.steps.train_kind`) in a
run nested under the backtest's: the same preparation, training, per-epoch curves, metric
table and plots as `rnnpipe train stocks`, without registering anything.

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
from rnnpipe.pipelines.forecast.steps import ForecastSteps, log_forecast_evaluation
from rnnpipe.series import SeriesFrame
from rnnpipe.steps import Context, Evaluated, train_kind, trial_context


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
    run_id: str = ""  # the fold's MLflow run
    trained: Any = None  # (pipeline, prepared, baselines), when asked for (refit once: fold 1's)


def _origins(frame: SeriesFrame, split: Split) -> dict[str, str]:
    return {
        sid: str(np.datetime_as_string(frame.timestamps[split.bounds[i, 2]], unit="D"))
        for i, sid in enumerate(frame.series)
    }


class FoldSteps(ForecastSteps):
    """Fold k's steps: the forecaster's own (`ForecastSteps`: the same preparation, model,
    training and MLflow record as `rnnpipe train stocks`), on the rows before the fold's origin,
    scored on the fold's test block. With `trained` = (pipeline, prepared, baselines) from fold
    1 (refit once) nothing is fitted: that model and its baselines score this fold."""

    def __init__(self, frame: SeriesFrame, k: int, trained: Any = None):
        self.frame, self.k, self.trained = frame, k, trained
        self.prepared = None

    def ingest(self, cfg: ForecastConfig, ctx: Context) -> SeriesFrame:
        return self.frame

    def prepare(self, frame: SeriesFrame, cfg: ForecastConfig, ctx: Context):
        from rnnpipe.pipelines.forecast.prepare import prepare

        split = fold_splits(frame, cfg)[self.k - 1]
        self.prepared = self.trained[1] if self.trained else prepare(frame, split, cfg)
        return self.prepared

    def build(self, cfg: ForecastConfig, prepared, state, run_id: str, ctx: Context):
        return self.trained[0] if self.trained else super().build(cfg, prepared, state, run_id, ctx)

    def fit(self, pipeline, prepared, cfg: ForecastConfig, run_id: str, checkpoint: str, ctx: Context):
        return None if self.trained else super().fit(pipeline, prepared, cfg, run_id, checkpoint, ctx)

    def evaluate(self, pipeline, prepared, result, run_id: str, ctx: Context) -> Evaluated:
        from rnnpipe.pipelines.forecast.artefact import baseline_settings
        from rnnpipe.pipelines.forecast.evaluation import fit_forecast_baselines

        cfg = pipeline.config
        if self.trained:
            baselines = self.trained[2]
        else:
            baselines = fit_forecast_baselines(prepared, **baseline_settings(cfg), quantiles=pipeline.quantiles)
        split = fold_splits(self.frame, cfg)[self.k - 1]
        ev = evaluate_fold(pipeline, prepared, baselines, split, cfg)
        train_rows = int(np.sum(prepared.split.bounds[:, 1] - prepared.split.bounds[:, 0]))
        metrics = {**ev.metrics, "fold_test_windows": float(len(ev.pred)), "fold_train_rows": float(train_rows)}
        log_forecast_evaluation(run_id, ev, metrics)
        return Evaluated(metrics, baselines)


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


def run_fold(
    cfg: ForecastConfig,
    frame: SeriesFrame,
    k: int,
    trained: Any = None,
    ctx: Context | None = None,
    keep: bool = False,
) -> FoldResult:
    """Fold k (1-based) in its own MLflow run (`ctx`: where it nests, its name and tags): the
    forecaster's step sequence trained on the rows before the fold's origin, or, with `trained`
    = (pipeline, prepared, baselines) from fold 1 (refit once), that model scored on fold k.
    `keep`: return the fitted (pipeline, prepared, baselines) in `FoldResult.trained`."""
    t0 = time.perf_counter()
    split = fold_splits(frame, cfg)[k - 1]
    ctx = ctx or trial_context(log_model=False)
    ctx.tags = {**ctx.tags, "backtest_fold": k, **{f"origin.{s}": t for s, t in _origins(frame, split).items()}}
    steps = FoldSteps(frame, k, trained)
    out = train_kind(steps, cfg, ctx)
    m, res = out.metrics, out.result
    return FoldResult(
        k,
        _origins(frame, split),
        int(m["fold_train_rows"]),
        m,
        time.perf_counter() - t0,
        res.best_epoch if res else 0,
        res.history if res else [],
        out.run_id,
        (out.pipeline, steps.prepared, out.evaluation.fitted) if keep else None,
    )


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
