"""Tasks of the batch-prediction flow."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from tqdm.auto import tqdm

from rnnpipe.batch import BatchStats, count_rows, open_input, predict_to_parquet
from rnnpipe.registry import ModelRef, Run, load_model, resolve_model
from tasks.common import IO

EXPERIMENT = "batch-predictions"


@task(name="resolve-model", cache_policy=NO_CACHE, **IO)
def resolve(model: str) -> ModelRef:
    """Pin the version the alias points at now: the whole job uses that one."""
    ref = resolve_model(model)
    get_run_logger().info("model %s -> %s (MLflow run %s)", model, ref, ref.run_id)
    return ref


@task(name="predict", cache_policy=NO_CACHE)
def predict(ref: ModelRef, input_path: str, output_path: str, chunk_rows: int, fmt: str) -> BatchStats:
    pipeline = load_model(ref.uri).unwrap_python_model().pipeline
    dataset, columns, group = open_input(input_path, fmt, pipeline.batch_spec)
    lineage = {"model_name": ref.name, "model_version": ref.version, "model_alias": ref.alias,
               "mlflow_run_id": ref.run_id}
    with tqdm(total=count_rows(dataset), unit="row", unit_scale=True, desc="predict",
              disable=None, dynamic_ncols=True) as bar:
        stats = predict_to_parquet(pipeline.predict, columns, lineage, dataset, output_path,
                                   group_column=group, chunk_rows=chunk_rows, on_chunk=bar.update)
    get_run_logger().info("predicted %d rows in %d chunks -> %d output rows in %.1f s (%.0f rows/s); "
                          "wrote %s", stats.rows_in, stats.chunks, stats.rows_out, stats.seconds,
                          stats.rows_per_s, output_path)
    return stats


@task(name="log-job", cache_policy=NO_CACHE, **IO)
def log_job(ref: ModelRef, stats: BatchStats, input_path: str, chunk_rows: int) -> str:
    """An MLflow run for the job (experiment batch-predictions) and a Prefect artifact that
    point at each other."""
    run = Run.start(EXPERIMENT, run_name=f"{ref.name}-v{ref.version}",
                    tags={"prefect_flow_run_id": str(flow_run.id), "prefect_flow_run_name": str(flow_run.name),
                          "model_name": ref.name, "model_version": ref.version, "model_alias": ref.alias,
                          "model_run_id": ref.run_id})
    run.log_params({"model": ref.uri, "input": input_path, "output": stats.output, "chunk_rows": chunk_rows})
    run.log_metrics({"rows_in": stats.rows_in, "rows_out": stats.rows_out, "chunks": stats.chunks,
                     "seconds": stats.seconds, "rows_per_s": stats.rows_per_s})
    run.end()
    create_markdown_artifact(
        f"**Batch prediction with {ref}**\n\n| | |\n|---|---|\n| model run | `{ref.run_id}` |\n"
        f"| job MLflow run | `{run.id}` (experiment `{EXPERIMENT}`) |\n| input | `{input_path}` |\n"
        f"| output | `{stats.output}` |\n| rows in / out | {stats.rows_in:,} / {stats.rows_out:,} |\n"
        f"| chunks of {chunk_rows:,} rows | {stats.chunks} |\n| throughput | {stats.rows_per_s:,.0f} rows/s |\n",
        key="batch-prediction")
    return run.id
