"""The language-model flow: ingest -> split, vocabulary, encode -> train (truncated BPTT) ->
evaluate against a Kneser-Ney n-gram -> register.

The steps are the kind's (`rnnpipe.pipelines.lm.steps`), each run
as a Prefect task. Run it with `rnnpipe train lm`, or from Python:

    from rnnpipe.flows.lm import train_lm
    train_lm(config={"train": {"epochs": 5}})
"""

from __future__ import annotations

from typing import Any

from prefect import flow

import rnnpipe.flows  # noqa: F401  (environment first)
from rnnpipe.flows.tasks import hide_user_error_tracebacks
from rnnpipe.flows.tasks.common import train_flow

hide_user_error_tracebacks()


@flow(name="train-lm", description="Train, evaluate and register the recurrent language model.")
def train_lm(config: dict[str, Any] | None = None, resume: bool = False, reason: str = "") -> dict[str, Any]:
    return train_flow("lm", config, resume, reason)
