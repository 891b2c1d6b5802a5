"""The review-sentiment flow: ingest -> split, tokenise, encode, fit the TF-IDF baseline ->
(pretrain the encoder as a language model, or take a registered one) -> train -> evaluate
against TF-IDF + logistic regression -> register.

The steps are the kind's (`rnnpipe.pipelines.reviews.steps`), each run
as a Prefect task. Run it with `rnnpipe train reviews`, or from Python:

    from rnnpipe.flows.reviews import train_reviews
    train_reviews(config={"train": {"epochs": 5}})
"""

from __future__ import annotations

from typing import Any

from prefect import flow

import rnnpipe.flows  # noqa: F401  (environment first)
from rnnpipe.flows.tasks import hide_user_error_tracebacks
from rnnpipe.flows.tasks.common import train_flow

hide_user_error_tracebacks()


@flow(name="train-reviews", description="Train, evaluate and register the review-sentiment classifier.")
def train_reviews(config: dict[str, Any] | None = None, resume: bool = False, reason: str = "") -> dict[str, Any]:
    return train_flow("reviews", config, resume, reason)
