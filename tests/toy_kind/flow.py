"""The toy kind's training flow: its steps (`toy_kind.ToySteps`) run as Prefect tasks, as every
shipped kind's flow does."""

from __future__ import annotations

from typing import Any

from prefect import flow

from rnnpipe.flows.tasks.common import train_flow


@flow(name="train-toy")
def train_toy(config: dict[str, Any] | None = None, resume: bool = False) -> dict[str, Any]:
    return train_flow("toy", config, resume)
