"""Tasks of the backtest flow: one fold per task, wherever the task runner puts it."""

from __future__ import annotations

import os
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from rnnpipe.config import from_dict
from rnnpipe.pipelines.forecast.backtest import FoldResult, run_fold
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.registry import Run, configure_tracking
from rnnpipe.series import SeriesFrame
from rnnpipe.steps import trial_context


@task(name="fold", cache_policy=NO_CACHE)
def fold(
    config: dict[str, Any],
    frame: SeriesFrame,
    k: int,
    parent_run_id: str,
    tracking_uri: str,
    threads: int,
    trained=None,
    keep: bool = False,
) -> FoldResult:
    """Fold k in a nested MLflow run (tag `backtest_fold=K`, named `<parent>-fold-K`): the
    forecaster's steps trained on the rows before its origin (or fold 1's model, `trained`,
    scored on it), its test metrics under the usual names."""
    from rnnpipe import threads as rnnpipe_threads

    with rnnpipe_threads.worker_share(threads):  # the fold's training never takes more than its share
        rnnpipe_threads.apply(threads)
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri  # a worker process: the flow's store
        configure_tracking()
        cfg = from_dict(ForecastConfig, config).validate()
        parent = Run(parent_run_id).client.get_run(parent_run_id).info.run_name  # the flow run's name
        ctx = trial_context(
            log_model=False,
            parent_run_id=parent_run_id,
            run_name=f"{parent}-fold-{k}",
            tags={"torch_threads": threads},
        )
        result = run_fold(cfg, frame, k, trained, ctx, keep=keep)
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
