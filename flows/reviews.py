"""The review-sentiment flow: ingest -> split, tokenise, encode -> train -> evaluate against
TF-IDF + logistic regression -> register.

Run it with `rnnpipe train reviews`, or from Python:

    from flows.reviews import train_reviews
    train_reviews(config={"train": {"epochs": 5}})
"""

from __future__ import annotations

from typing import Any

import flows  # noqa: F401  (environment first)
from prefect import flow, get_run_logger

from rnnpipe.config import ReviewsConfig, from_dict, to_dict
from rnnpipe.registry import Run, configure_tracking
from rnnpipe.reviews import ReviewsPipeline, reviews_example, text_loss
from tasks import hide_user_error_tracebacks
from tasks.common import finish, register, start_run, train
from tasks.reviews import evaluate, ingest, prepare

hide_user_error_tracebacks()


@flow(name="train-reviews", description="Train, evaluate and register the review-sentiment classifier.")
def train_reviews(config: dict[str, Any] | None = None, resume: bool = False) -> dict[str, Any]:
    cfg = from_dict(ReviewsConfig, config or to_dict(ReviewsConfig())).validate()
    uri = configure_tracking()
    tables = ingest(cfg)
    prepared = prepare(tables, cfg)
    run_id, checkpoint = start_run(cfg, "reviews", prepared.fingerprint, prepared.source,
                                   prepared.summary(), resume)
    r = cfg.register
    try:
        pipeline = ReviewsPipeline(cfg, prepared.preprocessor, prepared.classes, embedding=prepared.embedding)
        result = train(pipeline.model, prepared.batches("train"), prepared.batches("val"), cfg,
                       run_id, checkpoint, resume, text_loss(cfg, prepared))
        counts = prepared.counts()["train"]
        tokens_per_review = counts["tokens"] / counts["reviews"]
        Run(run_id).log_metrics({"train_tokens_per_s": result.samples_per_s * tokens_per_review,
                                 "vocabulary_size": len(prepared.preprocessor.vocab_)})
        ev = evaluate(pipeline, prepared, run_id)  # also sets pipeline.threshold
        decision = register(pipeline, reviews_example(prepared), ev.metrics, run_id, r.model_name, r.metric,
                            {"tfidf": "tfidf_test_macro_f1", "majority": "majority_test_macro_f1"},
                            r.baseline_margin, greater_is_better=True)
    except KeyboardInterrupt:
        finish(run_id, "KILLED")
        raise
    except BaseException:
        finish(run_id, "FAILED")
        raise
    finish(run_id, "FINISHED")
    m = ev.metrics
    out = {"tracking_uri": uri, "experiment": r.experiment, "run_id": run_id,
           "model_name": decision.model_name, "version": decision.version, "alias": decision.alias,
           "reason": decision.reason, "device": result.device, "best_epoch": result.best_epoch,
           "metric": r.metric, "threshold": pipeline.threshold, "standing": ev.standing(),
           **{k: m[k] for k in ("test_accuracy", "test_macro_f1", "test_roc_auc", "tfidf_test_accuracy",
                                "tfidf_test_macro_f1", "majority_test_macro_f1")}}
    get_run_logger().info("done: %s", out)
    return out
