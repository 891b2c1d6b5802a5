"""The backtest flow: rolling-origin evaluation of the stocks forecaster, one Prefect task
per fold on the sweep's task runners (folds with refit are independent trainings).

Run it with `rnnpipe backtest stocks --folds 5 --step 60 --refit every`, or from Python:

    from rnnpipe.flows.backtest import backtest
    from rnnpipe.flows.sweep import task_runner
    backtest.with_options(task_runner=task_runner("local", workers=2))(config={...})
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

import rnnpipe.flows  # noqa: F401  (environment first)
from rnnpipe.config import flatten, from_dict, to_dict
from rnnpipe.flows.sweep import api_for_workers
from rnnpipe.flows.tasks import hide_user_error_tracebacks
from rnnpipe.flows.tasks.backtest import fold
from rnnpipe.flows.tasks.common import as_task, flow_context
from rnnpipe.pipelines.forecast.backtest import combine_folds, fold_rows, fold_splits, plot_folds
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.pipelines.forecast.steps import ForecastSteps
from rnnpipe.registry import Run, configure_tracking

hide_user_error_tracebacks()


@flow(name="backtest-stocks", description="Rolling-origin backtest of the stocks forecaster and its baselines.")
def backtest(
    config: dict[str, Any] | None = None, workers: int = 1, threads: int = 1, runner: str = "local"
) -> dict[str, Any]:
    cfg = from_dict(ForecastConfig, config or to_dict(ForecastConfig())).validate()
    b = cfg.backtest
    uri = configure_tracking()
    frame = as_task("ingest", ForecastSteps().ingest, cfg, flow_context(), io=True)  # the training flow's step
    fold_splits(frame, cfg)  # too short a series fails here, before any training
    # one name in both UIs: the parent run is named after its Prefect flow run, its folds
    # after it (`<name>-fold-K`)
    parent = Run.start(
        cfg.register.experiment,
        run_name=str(flow_run.name),
        tags={
            "backtest": "true",
            "pipeline": "stocks",
            "data_fingerprint": frame.fingerprint,
            "data_source": str(frame.source),
            "seed": cfg.train.seed,
            "backtest_runner": runner,
            "prefect_flow_run_id": str(flow_run.id),
            "prefect_flow_run_name": str(flow_run.name),
            "mlflow.note.content": f"backtest: {b.folds} folds of {b.step} rows, refit {b.refit}",
        },
    )
    parent.log_dataset(str(frame.source), frame.fingerprint)
    log = get_run_logger()
    try:
        parent.log_params({**flatten(cfg), "backtest.runner": runner, "backtest.workers": workers})
        log.info(
            "backtest of %d folds of %d rows (refit %s, %d at a time); MLflow parent run %s",
            b.folds,
            b.step,
            b.refit,
            workers,
            parent.id,
        )
        with api_for_workers():

            def submit(k: int, trained=None, keep: bool = False):
                return fold.with_options(task_run_name=f"fold-{k}").submit(
                    to_dict(cfg), frame, k, parent.id, uri, threads, trained, keep
                )

            folds, trained = [], None
            if b.refit == "once":  # fold 1's model and baselines serve every fold
                first = submit(1, keep=True).result()
                folds, trained = [first], first.trained
                first.trained = None
            futures = [submit(k, trained) for k in range(len(folds) + 1, b.folds + 1)]
            folds += [f.result() for f in futures]
        overall = combine_folds(folds)
        rows = fold_rows(folds)
        parent.log_metrics(overall)
        parent.log_dict(rows, "backtest/folds.json")
        parent.log_figure(plot_folds(folds, "mae"), "backtest/mae_by_fold.png")
        if "test_pinball" in folds[0].metrics:
            parent.log_figure(plot_folds(folds, "pinball"), "backtest/pinball_by_fold.png")
        standing = f"backtest of {b.folds} folds: MAE {overall['backtest_mae']:.4f} vs " + ", ".join(
            f"{k[: -len('_backtest_mae')]} {v:.4f}" for k, v in overall.items() if k.endswith("_backtest_mae")
        )
        parent.set_tags({"mlflow.note.content": standing, "vs_baselines": standing})
        create_table_artifact(rows, key="backtest-folds", description=standing)
        log.info(standing)
    except BaseException:
        parent.end("FAILED")
        raise
    parent.end("FINISHED")
    return {
        "tracking_uri": uri,
        "experiment": cfg.register.experiment,
        "parent_run_id": parent.id,
        "folds": rows,
        "metrics": overall,
        "standing": standing,
    }
