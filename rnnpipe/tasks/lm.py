"""Tasks of the language-model pipeline: each wraps one library call."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from rnnpipe.lm import (
    LMConfig,
    LMEvaluation,
    LMPipeline,
    LMPrepared,
    evaluate_lm,
    load_lm_texts,
    plot_perplexity,
    prepare_lm,
)
from rnnpipe.registry import Run
from rnnpipe.tasks.common import IO
from rnnpipe.training import FitResult


@task(name="ingest", cache_policy=NO_CACHE, **IO)
def ingest(cfg: LMConfig) -> dict:
    tables = load_lm_texts(cfg)
    for t in tables.values():
        get_run_logger().info(
            "read %d texts from %s%s", len(t), t.source, f" (skipped {t.skipped})" if t.skipped else ""
        )
    return tables


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(tables: dict, cfg: LMConfig) -> LMPrepared:
    """Split the documents, build the vocabulary on train, encode each part as one stream."""
    p = prepare_lm(tables, cfg)
    rows = [{"part": k, **v} for k, v in p.counts().items()]
    create_table_artifact(rows, key="lm-split", description=p.split_kind)
    get_run_logger().info(
        "%s; %s level, vocabulary %d; %s", p.split_kind, p.preprocessor.level, len(p.preprocessor.vocab_), p.counts()
    )
    return p


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(pipeline: LMPipeline, prepared: LMPrepared, run_id: str, fit_result: FitResult) -> LMEvaluation:
    """Exact perplexity against the Kneser-Ney n-gram on the same tokens, the curves, and a
    table of sampled continuations."""
    run = Run(run_id)
    ev = evaluate_lm(pipeline, prepared)
    run.log_metrics(ev.metrics)
    run.log_metrics(
        {
            "train_tokens_per_s": fit_result.samples_per_s * pipeline.config.stream.bptt,
            "vocabulary_size": len(prepared.preprocessor.vocab_),
        }
    )
    run.log_figure(
        plot_perplexity(fit_result.history, ev.metrics["ngram_val_perplexity"]), "plots/perplexity_curves.png"
    )
    run.client.log_table(run_id, ev.samples, "samples/continuations.json")
    run.log_text(ev.samples.to_csv(index=False), "samples/continuations.csv")
    standing = ev.standing()
    run.set_tags({"vs_baselines": standing, "mlflow.note.content": standing, "split": prepared.split_kind})
    create_table_artifact(ev.samples.to_dict("records"), key="lm-samples", description=standing)
    get_run_logger().info(standing)
    return ev
