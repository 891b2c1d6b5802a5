"""The batch-prediction flow: resolve the model version -> predict chunk by chunk into a
temporary Parquet file, renamed when complete -> log the job to MLflow. On a Dask cluster
(`--runner dask`) the input's parts are predicted by the workers into the files of an
output folder, committed with `_SUCCESS` and a rename (`rnnpipe.flows.tasks.predict.predict_in_parts`).

Run it with `rnnpipe predict MODEL -i INPUT -o OUTPUT.parquet`, or from Python:

    from rnnpipe.flows.predict import batch_predict
    batch_predict("stocks-forecaster@champion", "data/stocks.parquet", "out/forecasts.parquet")
"""

from __future__ import annotations

from typing import Any

from prefect import flow

import rnnpipe.flows  # noqa: F401  (environment first)
from rnnpipe.flows.tasks import hide_user_error_tracebacks
from rnnpipe.flows.tasks.predict import (
    log_job,
    predict,
    predict_in_parts,
    read_model_actuals,
    resolve,
    trigger_retrain,
)
from rnnpipe.registry import configure_tracking

hide_user_error_tracebacks()


@flow(name="batch-predict", description="Predict with a registered model over a file or dataset, in chunks.")
def batch_predict(
    model: str,
    input_path: str,
    output_path: str,
    chunk_rows: int = 50_000,
    input_format: str = "auto",
    runner: str = "local",
    workers: int = 1,
    threads: int = 1,
    overwrite: bool = False,
    device: str = "auto",
    split_gpus: bool = False,
    drift: bool = True,
    actuals: str = "",
    retrain_on: list[str] | None = None,
    retrain_deployment: str = "",
) -> dict[str, Any]:
    """`retrain_on` (e.g. ["drift", "degraded"]): the statuses of the drift report or the
    realised accuracy that start a run of `retrain_deployment` (FLOW/DEPLOYMENT, the schedule's
    retrain), with the reason in its parameters (the retrain's MLflow tag `retrain_reason`)."""
    configure_tracking()
    ref = resolve(model)
    if actuals:  # its columns, before the job
        read_model_actuals(ref, actuals)
    if runner == "dask":  # the flow runs with_options(task_runner=a DaskTaskRunner)
        from rnnpipe.flows.sweep import api_for_workers

        with api_for_workers():
            stats = predict_in_parts(
                ref,
                input_path,
                output_path,
                chunk_rows,
                input_format,
                workers,
                threads,
                overwrite,
                device,
                split_gpus,
                drift,
            )
    else:
        stats = predict(ref, input_path, output_path, chunk_rows, input_format, device, drift)
    job = log_job(ref, stats, input_path, chunk_rows, runner, device, split_gpus, actuals)
    retrain = ""
    evidence = [job[k] for k in ("drift", "realised") if job[f"{k}_status"] in (retrain_on or [])]
    if evidence and retrain_deployment:
        reason = f"batch job {job['job_run_id']} on {input_path}: " + "; ".join(evidence)
        retrain = trigger_retrain(retrain_deployment, reason, job["job_run_id"])
    return {
        **stats.as_dict(),
        "model": str(ref),
        "model_version": ref.version,
        "job_run_id": job["job_run_id"],
        "drift": job["drift"],
        "realised": job["realised"],
        "retrain_flow_run_id": retrain,
    }
