"""The stocks forecasting flow: ingest -> split and window -> train -> evaluate -> register.

The steps are the kind's (`rnnpipe.pipelines.forecast.steps`), each run
as a Prefect task. Run it with `rnnpipe train stocks`, or from Python:

    from rnnpipe.flows.forecast import train_stocks
    train_stocks(config={"train": {"epochs": 5}})
"""

from __future__ import annotations

from typing import Any

from prefect import flow

import rnnpipe.flows  # noqa: F401  (environment first)
from rnnpipe.flows.tasks import hide_user_error_tracebacks
from rnnpipe.flows.tasks.common import train_flow

hide_user_error_tracebacks()


@flow(name="train-stocks", description="Train, evaluate and register the stock-price forecaster.")
def train_stocks(config: dict[str, Any] | None = None, resume: bool = False, reason: str = "") -> dict[str, Any]:
    return train_flow("stocks", config, resume, reason)
