"""The monitoring flow: ingest -> resample and window -> train -> evaluate -> (forecast a
channel, as a child run) -> register.

Run it with `rnnpipe train monitor`, or from Python:

    from rnnpipe.flows.monitor import train_monitor
    train_monitor(config={"train": {"epochs": 5}})
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

import rnnpipe.flows  # noqa: F401  (environment first)
from rnnpipe.config import from_dict, to_dict
from rnnpipe.forecast import ForecastPipeline
from rnnpipe.monitor import MonitorPipeline, classification_loss
from rnnpipe.monitor_config import MonitorConfig
from rnnpipe.registry import Run, configure_tracking, gate_spec
from rnnpipe.streaming import StreamedMonitor
from rnnpipe.tasks import hide_user_error_tracebacks
from rnnpipe.tasks.common import register, run_status, start_run, summary, train
from rnnpipe.tasks.monitor import evaluate, evaluate_forecast, ingest, prepare, prepare_forecast

hide_user_error_tracebacks()


@flow(name="train-monitor", description="Train, evaluate and register the early-warning classifier.")
def train_monitor(config: dict[str, Any] | None = None, resume: bool = False) -> dict[str, Any]:
    cfg = from_dict(MonitorConfig, config or to_dict(MonitorConfig())).validate()
    uri = configure_tracking()
    data = ingest(cfg)
    prepared = prepare(data, cfg)
    streamed = isinstance(prepared, StreamedMonitor)
    data_summary = {"patients": prepared.patients, "split": prepared.split_kind, "windows": prepared.counts()}
    if streamed:
        data_summary["streamed"] = {"shards": len(data.files), "fitting_sample": prepared.sample}
    run_id, checkpoint = start_run(cfg, "monitor", prepared.fingerprint, prepared.source, data_summary, resume)
    r = cfg.register
    with run_status(run_id):
        if streamed:
            Run(run_id).set_tags(
                {
                    "streamed": f"{len(data.files)} shards; scaler and baselines fitted on "
                    f"{prepared.sample['patients']} of {prepared.sample['of_patients']} "
                    "training patients"
                }
            )
        pipeline = MonitorPipeline(cfg, prepared.preprocessor)
        result = train(
            pipeline.model,
            prepared.windows("train"),
            prepared.windows("val"),
            cfg,
            run_id,
            checkpoint,
            resume,
            classification_loss(cfg, prepared),
        )
        metrics = evaluate(pipeline, prepared, run_id)  # also sets pipeline.threshold (from val)
        forecast = {}
        if cfg.forecast.enabled and streamed:
            get_run_logger().warning(
                "the %s forecaster is not trained on a streamed data set (it needs the "
                "whole grid in memory); set forecast.enabled=false to silence this",
                cfg.forecast.channel,
            )
            Run(run_id).set_tags({"forecast": "skipped: streamed data set"})
        elif cfg.forecast.enabled:
            forecast = forecast_channel(cfg, prepared, data_summary, run_id)
        decision = register(pipeline, prepared.example, metrics, run_id, r.model_name, **gate_spec("monitor", cfg))
    return summary(
        uri,
        r.experiment,
        run_id,
        decision,
        result,
        r.metric,
        threshold=pipeline.threshold,
        **{k: v for k, v in metrics.items() if k.endswith("test_f1_onset") or k.endswith("test_f1")},
        **{f"forecast_{k}": forecast[k] for k in ("test_mae", "naive_test_mae", "ridge_test_mae") if k in forecast},
    )


def forecast_channel(cfg: MonitorConfig, prepared, data_summary, parent_run_id: str) -> dict[str, float]:
    """The optional channel forecaster, as a child run of the monitor run."""
    fc, fp = prepare_forecast(prepared, cfg)
    child, checkpoint = start_run(
        fc,
        "monitor-forecaster",
        prepared.fingerprint,
        prepared.source,
        data_summary,
        False,
        parent_run_id=parent_run_id,
        run_name=f"{cfg.forecast.channel}-forecaster",
    )
    with run_status(child):
        pipeline = ForecastPipeline(fc, fp.preprocessor)
        train(pipeline.model, fp.windows("train"), fp.windows("val"), fc, child, checkpoint, False)
        return evaluate_forecast(pipeline, fp, child, parent_run_id, cfg.forecast.channel)
