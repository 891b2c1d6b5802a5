"""Tasks every training flow shares: open the MLflow run, train, register behind the gate."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from rnnpipe.config import flatten
from rnnpipe.errors import ModelError
from rnnpipe.evaluation import plot_loss_curves
from rnnpipe.registry import GateDecision, Run, log_pipeline_model, register_and_gate
from rnnpipe.tasks import retry_unless_user_error
from rnnpipe.training import BatchSource, FitResult, checkpoint_path, fit, read_checkpoint_meta

IO = dict(retries=2, retry_delay_seconds=2, retry_condition_fn=retry_unless_user_error)


@task(name="start-run", cache_policy=NO_CACHE, **IO)
def start_run(
    cfg: Any,
    pipeline: str,
    fingerprint: str,
    source: str,
    data_summary: dict[str, Any],
    resume: bool,
    parent_run_id: str | None = None,
    run_name: str | None = None,
) -> tuple[str, str]:
    """Open the MLflow run (or reopen the interrupted one) and log params, tags and the data
    summary; with `parent_run_id`, a child run nested under it. Returns the run id and the
    checkpoint path."""
    ckpt = checkpoint_path(cfg, fingerprint)
    run_id = None
    if resume:
        meta = read_checkpoint_meta(ckpt)
        if meta is None:
            raise ModelError(f"--resume: no checkpoint for this config and data at {ckpt}")
        run_id = meta.get("mlflow_run_id")
    tags = {
        "data_fingerprint": fingerprint,
        "data_source": source,
        "seed": cfg.train.seed,
        "prefect_flow_run_id": str(flow_run.id),
        "prefect_flow_run_name": str(flow_run.name),
        "pipeline": pipeline,
        "checkpoint": str(ckpt),
    }
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    # one name in both UIs: the MLflow run is named after its Prefect flow run
    name = str(flow_run.name) if run_name is None else f"{flow_run.name}-{run_name}"
    run = Run.start(cfg.register.experiment, run_name=name, tags=tags, run_id=run_id)
    if not run_id:
        run.log_dataset(source, fingerprint)
    run.log_params(flatten(cfg))
    run.log_dict(data_summary, "data/split.json")
    get_run_logger().info("MLflow run %s (%s)", run.id, "resumed" if run_id else "new")
    return run.id, str(ckpt)


@task(name="train", cache_policy=NO_CACHE)
def train(
    model,
    train_data: BatchSource,
    val_data: BatchSource,
    cfg: Any,
    run_id: str,
    checkpoint: str,
    resume: bool,
    loss_fn: Callable | None = None,
    epoch_metrics: Callable[[dict[str, float]], dict[str, float]] | None = None,
) -> FitResult:
    """The fit loop, with per-epoch metrics to MLflow (plus `epoch_metrics(record)`, e.g. the
    validation perplexity), a checkpoint per epoch and the curves."""
    run = Run(run_id)

    def on_epoch(record: dict[str, float]) -> None:
        metrics = {k: record[k] for k in ("train_loss", "val_loss", "lr", "samples_per_s")}
        run.log_metrics({**metrics, **(epoch_metrics(record) if epoch_metrics else {})}, step=int(record["epoch"]))

    result = fit(
        model,
        train_data,
        val_data,
        cfg.train,
        loss_fn=loss_fn,
        checkpoint_path=checkpoint,
        checkpoint_meta={"key": Path(checkpoint).stem, "mlflow_run_id": run_id},
        resume=resume,
        on_epoch=on_epoch,
    )
    run.log_metrics(
        {
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "epochs_run": len(result.history),
            "train_samples_per_s": result.samples_per_s,
        }
    )
    run.log_metrics({"initial_val_loss": result.initial_val_loss, **result.warm_start, **result.band})
    run.set_tags(
        {
            "device": result.device,
            "precision": result.precision,
            "torch_threads": result.threads,
            "stopped_early": result.stopped_early,
            "resumed_from_epoch": result.resumed_from_epoch,
        }
    )
    if result.best_epoch == 0:
        note = "no epoch improved on the starting model on validation, so the model is that start: " + (
            "the linear part alone" if result.warm_start else "its initial weights (a forecaster: the naive forecast)"
        )
        run.set_tags({"training_note": note})
        get_run_logger().warning(note)
    run.log_figure(plot_loss_curves(result.history, result.best_epoch), "plots/loss_curves.png")
    return result


@task(name="register", cache_policy=NO_CACHE, **IO)
def register(
    pipeline: Any,
    input_example,
    metrics: dict[str, float],
    run_id: str,
    model_name: str,
    *,
    metric: str,
    baselines: dict[str, str],
    margin: float,
    greater_is_better: bool,
    degenerate: float | None = None,
    baseline_of: str = "",
) -> GateDecision:
    """Log the pipeline as a pyfunc model, register a version, and apply the gate
    (`baseline_of`: the pipeline is that baseline, logged as the run's `baseline` model)."""
    run = Run(run_id)
    model_uri = log_pipeline_model(run, pipeline, input_example, name="baseline" if baseline_of else "model")
    decision = register_and_gate(
        run, model_uri, model_name, metrics, metric, baselines, margin, greater_is_better, degenerate, baseline_of
    )
    rows = [
        f"| `{k}` | {v:.4g} |"
        for k, v in sorted(metrics.items())
        if "test_" in k and "." not in k and k.split("_")[-1] not in ("tp", "fp", "fn", "tn")
    ]
    create_markdown_artifact(
        f"**{decision.model_name} v{decision.version} -> `{decision.alias}`**\n\n{decision.reason}\n\n"
        f"MLflow run `{run_id}` (tracking `{mlflow.get_tracking_uri()}`)\n\n| test metric | value |\n|---|---|\n"
        + "\n".join(rows[:40]),
        key=f"{model_name}-{'baseline-' if baseline_of else ''}registration".lower().replace("_", "-"),
    )
    return decision  # register_and_gate logged the decision (rnnpipe's log lines are the run's too)


def finish(run_id: str, status: str) -> None:
    Run(run_id).end(status)


@contextlib.contextmanager
def run_status(run_id: str) -> Iterator[None]:
    """Mark the MLflow run FINISHED when the block completes, KILLED on Ctrl-C (`--resume`
    picks it up from the last checkpoint) or SIGTERM (Prefect's TerminationSignal) and FAILED on
    any error."""
    from prefect.exceptions import TerminationSignal

    try:
        yield
    except (KeyboardInterrupt, TerminationSignal):
        finish(run_id, "KILLED")
        raise
    except BaseException:
        finish(run_id, "FAILED")
        raise
    finish(run_id, "FINISHED")


def summary(
    uri: str, experiment: str, run_id: str, decision: GateDecision, result: FitResult, metric: str, **extra: Any
) -> dict[str, Any]:
    """What a training flow returns (and the CLI prints)."""
    out = {
        "tracking_uri": uri,
        "experiment": experiment,
        "run_id": run_id,
        "model_name": decision.model_name,
        "version": decision.version,
        "alias": decision.alias,
        "reason": decision.reason,
        "device": result.device,
        "best_epoch": result.best_epoch,
        "metric": metric,
        **extra,
    }
    return out  # the registration was logged once, by the gate (`register_and_gate`)
