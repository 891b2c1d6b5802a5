"""The review-sentiment flow: ingest -> split, tokenise, encode, fit the TF-IDF baseline ->
(pretrain the encoder as a language model, or take a registered one) -> train -> evaluate against TF-IDF + logistic
regression -> register.

Run it with `rnnpipe train reviews`, or from Python:

    from rnnpipe.flows.reviews import train_reviews
    train_reviews(config={"train": {"epochs": 5}})
"""

from __future__ import annotations

from typing import Any

from prefect import flow

import rnnpipe.flows  # noqa: F401  (environment first)
from rnnpipe.config import from_dict, to_dict
from rnnpipe.registry import Run, configure_tracking, gate_spec
from rnnpipe.reviews import ReviewsPipeline, reviews_example, text_loss
from rnnpipe.reviews_config import ReviewsConfig
from rnnpipe.tasks import hide_user_error_tracebacks
from rnnpipe.tasks.common import register, run_status, start_run, summary, train
from rnnpipe.tasks.reviews import evaluate, ingest, language_model, prepare, pretrain

hide_user_error_tracebacks()


@flow(name="train-reviews", description="Train, evaluate and register the review-sentiment classifier.")
def train_reviews(config: dict[str, Any] | None = None, resume: bool = False) -> dict[str, Any]:
    cfg = from_dict(ReviewsConfig, config or to_dict(ReviewsConfig())).validate()
    uri = configure_tracking()
    tables = ingest(cfg)
    prepared = prepare(tables, cfg)
    pretrained = None
    if cfg.pretrain.model:  # before the run starts: its params record the encoder it takes
        cfg, pretrained = language_model(prepared, cfg)
    run_id, checkpoint = start_run(cfg, "reviews", prepared.fingerprint, prepared.source, prepared.summary(), resume)
    r = cfg.register
    with run_status(run_id):
        if pretrained is not None:
            Run(run_id).log_metrics(pretrained.metrics)
            Run(run_id).set_tags(pretrained.tags)
        elif cfg.pretrain.enabled:
            pretrained = pretrain(prepared, cfg, run_id)
        pipeline = ReviewsPipeline.from_prepared(cfg, prepared, pretrained)
        result = train(
            pipeline.model,
            prepared.batches("train"),
            prepared.batches("val"),
            cfg,
            run_id,
            checkpoint,
            resume,
            text_loss(cfg, prepared),
        )
        ev = evaluate(pipeline, prepared, run_id, result)  # also sets pipeline.threshold
        gate = gate_spec("reviews", cfg)
        decision = register(pipeline, reviews_example(prepared), ev.metrics, run_id, r.model_name, **gate)
        baseline = None
        if (
            r.register_baseline
            and decision.rule == "baseline"
            and (ev.metrics[f"tfidf_{r.metric}"] >= ev.metrics[f"majority_{r.metric}"])
        ):
            # the model lost to TF-IDF: the baseline itself becomes a servable version
            baseline = register(
                ReviewsPipeline.tfidf_baseline(cfg, prepared),
                reviews_example(prepared),
                {r.metric: ev.metrics[f"tfidf_{r.metric}"]},
                run_id,
                r.model_name,
                **gate,
                baseline_of="tfidf",
            )
    extra = (
        {}
        if baseline is None
        else {
            "baseline_version": baseline.version,
            "baseline_alias": baseline.alias,
            "baseline_reason": baseline.reason,
        }
    )
    return summary(
        uri,
        r.experiment,
        run_id,
        decision,
        result,
        r.metric,
        threshold=pipeline.threshold,
        **extra,
        standing=ev.standing(),
        **{
            k: ev.metrics[k]
            for k in (
                "test_accuracy",
                "test_macro_f1",
                "test_roc_auc",
                "tfidf_test_accuracy",
                "tfidf_test_macro_f1",
                "majority_test_macro_f1",
            )
        },
    )
