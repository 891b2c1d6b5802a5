"""Tasks of the batch-prediction flow."""

from __future__ import annotations

import functools
import hashlib
import json
import time
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from tqdm.auto import tqdm

from rnnpipe import threads as rnnpipe_threads
from rnnpipe.batch_input import RowMap, count_rows, dataset_source, open_input
from rnnpipe.batch_jobs import BatchStats, Observers, predict_to_file
from rnnpipe.batch_parts import SUCCESS, Part, atomic_folder, combine, part_error, plan_parts, predict_part
from rnnpipe.drift import Watch
from rnnpipe.errors import DataError
from rnnpipe.flows.tasks.common import IO
from rnnpipe.io import files_state, open_dataset, read_output
from rnnpipe.registry import ModelRef, Run, load_model, resolve_model

EXPERIMENT = "batch-predictions"


@task(name="resolve-model", cache_policy=NO_CACHE, **IO)
def resolve(model: str) -> ModelRef:
    """Pin the version the alias points at now: the whole job uses that one."""
    ref = resolve_model(model)
    get_run_logger().info("model %s -> %s (MLflow run %s)", model, ref, ref.run_id)
    return ref


@task(name="predict", cache_policy=NO_CACHE)
def predict(
    ref: ModelRef,
    input_path: str,
    output_path: str,
    chunk_rows: int,
    fmt: str,
    device: str = "auto",
    drift: bool = True,
) -> BatchStats:
    rnnpipe_threads.apply("auto")  # every core, fewer while other processes use them
    loaded = _model(ref.uri, device)
    pipeline = loaded.pipeline
    dataset, columns, group = open_input(input_path, fmt, pipeline.batch_spec)
    lineage = _lineage(ref)
    watch = JobWatch(loaded, drift)
    with tqdm(
        total=count_rows(dataset), unit="row", unit_scale=True, desc="predict", disable=None, dynamic_ncols=True
    ) as bar:
        stats = predict_to_file(
            pipeline.predict,
            columns,
            lineage,
            dataset,
            output_path,
            group_column=group,
            chunk_rows=chunk_rows,
            on_chunk=bar.update,
            observe=watch.observers,
        )
    watch.record(stats)
    get_run_logger().info(
        "predicted %d rows in %d chunks -> %d output rows in %.1f s (%.0f rows/s); wrote %s",
        stats.rows_in,
        stats.chunks,
        stats.rows_out,
        stats.seconds,
        stats.rows_per_s,
        output_path,
    )
    return stats


def _model(uri: str, device: str = "cpu"):
    """The logged model (`rnnpipe.registry.PipelinePyfunc`: `.pipeline`, `.profile`), loaded
    once per process and device (`auto`: the GPU when there is one; on a machine without
    one, `auto` and `cpu` are the same load)."""
    from rnnpipe.training import select_device

    return _load(uri, str(select_device(device)))


@functools.lru_cache(maxsize=2)
def _load(uri: str, device: str):
    loaded = load_model(uri).unwrap_python_model()
    model = getattr(loaded.pipeline, "model", None)  # optional (`rnnpipe.artefact.Artefact`): a baseline has none
    if model is not None:
        model.to(device).eval()
    return loaded


def _pipeline(uri: str, device: str = "cpu"):
    return _model(uri, device).pipeline


def worker_device(device: str, split_gpus: bool) -> str:
    """A Dask worker's device: with `split_gpus` and CUDA, worker k of a LocalCluster (or a
    worker named otherwise, by a stable hash of its name) takes GPU k mod (number of GPUs),
    so each worker holds its model on one GPU."""
    import torch

    if not split_gpus or not torch.cuda.is_available():
        return device
    from distributed import get_worker

    name = get_worker().name
    k = name if isinstance(name, int) else int(hashlib.sha1(str(name).encode()).hexdigest(), 16)
    return f"cuda:{k % torch.cuda.device_count()}"


def _lineage(ref: ModelRef) -> dict[str, str]:
    return {"model_name": ref.name, "model_version": ref.version, "model_alias": ref.alias, "mlflow_run_id": ref.run_id}


@task(name="plan-parts", cache_policy=NO_CACHE)
def plan(
    ref: ModelRef, input_path: str, fmt: str, chunk_rows: int, workdir: str, min_parts: int
) -> tuple[list[Part], RowMap]:
    """Split the input into parts: its files, or (a series model whose series span files)
    hash buckets of whole series."""
    dataset, _, group = open_input(input_path, fmt, _pipeline(ref.uri, "cpu").batch_spec)
    parts, rows = plan_parts(dataset, group, chunk_rows, Path(workdir), min_parts)
    get_run_logger().info("%s: %d parts%s", input_path, len(parts), " (series regrouped)" if parts[0].bucket else "")
    return parts, rows


@task(name="predict-part", cache_policy=NO_CACHE)
def predict_one(
    ref: ModelRef,
    input_path: str,
    fmt: str,
    part: Part,
    folder: str,
    chunk_rows: int,
    threads: int,
    device: str = "auto",
    split_gpus: bool = False,
    drift: bool = True,
    kind: str = "parquet",
) -> BatchStats:
    """One part on a worker: the model is loaded once per worker process."""
    rnnpipe_threads.share(threads)
    rnnpipe_threads.apply(threads)
    loaded = _model(ref.uri, worker_device(device, split_gpus))
    pipeline = loaded.pipeline
    dataset, columns, group = open_input(input_path, fmt, pipeline.batch_spec)
    watch = JobWatch(loaded, drift)
    stats = predict_part(
        pipeline.predict,
        columns,
        _lineage(ref),
        dataset,
        part,
        Path(folder),
        group_column=group,
        chunk_rows=chunk_rows,
        observe=watch.observers,
        kind=kind,
    )
    return watch.record(stats)


class JobWatch:
    """What watches a job's chunks (or a part's): the drift report, when the model has a
    reference profile and `drift` is on, and a classifier's tally of labelled rows."""

    def __init__(self, loaded, drift: bool):
        pipeline = loaded.pipeline
        self.drift = Watch.of(pipeline, loaded.profile) if drift else None
        self.tally = pipeline.label_tally() if hasattr(pipeline, "label_tally") else None
        self.observers = Observers(self.drift, self.tally)

    def record(self, stats: BatchStats) -> BatchStats:
        """Their counts into the job's statistics (added up over a Dask job's parts)."""
        stats.drift = self.drift.counter if self.drift else None
        stats.drift_error = self.drift.error if self.drift else ""
        stats.labels = self.tally
        return stats


def predict_in_parts(
    ref: ModelRef,
    input_path: str,
    output_path: str,
    chunk_rows: int,
    fmt: str,
    workers: int,
    threads: int,
    overwrite: bool,
    device: str = "auto",
    split_gpus: bool = False,
    drift: bool = True,
) -> BatchStats:
    """The job on the flow's task runner (a Dask cluster): parts predicted by the workers into
    a temporary folder, `_SUCCESS` written last and the folder renamed into place."""
    t0 = time.perf_counter()
    out = Path(output_path)
    kind = "csv" if out.suffix.lower() == ".csv" else "parquet"  # a folder of CSV parts when named so
    with atomic_folder(out, overwrite) as tmp:
        workdir = tmp / "_regroup"
        workdir.mkdir()
        parts, rows = plan(ref, input_path, fmt, chunk_rows, str(workdir), workers)
        futures = [
            predict_one.submit(
                ref, input_path, fmt, part, str(tmp), chunk_rows, threads, device, split_gpus, drift, kind
            )
            for part in parts
        ]
        stats = []
        for part, future in zip(parts, futures):
            try:
                stats.append(future.result())
            except DataError as exc:
                source = dataset_source(open_dataset(input_path, fmt)[0])
                raise part_error(exc, part, source, rows) from None
        for f in workdir.iterdir():
            f.unlink()
        workdir.rmdir()
        names = {part.name(kind) for part in parts}
        for f in tmp.iterdir():  # what a worker that died mid-part left (its part was run again)
            if f.name not in names:
                f.unlink()
        total = combine(stats, time.perf_counter() - t0, str(out))
        (tmp / SUCCESS).write_text(json.dumps({**total.as_dict(), "parts": len(parts), "model": str(ref)}))
    get_run_logger().info(
        "predicted %d rows in %d parts on %d workers -> %d output rows in %.1f s (%.0f rows/s); wrote %s/",
        total.rows_in,
        len(parts),
        workers,
        total.rows_out,
        total.seconds,
        total.rows_per_s,
        out,
    )
    return total


def input_digest(path: str) -> str:
    """What identifies a batch input without reading it again: the sha256 of its files'
    paths, sizes and modification times."""
    return hashlib.sha256(repr(files_state(path)).encode()).hexdigest()


@task(name="log-job", cache_policy=NO_CACHE, **IO)
def log_job(
    ref: ModelRef,
    stats: BatchStats,
    input_path: str,
    chunk_rows: int,
    runner: str = "local",
    device: str = "auto",
    split_gpus: bool = False,
    actuals: str = "",
) -> dict[str, str]:
    """An MLflow run for the job (experiment batch-predictions) and a Prefect artifact that
    point at each other, with the drift report and the realised accuracy: the run id, and
    each one's status and line ("" where there is none)."""
    # one name in both UIs: the job's run is named after its Prefect flow run
    run = Run.start(
        EXPERIMENT,
        run_name=str(flow_run.name),
        tags={
            "prefect_flow_run_id": str(flow_run.id),
            "prefect_flow_run_name": str(flow_run.name),
            "model_name": ref.name,
            "model_version": ref.version,
            "model_alias": ref.alias,
            "model_run_id": ref.run_id,
            "mlflow.note.content": f"batch prediction with {ref.name} v{ref.version}",
        },
    )
    run.log_dataset(input_path, input_digest(input_path), context="inference")
    run.log_params(
        {
            "model": ref.uri,
            "input": input_path,
            "output": stats.output,
            "chunk_rows": chunk_rows,
            "runner": runner,
            "device": device,
            "split_gpus": split_gpus,
        }
    )
    run.log_metrics(
        {
            "rows_in": stats.rows_in,
            "rows_out": stats.rows_out,
            "chunks": stats.chunks,
            "seconds": stats.seconds,
            "rows_per_s": stats.rows_per_s,
        }
    )
    drift_status, drift_line = log_drift(run, stats)
    realised_status, realised_line = log_realised(run, ref, stats, actuals)
    run.end()
    create_markdown_artifact(
        f"**Batch prediction with {ref}**\n\n| | |\n|---|---|\n| model run | `{ref.run_id}` |\n"
        f"| job MLflow run | `{run.id}` (experiment `{EXPERIMENT}`) |\n| input | `{input_path}` |\n"
        f"| output | `{stats.output}` |\n| rows in / out | {stats.rows_in:,} / {stats.rows_out:,} |\n"
        f"| chunks of {chunk_rows:,} rows | {stats.chunks} |\n| throughput | {stats.rows_per_s:,.0f} rows/s |\n",
        key="batch-prediction",
    )
    return {
        "job_run_id": run.id,
        "drift": drift_line,
        "drift_status": drift_status,
        "realised": realised_line,
        "realised_status": realised_status,
    }


@task(name="trigger-retrain", cache_policy=NO_CACHE, **IO)
def trigger_retrain(deployment: str, reason: str, job_run_id: str) -> str:
    """Start a run of the retrain deployment (it runs wherever the deployment is served: the
    `rnnpipe schedule` process, or a worker) with the evidence as its `reason`; the job's
    MLflow run links to it (tag `retrain_flow_run_id`). -> the new flow run's id."""
    from prefect.deployments import run_deployment

    run = run_deployment(
        name=deployment, parameters={"reason": reason}, timeout=0, as_subflow=False, tags=["rnnpipe", "on-evidence"]
    )
    Run(job_run_id).set_tags({"retrain_flow_run_id": str(run.id), "retrain_deployment": deployment})
    get_run_logger().info("started %s (flow run %s): %s", deployment, run.id, reason)
    return str(run.id)


def read_model_actuals(ref: ModelRef, actuals: str) -> pd.DataFrame:
    """The `--actuals` file, read with the columns the model scores its predictions on (a
    missing one is named); a model that takes none is refused."""
    from rnnpipe.realised import read_actuals

    spec = getattr(_model(ref.uri, "cpu").pipeline, "actuals_columns", None)
    if spec is None:
        raise DataError(f"--actuals {actuals}: {ref} takes no actuals; a classifier scores the input's labels")
    columns, what = spec()
    return read_actuals(actuals, columns, what)


def log_realised(run: Run, ref: ModelRef, stats: BatchStats, actuals: str) -> tuple[str, str]:
    """The realised accuracy (`rnnpipe.realised`) of a classifier's labelled rows, or of a
    model's predictions against `actuals`, beside its registered test scores: metrics
    `realised_<score>` and `registered_<score>`, tags `realised_status` (`ok`, `degraded`,
    `not judged`) and `realised`. -> (status, line); ("", "") when there is nothing to score.
    Actuals that cannot be scored (their columns were checked before the job; their values
    were not) never fail the job, whose predictions are written: status `error`, and why."""
    from rnnpipe.realised import judge

    try:
        if actuals:
            truth = read_model_actuals(ref, actuals)
            scores = _model(ref.uri, "cpu").pipeline.realised_scores(read_output(stats.output), truth)
            source = f"predictions against {actuals}"
        elif stats.labels is not None and stats.labels.pairs:
            scores, source = stats.labels.scores(), "labelled rows"
        else:
            return "", ""
    except (DataError, ValueError, KeyError) as exc:
        line = f"realised: not computed ({exc})"[:5000]
        run.set_tags({"realised_status": "error", "realised": line})
        get_run_logger().warning(line)
        return "error", line
    loaded = _model(ref.uri, "cpu")  # loaded only when there is something to score
    registered = run.client.get_run(ref.run_id).data.metrics
    baseline = (run.client.get_model_version(ref.name, ref.version).tags or {}).get("baseline")
    if baseline:  # a baseline's version: its own test scores, not the run's recurrent model's
        pre = f"{baseline}_test_"
        registered = {f"test_{k[len(pre) :]}": v for k, v in registered.items() if k.startswith(pre)}
    realised = judge(scores, registered, loaded.profile, source)
    run.log_metrics(realised.metrics())
    run.set_tags({"realised_status": realised.status, "realised": realised.line()})
    get_run_logger().info(realised.line())
    return realised.status, realised.line()


def log_drift(run: Run, stats: BatchStats) -> tuple[str, str]:
    """The job's drift report (`rnnpipe.drift`) into its MLflow run (metrics `drift_psi.*`,
    `drift_ks.*`, `drift_status`; the table `drift/report.json`; a plot per feature that
    drifted; the tag `drift_status`) and as a Prefect table artifact. -> (its status, its
    line); ("not judged", "") when the model has no reference profile."""
    if stats.drift_error:  # counting failed (a bug, logged as a warning): the job itself went on
        line = f"drift: not computed ({stats.drift_error})"[:5000]
        run.set_tags({"drift_status": "error", "drift": line})
        return "error", line
    if stats.drift is None:
        run.set_tags({"drift_status": "not judged"})
        return "not judged", ""
    report = stats.drift.report()
    run.log_metrics(report.metrics())
    run.log_dict(json.loads(report.to_json()), "drift/report.json")
    for path, fig in report.figures().items():
        run.log_figure(fig, path)
    run.set_tags({"drift_status": report.status, "drift": report.line()})
    create_table_artifact(report.table(), key="drift-report", description=report.line())
    get_run_logger().info(report.line())
    return report.status, report.line()
