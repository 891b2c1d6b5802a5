"""The tune flow's task: one Optuna trial per task, wherever the task runner puts it."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from rnnpipe.tune import StudySpec, TuneTrial, run_tune_trial


@task(name="tune-trial", cache_policy=NO_CACHE)
def tune_trial(
    spec: StudySpec,
    base: dict[str, Any],
    index: int,
    session: str,
    parent_run_id: str,
    experiment: str,
    deadline: float,
    threads: int,
    tracking_uri: str,
) -> TuneTrial:
    return run_tune_trial(
        spec,
        base,
        index,
        session=session,
        parent_run_id=parent_run_id,
        experiment=experiment,
        deadline=deadline,
        threads=threads,
        tracking_uri=tracking_uri,
    )
