"""Scheduled flow runs: the deployments `rnnpipe schedule` serves from a Prefect server, one
per retrained pipeline (cron or interval) and one for batch prediction.

Import this module only after PREFECT_API_URL points at the server: the deployments are
registered with whatever API Prefect finds at import time."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

import rnnpipe.flows  # noqa: F401  (environment first)
from rnnpipe import settings
from rnnpipe.config import to_dict
from rnnpipe.errors import RnnpipeError
from rnnpipe.flows.predict import batch_predict
from rnnpipe.schedule_config import ScheduleConfig

# one run of each deployment at a time: a run due while the previous one still runs is
# cancelled (retrains on 2 cores must not pile up; the next scheduled run comes soon enough)
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)


def deployments(
    cfg: ScheduleConfig, load_flow: Callable[[str], Any], load_pipeline_config: Callable[[str, list[str]], Any]
) -> list[Any]:
    """One deployment per retrained pipeline (cron or interval) and one for batch prediction."""
    t, p = cfg.train, cfg.predict
    home = settings.project_home()
    out = []
    for name in t.pipelines:
        pipe_cfg = load_pipeline_config(name, t.overrides)
        when = {"interval": t.interval_s} if t.interval_s else {"cron": t.cron}
        out.append(
            load_flow(name).to_deployment(
                name=f"{name}-retrain",
                parameters={"config": to_dict(pipe_cfg)},
                tags=["rnnpipe", "train"],
                concurrency_limit=ONE_AT_A_TIME,
                description=f"Retrain the {name} pipeline; the champion gate decides promotion.",
                **when,
            )
        )
    if p.enabled:
        retrain = ""
        if p.retrain_on:
            name = p.retrain or t.pipelines[0]
            retrain = f"{load_flow(name).name}/{name}-retrain"
        out.append(
            batch_predict.to_deployment(
                name="batch-predict",
                interval=p.interval_s,
                tags=["rnnpipe", "predict"],
                concurrency_limit=ONE_AT_A_TIME,
                parameters={
                    "model": p.model,
                    "input_path": p.input,  # `rnnpipe schedule` named it absolutely
                    "output_path": str(home / p.output),
                    "chunk_rows": p.chunk_rows,
                    "retrain_on": list(p.retrain_on),
                    "retrain_deployment": retrain,
                },
                description=f"Batch prediction with {p.model}, resolved at each run.",
            )
        )
    return out


def serve_deployments(cfg: ScheduleConfig, load_flow, load_pipeline_config) -> None:
    """Register the deployments with the server and run their scheduled runs until stopped."""
    deps = deployments(cfg, load_flow, load_pipeline_config)
    if not deps:
        raise RnnpipeError("nothing to schedule: train.pipelines is empty and predict.enabled is false")
    interrupted: list[int] = []

    def on_sigint(signum, frame):
        interrupted.append(signum)
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    try:  # Prefect's runner stops on SIGTERM and on Ctrl-C, and returns
        serve(*deps, print_starting_message=True)
    except KeyboardInterrupt:
        interrupted.append(signal.SIGINT)
    stopped = cancel_in_flight()
    if stopped:
        print(f"cancelled {len(stopped)} run(s) in flight (Prefect: Cancelled, MLflow: KILLED)", file=sys.stderr)
    if interrupted:
        raise KeyboardInterrupt  # exit 130, as every rnnpipe command on Ctrl-C


def cancel_in_flight() -> list[str]:
    """The runs of rnnpipe's deployments that a stopped runner leaves behind (pending, running):
    cancelled in Prefect, and their MLflow runs marked KILLED. Returns their flow-run ids."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    from rnnpipe.registry import mark_killed

    live = FlowRunFilter(
        tags=FlowRunFilterTags(all_=["rnnpipe"]),
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING, StateType.CANCELLING])
        ),
    )
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=live)
        for run in runs:
            client.set_flow_run_state(run.id, Cancelled(message="rnnpipe schedule was stopped"), force=True)
    ids = [str(r.id) for r in runs]
    mark_killed(ids)
    return ids
