"""Tasks of the monitoring pipeline (early warning): each wraps one library call."""

from __future__ import annotations

import contextlib

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from rnnpipe.evaluation import plot_comparison, plot_confusion
from rnnpipe.ingest import Shards, load_monitor_data
from rnnpipe.io import SeriesFrame
from rnnpipe.monitor import (
    MonitorPipeline,
    MonitorPrepared,
    comparison_table,
    evaluate_channel_forecast,
    evaluate_monitor,
    prepare_channel_forecast,
    prepare_monitor,
)
from rnnpipe.monitor_config import MonitorConfig
from rnnpipe.registry import Run
from rnnpipe.streaming import StreamedMonitor
from rnnpipe.tasks.common import IO


@task(name="ingest", cache_policy=NO_CACHE, **IO)
def ingest(cfg: MonitorConfig) -> SeriesFrame | Shards:
    """The readings, or for streamed training (`data.streaming`) the shards they lie in."""
    data = load_monitor_data(cfg)
    if isinstance(data, Shards):
        get_run_logger().info(
            "streamed training: %d readings of %d patients in %d shards of %s",
            len(data),
            len(data.series),
            len(data.files),
            data.source,
        )
    else:
        get_run_logger().info(
            "read %d readings of %d patients from %s (sha256 %s)",
            len(data),
            len(data.series),
            data.source,
            data.fingerprint[:12],
        )
    return data


def shard_progress(shards: Shards):
    """A Prefect progress artifact that follows a streamed run shard by shard (reading, each
    epoch's training and validation passes, evaluation); its description says which pass."""
    artifact = create_progress_artifact(
        0.0, key="monitor-shards", description=f"{len(shards.files)} shards of {shards.source}"
    )

    def on_shard(what: str, done: int, total: int) -> None:
        with contextlib.suppress(Exception):  # a progress bar that cannot update stops nothing
            update_progress_artifact(artifact, 100.0 * done / total, description=f"{what}: shard {done} of {total}")

    return on_shard


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(data: SeriesFrame | Shards, cfg: MonitorConfig) -> MonitorPrepared | StreamedMonitor:
    """Grid, split, scaling and windows; for a streamed data set, one pass over its shards
    (checks and exact window counts) and the scaler fitted on a sample of training patients."""
    p = prepare_monitor(data, cfg, shard_progress(data) if isinstance(data, Shards) else None)
    rows = [{"part": k, **v} for k, v in p.counts().items()]
    create_table_artifact(rows, key="monitor-windows", description=f"split: {p.split_kind}")
    get_run_logger().info("split %s; windows %s", p.split_kind, p.counts())
    if isinstance(p, StreamedMonitor):
        s = p.sample
        get_run_logger().info(
            "scaler and baselines fitted on %d of %d training patients (%d readings, data.stream_sample_rows=%d)",
            s["patients"],
            s["of_patients"],
            s["readings"],
            cfg.data.stream_sample_rows,
        )
    return p


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(pipeline: MonitorPipeline, prepared: MonitorPrepared | StreamedMonitor, run_id: str) -> dict[str, float]:
    """Model and baselines on test (all and onset windows), thresholds chosen on validation."""
    run = Run(run_id)
    metrics = evaluate_monitor(pipeline, prepared)
    run.log_metrics(metrics)
    table = comparison_table(metrics)
    run.log_dict(table, "metrics/comparison.json")
    run.log_figure(plot_comparison(table), "plots/test_model_vs_baselines.png")
    run.log_figure(plot_confusion(metrics, "test", "", "test, all windows"), "plots/confusion_test.png")
    run.log_figure(plot_confusion(metrics, "test", "_onset", "test, onset windows"), "plots/confusion_test_onset.png")
    best = max(table[1:], key=lambda r: r["f1_onset"])
    standing = f"onset F1 {metrics['test_f1_onset']:.3f} vs best baseline {best['method']} {best['f1_onset']:.3f}: " + (
        "beats every baseline" if metrics["test_f1_onset"] > best["f1_onset"] else "does not beat the best baseline"
    )
    run.set_tags({"vs_baselines": standing, "mlflow.note.content": standing, "split": prepared.split_kind})
    create_table_artifact(table, key="monitor-test-comparison", description=standing)
    get_run_logger().info(standing)
    return metrics


@task(name="prepare-forecast", cache_policy=NO_CACHE)
def prepare_forecast(prepared: MonitorPrepared, cfg: MonitorConfig):
    fc, fp = prepare_channel_forecast(prepared, cfg)
    get_run_logger().info("%s forecaster windows: %s", cfg.forecast.channel, fp.counts())
    return fc, fp


@task(name="evaluate-forecast", cache_policy=NO_CACHE)
def evaluate_forecast(pipeline, prepared, run_id: str, parent_run_id: str, channel: str) -> dict[str, float]:
    """The channel forecaster against the last value, ridge and the statistical models; the
    summary also on the parent run (`forecast_test_mae`, `forecast_autoets_test_mae`, ...)."""
    ev = evaluate_channel_forecast(pipeline, prepared)
    m = ev.metrics
    run = Run(run_id)
    run.log_metrics(m)
    for path, fig in ev.figures().items():
        run.log_figure(fig, path)
    standing = (
        f"{channel} forecast test MAE {m['test_mae']:.3f} vs last value {m['naive_test_mae']:.3f} "
        f"and ridge {m['ridge_test_mae']:.3f}: "
        + ("beats both" if m["test_mae"] < min(m["naive_test_mae"], m["ridge_test_mae"]) else "does not beat both")
    )
    run.set_tags(
        {"mlflow.note.content": "\n\n".join(filter(None, [standing, ev.interval_standing()])), "vs_baselines": standing}
    )
    keys = [
        k
        for name in ["", *ev.names()]
        for k in (
            f"{name + '_' if name else ''}test_mae",
            f"{name + '_' if name else ''}test_rmse",
            f"{name + '_' if name else ''}test_mase",
            f"{name + '_' if name else ''}test_mae_last_step",
            f"{name + '_' if name else ''}test_pinball",
            f"{name + '_' if name else ''}test_coverage_80",
            f"{name + '_' if name else ''}test_interval_width",
            *([f"test_mae_vs_{name}"] if name else []),
        )
    ]
    Run(parent_run_id).log_metrics({f"forecast_{k}": m[k] for k in keys if k in m})
    Run(parent_run_id).set_tags({"forecast_run_id": run_id, "forecast_vs_baselines": standing})
    get_run_logger().info(standing)
    return m
