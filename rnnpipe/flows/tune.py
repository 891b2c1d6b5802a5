"""The tune flow: an Optuna study of a kind's settings, one task per trial on the sweeps' task
runners (a local process pool or Dask), then the best settings retrained with the same seed
and judged by the usual gate.

    from rnnpipe.flows.tune import tune
    from rnnpipe.flows.sweep import task_runner
    tune.with_options(task_runner=task_runner("local", workers=2))("stocks", config, "my-study", 30)
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

import rnnpipe.flows  # noqa: F401  (environment first)
from rnnpipe import kinds
from rnnpipe.config import from_dict
from rnnpipe.errors import ModelError
from rnnpipe.flows.sweep import api_for_workers
from rnnpipe.flows.tasks import hide_user_error_tracebacks
from rnnpipe.flows.tasks.common import flow_context
from rnnpipe.flows.tasks.tune import tune_trial
from rnnpipe.registry import Run, configure_tracking
from rnnpipe.steps import train_kind
from rnnpipe.tune import (
    StudySpec,
    TuneTrial,
    best_config,
    close_stale_runs,
    fail_stale,
    finished,
    new_session,
    open_study,
    plots,
    state_counts,
    summary_rows,
    trial_threads,
    write_best,
)

hide_user_error_tracebacks()


def _collect(future, index: int) -> TuneTrial:
    out = future.result(raise_on_failure=False)
    if isinstance(out, TuneTrial):
        return out
    return TuneTrial(index, state="FAIL", error=f"{type(out).__name__}: {out}")  # e.g. a lost worker


@flow(name="tune", description="Search a pipeline's settings with Optuna; retrain the best and judge it.")
def tune(
    pipeline: str,
    config: dict[str, Any],
    spec: dict[str, Any],
    trials: int = 20,
    timeout: float = 0.0,
    workers: int = 1,
    threads: int = 1,
    runner: str = "",
    best_path: str = "",
) -> dict[str, Any]:
    """Run trials until the study holds `trials` finished ones (a resumed study keeps its own),
    at most `workers` at a time, none started after `timeout` seconds (0: no limit)."""
    tracking_uri = configure_tracking()
    s = StudySpec(**spec)
    cls = kinds.get(pipeline).config_class()
    base = from_dict(cls, config).validate()
    r = base.register
    log = get_run_logger()
    study = open_study(s, base=config)
    session = new_session()
    stale = fail_stale(study, session)
    close_stale_runs(s.name)  # their MLflow runs (and a killed session's parent run): KILLED
    done_before = finished(study)
    todo = max(trials - done_before, 0)
    parent = Run.start(
        r.experiment,
        run_name=f"tune-{s.name}",
        tags={
            "prefect_flow_run_id": str(flow_run.id),
            "prefect_flow_run_name": str(flow_run.name),
            "pipeline": pipeline,
            "tune": "true",
            "tune_study": s.name,
            "tune_storage": s.storage.split("://")[0],
            "tune_runner": runner,
        },
    )
    parent.log_params(
        {
            "tune.pipeline": pipeline,
            "tune.study": s.name,
            "tune.space": json.dumps(s.space),
            "tune.metric": s.metric,
            "tune.direction": s.direction,
            "tune.pruner": s.pruner,
            "tune.sampler": f"TPE(seed={s.seed})",
            "tune.trials": trials,
            "tune.timeout_s": timeout,
            "tune.workers": workers,
            "tune.threads_per_trial": threads,
        }
    )
    log.info(
        "study %r: %d finished trials kept%s, %d to run (%d at a time, %s pruner); objective %s (%s); "
        "MLflow parent run %s",
        s.name,
        done_before,
        f", {stale} left running by a killed session marked failed" if stale else "",
        todo,
        workers,
        s.pruner,
        s.metric,
        s.direction,
        parent.id,
    )
    deadline = time.time() + timeout if timeout > 0 else math.inf
    try:
        with api_for_workers():
            futures = [
                tune_trial.with_options(task_run_name=f"trial-{done_before + i}").submit(
                    s, config, done_before + i, session, parent.id, r.experiment, deadline, threads, tracking_uri
                )
                for i in range(todo)
            ]
            results = [_collect(f, done_before + i) for i, f in enumerate(futures)]
        for x in results:
            if x.state == "FAIL":
                log.warning("trial %d %s failed: %s", x.number, x.params, x.error)
        study = open_study(s)
        counts = state_counts(study)
        rows = summary_rows(study)
        parent.log_table(rows, "tune/trials.json")
        for path, fig in plots(study).items():
            parent.log_figure(fig, path)
        epochs = sum(x.epochs for x in results)
        parent.log_metrics(
            {
                **{f"trials_{k.lower()}": v for k, v in counts.items()},
                "epochs_trained": epochs,
                "trials_skipped": sum(x.state == "SKIPPED" for x in results),
            }
        )
        create_table_artifact(rows, key="tune-trials", description=f"study {s.name}: {counts}")
        if counts.get("COMPLETE", 0) == 0:
            first = next((x.error for x in results if x.error), "no trial ran")
            raise ModelError(f"study {s.name!r}: no trial finished; the first error: {first}")
        best = study.best_trial
        start = [t for t in study.trials if t.user_attrs.get("base_settings") and t.state.name == "COMPLETE"]
        base_value = start[0].value if start else float("nan")
        if start:
            parent.log_metrics({f"base_{s.metric}": base_value})
        # the trials' thread count too: a sum over other threads rounds otherwise, and the
        # retrained model (and `rnnpipe train --config` of the file) would differ in the last digits
        cfg = best_config(pipeline, config, {**best.params, "train.threads": str(trial_threads(config, threads))})
        path = write_best(Path(best_path), cfg) if best_path else None
        parent.log_metrics({f"best_{s.metric}": best.value, "best_trial": best.number})
        parent.set_tags({"best_params": json.dumps(best.params), "best_config": str(path or "")})
        log.info("best trial %d: %s = %.5g with %s", best.number, s.metric, best.value, best.params)
        # the best settings, retrained with the same seed through the usual steps, gate and registry
        retrained = train_kind(
            kinds.get(pipeline).steps_object(),
            cfg,
            replace(flow_context(), run_name=f"{flow_run.name}-best", parent_run_id=parent.id),
        )
        summary = retrained.summary()
        parent.set_tags({"best_run_id": retrained.run_id, "best_version": summary["version"]})
    except BaseException:
        parent.end("FAILED")
        raise
    parent.end("FINISHED")
    create_markdown_artifact(
        f"**Study `{s.name}` of `{pipeline}`**: {counts}; best trial {best.number} "
        f"`{json.dumps(best.params)}` ({s.metric} {best.value:.5g}); retrained as "
        f"{summary['model_name']} v{summary['version']} -> `{summary['alias']}`: {summary['reason']}",
        key="tune-result",
    )
    return {
        "parent_run_id": parent.id,
        "study": s.name,
        "storage": s.storage,
        "metric": s.metric,
        "counts": counts,
        "ran": [asdict(x) for x in results],
        "epochs_trained": epochs,
        "best_trial": best.number,
        "best_value": best.value,
        "base_value": base_value,
        "best_params": best.params,
        "best_config": str(path or ""),
        "retrained": summary,
    }
