"""The stocks forecasting flow: ingest -> split -> prepare -> train -> evaluate -> register.

Run it with `rnnpipe train stocks`, or from Python:

    from rnnpipe.flows.forecast import train_stocks
    train_stocks(config={"train": {"epochs": 5}})
"""

from __future__ import annotations

from typing import Any

from prefect import flow

import rnnpipe.flows  # noqa: F401  (environment first)
from rnnpipe.config import from_dict, to_dict
from rnnpipe.forecast import ForecastPipeline, history_example
from rnnpipe.forecast_baseline import BaselineForecastPipeline, best_servable
from rnnpipe.forecast_config import ForecastConfig
from rnnpipe.registry import configure_tracking, gate_spec
from rnnpipe.tasks import hide_user_error_tracebacks
from rnnpipe.tasks.common import register, run_status, start_run, summary, train
from rnnpipe.tasks.forecast import evaluate, ingest, prepare_windows, split_series

hide_user_error_tracebacks()


@flow(name="train-stocks", description="Train, evaluate and register the stock-price forecaster.")
def train_stocks(config: dict[str, Any] | None = None, resume: bool = False) -> dict[str, Any]:
    cfg = from_dict(ForecastConfig, config or to_dict(ForecastConfig())).validate()
    uri = configure_tracking()
    frame = ingest(cfg)
    split = split_series(frame, cfg)
    prepared = prepare_windows(frame, split, cfg)
    data_summary = {"series": frame.series, "windows": prepared.counts(), "parts": split.summary(frame)}
    run_id, checkpoint = start_run(cfg, "stocks", frame.fingerprint, str(frame.source), data_summary, resume)
    r = cfg.register
    with run_status(run_id):
        pipeline = ForecastPipeline(cfg, prepared.preprocessor)
        result = train(
            pipeline.model, prepared.windows("train"), prepared.windows("val"), cfg, run_id, checkpoint, resume
        )
        metrics, fitted = evaluate(pipeline, prepared, run_id)
        example = history_example(frame, cfg, n_series=2)
        gate = gate_spec("stocks", cfg)
        decision = register(pipeline, example, metrics, run_id, r.model_name, **gate)
        name = best_servable(metrics, r.gate_baselines, r.metric) if decision.rule == "baseline" else None
        baseline = None
        if r.register_baseline and name:
            # the model lost: the best servable baseline itself becomes a version of the model
            served = BaselineForecastPipeline.from_run(cfg, prepared, name, fitted.get(name))
            baseline = register(
                served,
                example,
                {r.metric: metrics[f"{name}_{r.metric}"]},
                run_id,
                r.model_name,
                **gate,
                baseline_of=name,
            )
    extra = (
        {}
        if baseline is None
        else {
            "baseline_version": baseline.version,
            "baseline_alias": baseline.alias,
            "baseline_reason": baseline.reason,
        }
    )
    return summary(
        uri,
        r.experiment,
        run_id,
        decision,
        result,
        r.metric,
        **extra,
        **{
            k: metrics[k]
            for k in (
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
            if k in metrics
        },
    )
