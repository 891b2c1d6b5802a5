"""Tasks of the backtest flow: one fold per task, wherever the task runner puts it."""

from __future__ import annotations

import math
import os
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from rnnpipe.config import flatten, from_dict
from rnnpipe.pipelines.forecast.backtest import FoldResult, methods, run_fold
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.pipelines.forecast.evaluation import headline_metrics, metric_rows
from rnnpipe.registry import Run, configure_tracking
from rnnpipe.series import SeriesFrame


@task(name="fold", cache_policy=NO_CACHE)
def fold(
    config: dict[str, Any],
    frame: SeriesFrame,
    k: int,
    parent_run_id: str,
    tracking_uri: str,
    threads: int,
    trained=None,
) -> FoldResult:
    """Fold k in a nested MLflow run (tag `backtest_fold=K`): trained on the rows before its
    origin (or scored with fold 1's model, `trained`), its test metrics under the usual names."""
    from rnnpipe import threads as rnnpipe_threads

    with rnnpipe_threads.worker_share(threads):  # the fold's training never takes more than its share
        rnnpipe_threads.apply(threads)
        return _fold(config, frame, k, parent_run_id, tracking_uri, threads, trained)


def _fold(
    config: dict[str, Any], frame: SeriesFrame, k: int, parent_run_id: str, tracking_uri: str, threads: int, trained
) -> FoldResult:
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri  # a worker process: the flow's store
    configure_tracking()
    cfg = from_dict(ForecastConfig, config).validate()
    parent = Run(parent_run_id).client.get_run(parent_run_id).info.run_name  # the flow run's name
    run = Run.start(
        cfg.register.experiment,
        run_name=f"{parent}-fold-{k}",
        tags={
            "mlflow.parentRunId": parent_run_id,
            "backtest_fold": k,
            "pipeline": "stocks",
            "data_fingerprint": frame.fingerprint,
            "data_source": str(frame.source),
            "seed": cfg.train.seed,
            "torch_threads": threads,
        },
    )
    run.log_dataset(str(frame.source), frame.fingerprint)
    try:
        run.log_params(flatten(cfg))
        result = run_fold(cfg, frame, k, trained)
        for h in result.history:
            run.log_metrics({key: h[key] for key in ("train_loss", "val_loss")}, step=int(h["epoch"]))
        finite = {key: v for key, v in result.metrics.items() if math.isfinite(v)}
        names, series = methods(finite), list(result.origins)
        run.log_metrics(headline_metrics(finite, names, series))
        run.log_table(metric_rows(finite, names, series), "metrics/all.json")
        run.set_tags({f"origin.{s}": t for s, t in result.origins.items()})
        run.end("FINISHED")
    except BaseException:
        run.end("FAILED")
        raise
    m = result.metrics
    get_run_logger().info(
        "fold %d (origin %s): MAE %.4f, naive %.4f%s",
        k,
        min(result.origins.values()),
        m["test_mae"],
        m["naive_test_mae"],
        f", coverage_80 {m['test_coverage_80']:.3f}" if "test_coverage_80" in m else "",
    )
    return result
