"""Tasks of the forecasting pipeline (stocks): each wraps one library call."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from rnnpipe.config import ForecastConfig, flatten
from rnnpipe.errors import ModelError
from rnnpipe.evaluation import evaluate_forecaster, plot_loss_curves
from rnnpipe.features.splits import Split, chronological_split
from rnnpipe.io import SeriesFrame
from rnnpipe.pipeline import (
    ForecastPipeline,
    Prepared,
    checkpoint_path,
    history_example,
    load_forecast_data,
    prepare,
)
from rnnpipe.registry import GateDecision, Run, log_forecast_model, register_and_gate
from rnnpipe.training import FitResult, fit, read_checkpoint_meta
from tasks import retry_unless_user_error

IO = dict(retries=2, retry_delay_seconds=2, retry_condition_fn=retry_unless_user_error)


@task(name="ingest", cache_policy=NO_CACHE, **IO)
def ingest(cfg: ForecastConfig) -> SeriesFrame:
    frame = load_forecast_data(cfg.data)
    get_run_logger().info("read %d rows of %d series from %s (sha256 %s)", len(frame),
                          len(frame.series), frame.source, frame.fingerprint[:12])
    return frame


@task(name="split", cache_policy=NO_CACHE)
def split_series(frame: SeriesFrame, cfg: ForecastConfig) -> Split:
    s = cfg.split
    split = chronological_split(frame, s.train, s.val, s.val_start, s.test_start)
    rows = [{"series": k, **v} for k, v in split.summary(frame).items()]
    create_table_artifact(rows, key="stocks-split", description="chronological split per series")
    return split


@task(name="prepare", cache_policy=NO_CACHE)
def prepare_windows(frame: SeriesFrame, split: Split, cfg: ForecastConfig) -> Prepared:
    prepared = prepare(frame, split, cfg)
    get_run_logger().info("windows: %s (lookback %d, horizon %d, target %s)", prepared.counts(),
                          cfg.window.lookback, cfg.window.horizon, cfg.window.target)
    return prepared


@task(name="start-run", cache_policy=NO_CACHE, **IO)
def start_run(cfg: ForecastConfig, prepared: Prepared, resume: bool, flow_run_id: str) -> tuple[str, str]:
    """Open the MLflow run (or reopen the interrupted one) and log params, tags and the split."""
    frame = prepared.frame
    ckpt = checkpoint_path(cfg, frame.fingerprint)
    run_id = None
    if resume:
        meta = read_checkpoint_meta(ckpt)
        if meta is None:
            raise ModelError(f"--resume: no checkpoint for this config and data at {ckpt}")
        run_id = meta.get("mlflow_run_id")
    tags = {"data_fingerprint": frame.fingerprint, "data_source": str(frame.source),
            "seed": cfg.train.seed, "prefect_flow_run_id": flow_run_id, "pipeline": "stocks",
            "checkpoint": str(ckpt)}
    run = Run.start(cfg.register.experiment, tags=tags, run_id=run_id)
    run.log_params(flatten(cfg))
    run.log_dict({"series": frame.series, "windows": prepared.counts(),
                  "parts": prepared.split.summary(frame)}, "data/split.json")
    get_run_logger().info("MLflow run %s (%s)", run.id, "resumed" if run_id else "new")
    return run.id, str(ckpt)


@task(name="train", cache_policy=NO_CACHE)
def train_model(prepared: Prepared, cfg: ForecastConfig, run_id: str, checkpoint: str,
                resume: bool) -> tuple[ForecastPipeline, FitResult]:
    run = Run(run_id)
    pipeline = ForecastPipeline(cfg, prepared.preprocessor)

    def on_epoch(record: dict[str, float]) -> None:
        run.log_metrics({k: record[k] for k in ("train_loss", "val_loss", "lr", "samples_per_s")},
                        step=int(record["epoch"]))

    result = fit(pipeline.model, prepared.windows("train"), prepared.windows("val"), cfg.train,
                 checkpoint_path=checkpoint, checkpoint_meta={"key": Path(checkpoint).stem, "mlflow_run_id": run_id},
                 resume=resume, on_epoch=on_epoch)
    run.log_metrics({"best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
                     "epochs_run": len(result.history), "train_samples_per_s": result.samples_per_s})
    run.set_tags({"device": result.device, "precision": result.precision,
                  "stopped_early": result.stopped_early,
                  "resumed_from_epoch": result.resumed_from_epoch})
    run.log_figure(plot_loss_curves(result.history, result.best_epoch), "plots/loss_curves.png")
    return pipeline, result


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(pipeline: ForecastPipeline, prepared: Prepared, run_id: str) -> dict[str, float]:
    """Validation and test metrics in price units against the naive forecast."""
    run = Run(run_id)
    val, test = (evaluate_forecaster(pipeline, prepared, part) for part in ("val", "test"))
    metrics = {**val.metrics, **test.metrics}
    run.log_metrics(metrics)
    run.log_figure(test.plot(), "plots/test_forecast_vs_actual.png")
    run.log_dict(test.per_series(), "metrics/per_series.json")
    run.set_tags({"vs_naive": test.standing(), "mlflow.note.content": test.standing()})
    create_table_artifact(test.per_series(), key="stocks-test-metrics", description=test.standing())
    get_run_logger().info(test.standing())
    return metrics


@task(name="register", cache_policy=NO_CACHE, **IO)
def register_model(pipeline: ForecastPipeline, prepared: Prepared, metrics: dict[str, float],
                   cfg: ForecastConfig, run_id: str) -> GateDecision:
    run = Run(run_id)
    example = history_example(prepared.frame, cfg, n_series=2)
    model_uri = log_forecast_model(run, pipeline, example)
    decision = register_and_gate(run, model_uri, cfg.register.model_name, metrics,
                                 cfg.register.metric, cfg.register.naive_margin)
    create_markdown_artifact(
        f"**{decision.model_name} v{decision.version} -> `{decision.alias}`**\n\n{decision.reason}",
        key="stocks-registration")
    get_run_logger().info("%s v%s -> %s: %s", decision.model_name, decision.version,
                          decision.alias, decision.reason)
    return decision
