"""The monitoring flow: ingest -> resample and window -> train -> evaluate -> (forecast a
channel, as a child run) -> register.

The steps are the kind's (`rnnpipe.pipelines.monitor.steps`), each run
as a Prefect task. Run it with `rnnpipe train monitor`, or from Python:

    from rnnpipe.flows.monitor import train_monitor
    train_monitor(config={"train": {"epochs": 5}})
"""

from __future__ import annotations

from typing import Any

from prefect import flow

import rnnpipe.flows  # noqa: F401  (environment first)
from rnnpipe.flows.tasks import hide_user_error_tracebacks
from rnnpipe.flows.tasks.common import train_flow

hide_user_error_tracebacks()


@flow(name="train-monitor", description="Train, evaluate and register the early-warning classifier.")
def train_monitor(config: dict[str, Any] | None = None, resume: bool = False, reason: str = "") -> dict[str, Any]:
    return train_flow("monitor", config, resume, reason)
