"""The stocks forecasting flow: ingest -> split -> prepare -> train -> evaluate -> register.

Run it with `rnnpipe train stocks`, or from Python:

    from flows.forecast import train_stocks
    train_stocks(config={"train": {"epochs": 5}})
"""

from __future__ import annotations

from typing import Any

import flows  # noqa: F401  (environment first)
from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from rnnpipe.config import ForecastConfig, from_dict, to_dict
from rnnpipe.registry import Run, configure_tracking
from tasks import hide_user_error_tracebacks
from tasks.forecast import (
    evaluate,
    ingest,
    prepare_windows,
    register_model,
    split_series,
    start_run,
    train_model,
)

hide_user_error_tracebacks()


@flow(name="train-stocks", description="Train, evaluate and register the stock-price forecaster.")
def train_stocks(config: dict[str, Any] | None = None, resume: bool = False) -> dict[str, Any]:
    cfg = from_dict(ForecastConfig, config or to_dict(ForecastConfig())).validate()
    uri = configure_tracking()
    frame = ingest(cfg)
    split = split_series(frame, cfg)
    prepared = prepare_windows(frame, split, cfg)
    run_id, checkpoint = start_run(cfg, prepared, resume, str(flow_run.id))
    try:
        pipeline, result = train_model(prepared, cfg, run_id, checkpoint, resume)
        metrics = evaluate(pipeline, prepared, run_id)
        decision = register_model(pipeline, prepared, metrics, cfg, run_id)
    except KeyboardInterrupt:
        Run(run_id).end("KILLED")  # `--resume` picks it up from the last checkpoint
        raise
    except BaseException:
        Run(run_id).end("FAILED")
        raise
    Run(run_id).end("FINISHED")
    summary = {
        "tracking_uri": uri, "experiment": cfg.register.experiment, "run_id": run_id,
        "model_name": decision.model_name, "version": decision.version, "alias": decision.alias,
        "reason": decision.reason, "device": result.device, "best_epoch": result.best_epoch,
        **{k: metrics[k] for k in ("test_mae", "test_rmse", "test_mape", "naive_test_mae",
                                   "naive_test_rmse", "test_mae_vs_naive")},
    }
    get_run_logger().info("done: %s", summary)
    return summary
