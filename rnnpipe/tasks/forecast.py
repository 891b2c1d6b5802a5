"""Tasks of the forecasting pipeline (stocks): each wraps one library call."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from rnnpipe.evaluation import evaluate_forecasts, headline_metrics, metric_rows
from rnnpipe.features.splits import Split, chronological_split
from rnnpipe.forecast import ForecastPipeline, ForecastPrepared, baseline_settings, prepare
from rnnpipe.forecast_config import ForecastConfig
from rnnpipe.ingest import load_forecast_data
from rnnpipe.io import SeriesFrame
from rnnpipe.registry import Run
from rnnpipe.tasks.common import IO


@task(name="ingest", cache_policy=NO_CACHE, **IO)
def ingest(cfg: ForecastConfig) -> SeriesFrame:
    frame = load_forecast_data(cfg)
    get_run_logger().info(
        "read %d rows of %d series from %s (sha256 %s)",
        len(frame),
        len(frame.series),
        frame.source,
        frame.fingerprint[:12],
    )
    return frame


@task(name="split", cache_policy=NO_CACHE)
def split_series(frame: SeriesFrame, cfg: ForecastConfig) -> Split:
    s = cfg.split
    split = chronological_split(frame, s.train, s.val, s.val_start, s.test_start)
    rows = [{"series": k, **v} for k, v in split.summary(frame).items()]
    create_table_artifact(rows, key="stocks-split", description="chronological split per series")
    return split


@task(name="prepare", cache_policy=NO_CACHE)
def prepare_windows(frame: SeriesFrame, split: Split, cfg: ForecastConfig) -> ForecastPrepared:
    prepared = prepare(frame, split, cfg)
    get_run_logger().info(
        "windows: %s (lookback %d, horizon %d, target %s)",
        prepared.counts(),
        cfg.window.lookback,
        cfg.window.horizon,
        cfg.window.target,
    )
    return prepared


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(
    pipeline: ForecastPipeline, prepared: ForecastPrepared, run_id: str
) -> tuple[dict[str, float], dict[str, object]]:
    """Validation and test metrics in price units against the naive forecast and the other
    baselines; and the fitted baselines (one may be registered when the model loses)."""
    run = Run(run_id)
    evs = evaluate_forecasts(pipeline, prepared, **baseline_settings(pipeline.config))
    val, test = evs["val"], evs["test"]
    metrics = {**val.metrics, **test.metrics}
    names, series = test.names(), list(dict.fromkeys(test.series))
    run.log_metrics(headline_metrics(metrics, names, series))
    run.log_table(metric_rows(metrics, names, series), "metrics/all.json")
    for path, fig in test.figures().items():
        run.log_figure(fig, path)
    run.log_dict(test.per_series(), "metrics/per_series.json")
    note = "\n\n".join(filter(None, [test.standing(), test.interval_standing()]))
    run.set_tags({"vs_naive": test.standing(), "mlflow.note.content": note})
    create_table_artifact(test.per_series(), key="stocks-test-metrics", description=note)
    for line in note.split("\n\n"):
        get_run_logger().info(line)
    return metrics, test.fitted
