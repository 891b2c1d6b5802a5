"""Hyper-parameter sweeps: trials as pure functions of (config, data reference).

A trial reads its data itself from the path in its config, trains, evaluates, logs to its own
MLflow run (created by id, nested under the sweep's parent run, never through MLflow's
thread-local active run) and logs its model. What it returns is small: the run id, the
validation loss it is ranked by, its metrics, or the error that stopped it. So a trial runs the
same in this process, a local process pool or a Dask worker on another machine.
"""

from __future__ import annotations

import copy
import itertools
import os
import random
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnpipe import kinds
from rnnpipe import threads as rnnpipe_threads
from rnnpipe.config import apply_overrides, from_dict
from rnnpipe.errors import ConfigError, RnnpipeError
from rnnpipe.evaluation import subplots

# --- the search space ----------------------------------------------------------------------


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """["model.cell=lstm,gru", "model.hidden_size=64,128"] -> {key: [values as text]}."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not vals:
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2,..., e.g. model.cell=lstm,gru")
        grid[key.strip()] = vals
    return grid


def make_trials(grid: dict[str, list[str]], random_n: int = 0, seed: int = 0) -> list[dict[str, str]]:
    """Every combination of the grid, or `random_n` of them drawn without replacement."""
    keys = list(grid)
    combos = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    if random_n:
        combos = random.Random(seed).sample(combos, min(random_n, len(combos)))
    return combos


def trial_config(pipeline: str, base: dict[str, Any], params: dict[str, str]):
    """The validated config of one trial: the base config with the trial's values."""
    kind = kinds.get(pipeline)
    data = apply_overrides(copy.deepcopy(base), [f"{k}={v}" for k, v in params.items()])
    return from_dict(kind.config_class(), data).validate()


def plan_resources(n_trials: int, workers: int = 0, threads: int = 0, cpus: int | None = None) -> tuple[int, int]:
    """(concurrent trials, torch threads per trial) that do not oversubscribe the cores:
    by default one trial per core, one thread each; given one, the other follows."""
    cpus = cpus or rnnpipe_threads.available_cpus()
    if workers <= 0:
        workers = max(1, cpus // max(threads, 1))
    workers = max(1, min(workers, n_trials))
    if threads <= 0:
        threads = max(1, cpus // workers)
    return workers, threads


# --- one trial -----------------------------------------------------------------------------


@dataclass
class TrialResult:
    index: int
    params: dict[str, str]
    status: str  # FINISHED | FAILED
    run_id: str = ""
    val_loss: float = float("nan")
    metrics: dict[str, float] = field(default_factory=dict)
    model_uri: str = ""
    error: str = ""
    user_error: bool = False  # bad config or data: retrying cannot help
    seconds: float = 0.0
    worker: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "FINISHED"


def run_trial(
    pipeline: str,
    base: dict[str, Any],
    params: dict[str, str],
    index: int,
    *,
    experiment: str,
    parent_run_id: str,
    threads: int = 1,
    tracking_uri: str = "",
    split_gpus: bool = False,
) -> TrialResult:
    """Train and evaluate one trial in its own nested MLflow run; never raises for a failed
    trial: the error is in the result and in the run (status FAILED, tag `error`)."""
    with rnnpipe_threads.worker_share(threads):  # the trial's training never takes more than its share
        rnnpipe_threads.apply(threads)
        return _run_trial(
            pipeline,
            base,
            params,
            index,
            experiment=experiment,
            parent_run_id=parent_run_id,
            threads=threads,
            tracking_uri=tracking_uri,
            split_gpus=split_gpus,
        )


def _run_trial(
    pipeline: str,
    base: dict[str, Any],
    params: dict[str, str],
    index: int,
    *,
    experiment: str,
    parent_run_id: str,
    threads: int,
    tracking_uri: str,
    split_gpus: bool,
) -> TrialResult:
    import socket

    import torch

    from rnnpipe.steps import train_kind, trial_context

    t0 = time.perf_counter()
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    worker = f"{socket.gethostname()}:{os.getpid()}"
    ctx = trial_context(
        run_name=f"trial-{index}",
        parent_run_id=parent_run_id,
        tags={
            "sweep_trial": index,
            "worker": worker,
            "torch_threads": threads,
            **{f"sweep.{k}": v for k, v in params.items()},
        },
    )
    try:
        if split_gpus and torch.cuda.is_available():
            params = {**params, "train.device": f"cuda:{index % torch.cuda.device_count()}"}
        cfg = trial_config(pipeline, base, params)
        cfg.register.experiment = experiment
        # the training flow's own steps, plainly: the same MLflow record as `rnnpipe train`
        out = train_kind(kinds.get(pipeline).steps_object(), cfg, ctx)
        metrics = {k: float(v) for k, v in out.metrics.items() if np.isfinite(v)}
        metrics.update({"best_val_loss": out.result.best_val_loss, "best_epoch": out.result.best_epoch})
        return TrialResult(
            index,
            params,
            "FINISHED",
            out.run_id,
            out.result.best_val_loss,
            metrics,
            out.model_uri,
            seconds=time.perf_counter() - t0,
            worker=worker,
        )
    except Exception as exc:  # a failed trial is a result, not a crash of the sweep (its run says FAILED)
        user = isinstance(exc, RnnpipeError)
        error = str(exc) if user else f"{type(exc).__name__}: {exc}"
        if not ctx.run_id:  # it failed before its run opened (reading or preparing the data): open one
            from rnnpipe.registry import Run, configure_tracking

            configure_tracking()
            tags = {**ctx.tags, "mlflow.parentRunId": parent_run_id, "pipeline": pipeline, "error": error[:5000]}
            run = Run.start(experiment, run_name=ctx.run_name, tags=tags)
            if not user:
                run.log_text(traceback.format_exc(), "error.txt")
            run.end("FAILED")
            ctx.run_id = run.id
        return TrialResult(
            index,
            params,
            "FAILED",
            ctx.run_id,
            error=error,
            user_error=user,
            seconds=time.perf_counter() - t0,
            worker=worker,
        )


def series_of(pipeline: str, cfg: Any) -> list[str]:
    """The series (tickers, patients) of the configured data, for one model per series."""
    if not kinds.get(pipeline).series:
        raise ConfigError(
            f"--per-series needs a pipeline of series ({', '.join(k.name for k in kinds.KINDS.values() if k.series)})"
        )
    if cfg.data.series:
        return list(cfg.data.series)
    if not cfg.data.series_col:
        return [cfg.data.series_name]
    from rnnpipe.io import read_table
    from rnnpipe.settings import resolve_data_path

    table, _ = read_table(
        resolve_data_path(cfg.data.path), [cfg.data.series_col], cfg.data.format, text_columns=[cfg.data.series_col]
    )
    return sorted({s for s in table[cfg.data.series_col].to_pylist() if s is not None})


def best_trial(results: list[TrialResult]) -> TrialResult | None:
    ok = [r for r in results if r.ok]
    return min(ok, key=lambda r: (r.val_loss, r.index)) if ok else None


def summary_rows(results: list[TrialResult], metric: str) -> list[dict[str, Any]]:
    return [
        {
            "trial": r.index,
            **r.params,
            "status": r.status,
            "val_loss": round(r.val_loss, 6),
            metric: round(r.metrics.get(metric, float("nan")), 6),
            "seconds": round(r.seconds, 1),
            "run_id": r.run_id,
            "error": r.error[:200],
        }
        for r in sorted(results, key=lambda r: r.index)
    ]


def plot_sweep(results: list[TrialResult], grid: dict[str, list[str]]):
    """Validation loss against each swept parameter, one panel per parameter."""

    keys = list(grid) or ["trial"]
    fig, axes = subplots(1, len(keys), figsize=(4 * len(keys), 3.4), squeeze=False)
    ok = [r for r in results if r.ok]
    best = best_trial(results)
    for ax, key in zip(axes[0], keys):
        values = grid.get(key, [str(r.index) for r in results])
        pos = {v: i for i, v in enumerate(values)}
        xs = [pos[r.params.get(key, str(r.index))] for r in ok]
        ax.scatter(xs, [r.val_loss for r in ok], color="tab:blue", label="trial")
        if best is not None:
            ax.scatter(
                [pos[best.params.get(key, str(best.index))]],
                [best.val_loss],
                color="tab:red",
                marker="*",
                s=160,
                label="best",
            )
        failed = [pos[r.params.get(key, str(r.index))] for r in results if not r.ok]
        for x in failed:
            ax.axvline(x, color="grey", ls=":", lw=1)
        ax.set_xticks(range(len(values)), values)
        ax.set_xlabel(key)
        ax.set_ylabel("best val loss")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("sweep: validation loss per trial (dotted: failed trials)", fontsize=10)
    fig.tight_layout()
    return fig
