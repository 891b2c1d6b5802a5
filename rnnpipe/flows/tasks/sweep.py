"""Tasks of the sweep flow: one trial per task, wherever the task runner puts it."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from rnnpipe.gate import GateDecision, register_and_gate
from rnnpipe.registry import Run
from rnnpipe.sweep import TrialResult, run_trial


class TrialFailed(Exception):
    """Raised by a failed trial so that Prefect marks the task failed (and retries it when
    retries are set and the cause is not a user error); carries the trial's result."""

    def __init__(self, result: TrialResult):
        super().__init__(f"trial {result.index} failed: {result.error}")
        self.result = result

    def __reduce__(self):  # picklable across process and Dask workers
        return (TrialFailed, (self.result,))


def retry_unless_user_error(task, task_run, state) -> bool:
    try:
        state.result()
    except TrialFailed as exc:
        return not exc.result.user_error
    except Exception:
        return True
    return False


@task(name="trial", cache_policy=NO_CACHE, retry_condition_fn=retry_unless_user_error)
def trial(
    pipeline: str,
    base: dict[str, Any],
    params: dict[str, str],
    index: int,
    experiment: str,
    parent_run_id: str,
    threads: int,
    tracking_uri: str,
    split_gpus: bool,
) -> TrialResult:
    result = run_trial(
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
    if not result.ok:
        raise TrialFailed(result)
    return result


@task(name="register-best", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def register_best(best: TrialResult, model_name: str, gate: dict[str, Any]) -> GateDecision:
    return register_and_gate(Run(best.run_id), best.model_uri, model_name, best.metrics, **gate)
