"""Tasks of the review-sentiment pipeline: each wraps one library call."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from rnnpipe.evaluation import plot_comparison, plot_confusion_matrix
from rnnpipe.registry import Run
from rnnpipe.reviews import (
    Pretrained,
    ReviewsEvaluation,
    ReviewsPipeline,
    ReviewsPrepared,
    confidently_wrong,
    evaluate_reviews,
    from_language_model,
    load_reviews,
    prepare_reviews,
    pretrain_encoder,
)
from rnnpipe.reviews_config import ReviewsConfig
from rnnpipe.tasks.common import IO
from rnnpipe.text import TextTable
from rnnpipe.training import FitResult


@task(name="ingest", cache_policy=NO_CACHE, **IO)
def ingest(cfg: ReviewsConfig) -> dict[str, TextTable]:
    tables = load_reviews(cfg)
    for t in tables.values():
        get_run_logger().info(
            "read %d reviews from %s%s", len(t), t.source, f" (skipped {t.skipped})" if t.skipped else ""
        )
    return tables


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(tables: dict[str, TextTable], cfg: ReviewsConfig) -> ReviewsPrepared:
    """Split, vocabulary on train, encode every part once (and load vectors if configured)."""
    p = prepare_reviews(tables, cfg)
    rows = [{"part": k, **v} for k, v in p.counts().items()]
    create_table_artifact(rows, key="reviews-split", description=p.split_kind)
    get_run_logger().info("%s; vocabulary %d; %s", p.split_kind, len(p.preprocessor.vocab_), p.counts())
    return p


@task(name="pretrain", cache_policy=NO_CACHE)
def pretrain(prepared: ReviewsPrepared, cfg: ReviewsConfig, run_id: str) -> Pretrained:
    """A language model on the training texts (and pretrain.path) for the classifier to start from."""
    out = pretrain_encoder(prepared, cfg, progress=None)
    Run(run_id).log_metrics(out.metrics)
    get_run_logger().info(
        "pretrained on %d texts (%d tokens) in %.0f s; held-out perplexity %s",
        out.metrics["pretrain_texts"],
        out.metrics["pretrain_tokens"],
        out.metrics["pretrain_seconds"],
        ", ".join(f"{k.split('_')[1]} {v:.1f}" for k, v in out.metrics.items() if k.endswith("val_perplexity")),
    )
    return out


@task(name="language-model", cache_policy=NO_CACHE)
def language_model(prepared: ReviewsPrepared, cfg: ReviewsConfig) -> tuple[ReviewsConfig, Pretrained]:
    """The registered language model `pretrain.model` to start from, checked never to have
    seen this run's validation or test texts; the settings come back with its encoder shape."""
    cfg, out = from_language_model(prepared, cfg)
    get_run_logger().info(
        "starting from %s (%s); %.0f%% of the classifier's vocabulary is in its vocabulary",
        out.tags["pretrain_model"],
        out.tags["pretrain_encoder"],
        100 * out.metrics["pretrain_embedding_coverage_vocab"],
    )
    return cfg, out


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(
    pipeline: ReviewsPipeline, prepared: ReviewsPrepared, run_id: str, fit_result: FitResult
) -> ReviewsEvaluation:
    """Model, TF-IDF + logistic regression and majority class on test, side by side."""
    run = Run(run_id)
    ev = evaluate_reviews(pipeline, prepared)
    run.log_metrics(ev.metrics)
    train = prepared.counts()["train"]
    run.log_metrics(
        {
            "train_tokens_per_s": fit_result.samples_per_s * train["tokens"] / train["reviews"],
            "vocabulary_size": len(prepared.preprocessor.vocab_),
        }
    )
    run.log_metrics({f"data_skipped_{k}": v for k, v in prepared.skipped.items()})
    run.log_metrics({k: v for k, v in prepared.embedding_stats.items()})
    table = ev.comparison()
    run.log_dict(table, "metrics/comparison.json")
    run.log_figure(
        plot_comparison(table, keys=("accuracy", "macro_f1", "roc_auc")), "plots/test_model_vs_baselines.png"
    )
    y = prepared.y["test"]
    run.log_figure(
        plot_confusion_matrix(y, ev.predictions["model"], prepared.classes, "model, test"), "plots/confusion_test.png"
    )
    run.log_figure(
        plot_confusion_matrix(y, ev.predictions["tfidf"], prepared.classes, "TF-IDF + logistic regression, test"),
        "plots/confusion_test_tfidf.png",
    )
    wrong = confidently_wrong(prepared, ev)
    run.client.log_table(run_id, wrong, "errors/confidently_wrong.json")
    run.log_text(wrong.to_csv(index=False), "errors/confidently_wrong.csv")
    standing = ev.standing()
    run.set_tags(
        {
            "vs_baselines": standing,
            "mlflow.note.content": standing,
            "split": prepared.split_kind,
            **prepared.embedding_tags,
        }
    )
    create_table_artifact(table, key="reviews-test-comparison", description=standing)
    get_run_logger().info(standing)
    return ev
