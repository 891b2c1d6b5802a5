"""How a flow runs a kind's steps (`rnnpipe.steps`) with Prefect: each step a task, tables and
notes as Prefect artifacts, the MLflow run named after the flow run."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import TerminationSignal
from prefect.runtime import flow_run

from rnnpipe.flows.tasks import retry_unless_user_error
from rnnpipe.steps import Artifacts, Context

IO = dict(retries=2, retry_delay_seconds=2, retry_condition_fn=retry_unless_user_error)

_tasks: dict[tuple[Callable, str, bool], Any] = {}


def as_task(name: str, fn: Callable, *args: Any, io: bool = False, **kwargs: Any) -> Any:
    """Run one step as the Prefect task `name` (retried when it does I/O, never for a user error)."""
    key = (fn, name, io)
    if key not in _tasks:
        _tasks[key] = task(fn, name=name, cache_policy=NO_CACHE, **(IO if io else {}))
    return _tasks[key](*args, **kwargs)


class PrefectArtifacts(Artifacts):
    """Tables, notes and progress as Prefect artifacts of the flow run."""

    def table(self, key: str, rows: list[dict[str, Any]], description: str = "") -> None:
        create_table_artifact(rows, key=key, description=description)

    def markdown(self, key: str, text: str) -> None:
        create_markdown_artifact(text, key=key)

    def progress(self, key: str, description: str) -> Callable[[str, int, int], None]:
        artifact = create_progress_artifact(0.0, key=key, description=description)

        def update(what: str, done: int, total: int) -> None:
            with contextlib.suppress(Exception):  # a progress display that cannot update stops nothing
                update_progress_artifact(artifact, 100.0 * done / total, description=f"{what}: shard {done} of {total}")

        return update


def flow_context(resume: bool = False, **overrides: Any) -> Context:
    """The context of a training flow: steps as tasks, Prefect artifacts, the MLflow run named
    after the flow run (one name in both UIs) and tagged with its id; SIGTERM (Prefect's
    TerminationSignal) marks the run KILLED."""
    return Context(
        do=as_task,
        artifacts=PrefectArtifacts(),
        resume=resume,
        run_name=str(flow_run.name),
        tags={"prefect_flow_run_id": str(flow_run.id), "prefect_flow_run_name": str(flow_run.name)},
        killed=(KeyboardInterrupt, TerminationSignal),
        **overrides,
    )


def train_flow(kind: str, config: dict[str, Any] | None, resume: bool, reason: str = "") -> dict[str, Any]:
    """The body of every training flow: the kind's steps on its settings, in the flow's context.
    `reason`: why the run was started, when not by a person or its schedule (a batch job's
    drift report or realised accuracy: the MLflow run's tag `retrain_reason`)."""
    from rnnpipe import kinds
    from rnnpipe.config import from_dict, to_dict
    from rnnpipe.steps import train_kind

    k = kinds.get(kind)
    cls = k.config_class()
    cfg = from_dict(cls, config or to_dict(cls())).validate()
    ctx = flow_context(resume)
    if reason:
        ctx.tags["retrain_reason"] = reason
    return train_kind(k.steps_object(), cfg, ctx).summary()
