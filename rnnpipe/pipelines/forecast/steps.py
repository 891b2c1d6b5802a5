"""The stocks forecaster's steps (`rnnpipe.steps`): ingest -> split and window -> train ->
evaluate against naive, ridge, the statistical models and gradient boosting -> register (and,
when the model loses, the best servable baseline as a version of the same model)."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.steps import Context, Evaluated, TrainingSteps

log = logging.getLogger(__name__)

HEADLINE = (
    "test_mae",
    "test_rmse",
    "test_mape",
    "naive_test_mae",
    "naive_test_rmse",
    "test_mae_vs_naive",
    "test_pinball",
    "naive_test_pinball",
    "test_coverage_80",
)


class ForecastSteps(TrainingSteps):
    kind: ClassVar[str] = "stocks"

    def ingest(self, cfg: ForecastConfig, ctx: Context):
        from rnnpipe.pipelines.forecast.data import load_forecast_data

        frame = load_forecast_data(cfg)
        log.info(
            "read %d rows of %d series from %s (sha256 %s)",
            len(frame),
            len(frame.series),
            frame.source,
            frame.fingerprint[:12],
        )
        return frame

    def prepare(self, frame, cfg: ForecastConfig, ctx: Context):
        from rnnpipe.features.splits import chronological_split
        from rnnpipe.pipelines.forecast.prepare import prepare

        s = cfg.split
        split = chronological_split(frame, s.train, s.val, s.val_start, s.test_start)
        rows = [{"series": k, **v} for k, v in split.summary(frame).items()]
        ctx.artifacts.table("stocks-split", rows, "chronological split per series")
        prepared = prepare(frame, split, cfg)
        w = cfg.window
        log.info("windows: %s (lookback %d, horizon %d, target %s)", prepared.counts(), w.lookback, w.horizon, w.target)
        return prepared

    def data_summary(self, frame, prepared) -> dict[str, Any]:
        return {"series": frame.series, "windows": prepared.counts(), "parts": prepared.split.summary(frame)}

    def build(self, cfg: ForecastConfig, prepared, state, run_id: str, ctx: Context):
        from rnnpipe.pipelines.forecast.artefact import ForecastPipeline

        return ForecastPipeline(cfg, prepared.preprocessor)

    def evaluate(self, pipeline, prepared, result, run_id: str, ctx: Context) -> Evaluated:
        """Validation and test metrics in price units against the naive forecast and the other
        baselines; and the fitted baselines (one may be registered when the model loses)."""
        from rnnpipe.pipelines.forecast.artefact import baseline_settings
        from rnnpipe.pipelines.forecast.evaluation import evaluate_forecasts

        evs = evaluate_forecasts(pipeline, prepared, **baseline_settings(pipeline.config))
        val, test = evs["val"], evs["test"]
        metrics = {**val.metrics, **test.metrics}
        note = log_forecast_evaluation(run_id, test, metrics)
        ctx.artifacts.table("stocks-test-metrics", test.per_series(), note)
        return Evaluated(metrics, test.fitted)

    def profile(self, cfg: ForecastConfig, frame, prepared, pipeline, evaluation: Evaluated):
        """The reference of drift reports: the training part's channels, pooled and per
        series (the largest `rnnpipe.drift.MAX_GROUPS`), and the one-step forecasts from every
        validation window."""
        import numpy as np

        from rnnpipe.drift import MAX_GROUPS, profile, sample
        from rnnpipe.pipelines.forecast.artefact import after_first, row_series

        train = prepared.split.mask("train", len(frame)) & after_first(frame)  # first rows: no change
        values = pipeline.drift_features(frame)
        features = {k: sample(v[train]) for k, v in values.items()}
        series = row_series(frame)
        rows = np.bincount(series.codes[train], minlength=len(series.categories))
        largest = [c for c in np.argsort(-rows, kind="stable")[:MAX_GROUPS] if rows[c]]
        groups = {
            series.categories[c]: {k: sample(v[train & (series.codes == c)]) for k, v in values.items()}
            for c in largest
        }
        ends = prepared.ends["val"]
        point, _ = pipeline.predict_windows(prepared.frame, ends, prepared.inputs)
        predictions = pipeline.drift_predictions(point[:, 0], prepared.frame.target[ends])
        meta = {"train_rows": int(train.sum()), "val_windows": len(ends)}
        return profile(features, predictions, cfg.drift, meta=meta, groups=groups)

    def example(self, cfg: ForecastConfig, frame, prepared):
        from rnnpipe.pipelines.forecast.artefact import history_example

        return history_example(frame, cfg, n_series=2)

    def baseline(self, cfg: ForecastConfig, prepared, evaluation: Evaluated, decision):
        from rnnpipe.pipelines.forecast.baseline_artefact import BaselineForecastPipeline, best_servable

        r = cfg.register
        if not (r.register_baseline and decision.rule == "baseline"):
            return None
        name = best_servable(evaluation.metrics, r.gate_baselines, r.metric)
        if not name:
            return None
        served = BaselineForecastPipeline.from_run(cfg, prepared, name, evaluation.fitted.get(name))
        return name, served, evaluation.metrics[f"{name}_{r.metric}"]

    def headline(self, cfg, pipeline, evaluation: Evaluated, side) -> dict[str, Any]:
        return {k: evaluation.metrics[k] for k in HEADLINE if k in evaluation.metrics}


def log_forecast_evaluation(run_id: str, test, metrics: dict[str, float]) -> str:
    """A forecast evaluation into its run: the headline metrics, every score in the table
    `metrics/all.json`, the plots, the per-series scores and the standing (returned, also logged)."""
    from rnnpipe.pipelines.forecast.metrics import headline_metrics, metric_rows
    from rnnpipe.registry import Run

    run = Run(run_id)
    names, series = test.names(), list(dict.fromkeys(test.series))
    run.log_metrics(headline_metrics(metrics, names, series))
    run.log_table(metric_rows(metrics, names, series), "metrics/all.json")
    for path, fig in test.figures().items():
        run.log_figure(fig, path)
    run.log_dict(test.per_series(), "metrics/per_series.json")
    note = "\n\n".join(filter(None, [test.standing(), test.interval_standing()]))
    run.set_tags({"vs_naive": test.standing(), "mlflow.note.content": note})
    for line in note.split("\n\n"):
        log.info(line)
    return note
