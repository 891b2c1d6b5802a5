"""The sweep flow: one Prefect task per trial, run in parallel by whichever task runner the
caller picks (a local process pool, or a Dask cluster through prefect-dask); the best trial on
validation goes through the usual champion gate.

Run it with `rnnpipe sweep stocks --grid model.cell=lstm,gru --runner dask`, or from Python:

    from rnnpipe.flows.sweep import sweep, task_runner
    sweep.with_options(task_runner=task_runner("local", workers=2))(
        "stocks", config, {"model.cell": ["lstm", "gru"]})
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

import rnnpipe.flows  # noqa: F401  (environment first)
from rnnpipe.errors import ModelError
from rnnpipe.flows.tasks import hide_user_error_tracebacks
from rnnpipe.flows.tasks.sweep import TrialFailed, register_best, trial
from rnnpipe.gate import gate_spec
from rnnpipe.registry import Run, configure_tracking
from rnnpipe.sweep import TrialResult, best_trial, make_trials, plot_sweep, series_of, summary_rows, trial_config

hide_user_error_tracebacks()


def task_runner(kind: str, workers: int = 1, address: str = ""):
    """`sequential`, `local` (a process pool of `workers`) or `dask` (a LocalCluster of
    `workers` single-threaded processes on 127.0.0.1, or the cluster at `address`)."""
    if kind == "dask":
        from prefect_dask import DaskTaskRunner  # the Dask extra: the CLI checks it is installed

        if address:
            return DaskTaskRunner(address=address)
        # Dask's worker profiler samples every thread's stack every 10 ms, which competes for
        # the GIL with the training loop (7% of trial time in bench_sweep here): off
        os.environ.setdefault("DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED", "False")
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": workers,
                "threads_per_worker": 1,
                "processes": True,
                "host": "127.0.0.1",
                "dashboard_address": None,
            }
        )
    if kind == "local":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=workers)
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=1)


@contextlib.contextmanager
def api_for_workers() -> Iterator[None]:
    """Worker processes (process pool, LocalCluster) inherit the environment; without
    PREFECT_API_URL each would start an ephemeral API of its own and record its task runs
    there. Point them at this flow's API for the duration of the flow."""
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        os.environ["PREFECT_API_URL"] = str(client.api_url)
    try:
        yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)


def _collect(future, index: int, params: dict[str, str]) -> TrialResult:
    out = future.result(raise_on_failure=False)
    if isinstance(out, TrialResult):
        return out
    if isinstance(out, TrialFailed):
        return out.result
    return TrialResult(index, params, "FAILED", error=f"{type(out).__name__}: {out}")  # e.g. a lost worker


@flow(name="sweep", description="Train one model per trial in parallel; register the best on validation.")
def sweep(
    pipeline: str,
    config: dict[str, Any],
    grid: dict[str, list[str]],
    random_n: int = 0,
    seed: int = 0,
    workers: int = 1,
    threads: int = 1,
    retries: int = 0,
    per_series: bool = False,
    split_gpus: bool = False,
    runner: str = "",
) -> dict[str, Any]:
    tracking_uri = configure_tracking()
    base = trial_config(pipeline, config, {})
    r = base.register
    trials = make_trials(grid, random_n, seed)
    groups = series_of(pipeline, base) if per_series else [""]
    planned = [(g, {**params, **({"data.series": g} if g else {})}) for g in groups for params in trials]
    for _, params in planned:  # every combination must be a valid config before any trial runs
        trial_config(pipeline, config, params)
    parent = Run.start(
        r.experiment,
        run_name=f"sweep-{pipeline}-{len(planned)}-trials",
        tags={
            "prefect_flow_run_id": str(flow_run.id),
            "prefect_flow_run_name": str(flow_run.name),
            "pipeline": pipeline,
            "sweep": "true",
            "sweep_runner": runner,
        },
    )
    parent.log_params(
        {
            "sweep.pipeline": pipeline,
            "sweep.grid": json.dumps(grid),
            "sweep.random": random_n,
            "sweep.trials": len(planned),
            "sweep.workers": workers,
            "sweep.threads_per_trial": threads,
            "sweep.retries": retries,
            "sweep.per_series": per_series,
            "sweep.runner": runner,
        }
    )
    log = get_run_logger()
    log.info(
        "sweep of %d trials (%d at a time, %d torch threads each); MLflow parent run %s",
        len(planned),
        workers,
        threads,
        parent.id,
    )
    try:
        with api_for_workers():
            futures = [
                trial.with_options(retries=retries, task_run_name=f"trial-{i}").submit(
                    pipeline, config, params, i, r.experiment, parent.id, threads, tracking_uri, split_gpus
                )
                for i, (_, params) in enumerate(planned)
            ]
            results = [_collect(f, i, params) for i, (f, (_, params)) in enumerate(zip(futures, planned))]
        gate = gate_spec(pipeline, base)
        rows = summary_rows(results, gate["metric"])
        parent.log_dict(rows, "sweep/summary.json")
        parent.log_figure(plot_sweep(results, grid), "sweep/val_loss_by_param.png")
        failed = [x for x in results if not x.ok]
        parent.log_metrics({"trials_finished": len(results) - len(failed), "trials_failed": len(failed)})
        create_table_artifact(rows, key="sweep-summary", description=f"{len(failed)} of {len(results)} trials failed")
        for x in failed:
            log.warning("trial %d %s failed: %s", x.index, x.params, x.error)
        if len(failed) == len(results):
            raise ModelError(f"all {len(results)} trials failed; the first: {failed[0].error}")
        decisions = {}
        for g in groups:
            best = best_trial([x for x in results if not g or x.params.get("data.series") == g])
            if best is None:
                continue
            suffix = f".{g}" if g else ""
            parent.set_tags(
                {
                    f"best_trial{suffix}": best.index,
                    f"best_run_id{suffix}": best.run_id,
                    f"best_params{suffix}": json.dumps(best.params),
                }
            )
            parent.log_metrics(
                {
                    f"best_val_loss{suffix}": best.val_loss,
                    **(
                        {f"best_{gate['metric']}{suffix}": best.metrics[gate["metric"]]}
                        if gate["metric"] in best.metrics
                        else {}
                    ),
                }
            )
            name = f"{r.model_name}-{g}" if g else r.model_name
            decisions[g or r.model_name] = register_best(best, name, gate)
            log.info(
                "best trial %d %s (val loss %.5f) -> %s",
                best.index,
                best.params,
                best.val_loss,
                decisions[g or r.model_name].reason,
            )
    except BaseException:
        parent.end("FAILED")
        raise
    parent.end("FINISHED")
    top = best_trial(results)
    lines = [
        f"**Sweep of {len(results)} trials of `{pipeline}`** ({len(failed)} failed); MLflow parent run "
        f"`{parent.id}`, best trial {top.index} `{json.dumps(top.params)}` (val loss {top.val_loss:.5f}, "
        f"run `{top.run_id}`)",
        "",
        "| registered | version | alias | reason |",
        "|---|---|---|---|",
    ]
    lines += [f"| {d.model_name} | {d.version} | {d.alias} | {d.reason} |" for d in decisions.values()]
    lines += ["", "| best trial metric | value |", "|---|---|"]
    lines += [
        f"| `{k}` | {v:.4g} |"
        for k, v in sorted(top.metrics.items())
        if k.startswith(("test_", "val_")) and "." not in k
    ][:30]
    create_markdown_artifact("\n".join(lines), key="sweep-result")
    return {
        "parent_run_id": parent.id,
        "trials": len(results),
        "failed": len(failed),
        "best_trial": top.index,
        "best_params": top.params,
        "best_val_loss": top.val_loss,
        "results": [to_dict_result(x) for x in results],
        "registered": {
            k: {"model_name": d.model_name, "version": d.version, "alias": d.alias, "reason": d.reason}
            for k, d in decisions.items()
        },
    }


def to_dict_result(x: TrialResult) -> dict[str, Any]:
    return {
        "index": x.index,
        "params": x.params,
        "status": x.status,
        "run_id": x.run_id,
        "val_loss": x.val_loss,
        "error": x.error,
        "seconds": x.seconds,
        "worker": x.worker,
    }
