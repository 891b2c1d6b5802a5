"""The language-model flow: ingest -> split, vocabulary, encode -> train (truncated BPTT) ->
evaluate against a Kneser-Ney n-gram -> register.

Run it with `rnnpipe train lm`, or from Python:

    from rnnpipe.flows.lm import train_lm
    train_lm(config={"train": {"epochs": 5}})
"""

from __future__ import annotations

import math
from typing import Any

from prefect import flow

import rnnpipe.flows  # noqa: F401  (environment first)
from rnnpipe.config import from_dict, to_dict
from rnnpipe.lm import LMConfig, LMPipeline, lm_loss, prompts_example
from rnnpipe.registry import configure_tracking, gate_spec
from rnnpipe.tasks import hide_user_error_tracebacks
from rnnpipe.tasks.common import register, run_status, start_run, summary, train
from rnnpipe.tasks.lm import evaluate, ingest, prepare

hide_user_error_tracebacks()


def _perplexity(record: dict[str, float]) -> dict[str, float]:
    return {
        "train_perplexity": math.exp(min(record["train_loss"], 50)),
        "val_perplexity": math.exp(min(record["val_loss"], 50)),
    }


@flow(name="train-lm", description="Train, evaluate and register the recurrent language model.")
def train_lm(config: dict[str, Any] | None = None, resume: bool = False) -> dict[str, Any]:
    cfg = from_dict(LMConfig, config or to_dict(LMConfig())).validate()
    uri = configure_tracking()
    tables = ingest(cfg)
    prepared = prepare(tables, cfg)
    run_id, checkpoint = start_run(cfg, "lm", prepared.fingerprint, prepared.source, prepared.summary(), resume)
    r, rows, bptt = cfg.register, cfg.train.batch_size, cfg.stream.bptt
    with run_status(run_id):
        pipeline = LMPipeline(cfg, prepared.preprocessor, seen=prepared.seen())
        result = train(
            pipeline.model,
            prepared.batches("train", rows, bptt),
            prepared.batches("val", rows, bptt),
            cfg,
            run_id,
            checkpoint,
            resume,
            lm_loss,
            epoch_metrics=_perplexity,
        )
        ev = evaluate(pipeline, prepared, run_id, result)
        decision = register(pipeline, prompts_example(cfg), ev.metrics, run_id, r.model_name, **gate_spec("lm", cfg))
    return summary(
        uri,
        r.experiment,
        run_id,
        decision,
        result,
        r.metric,
        standing=ev.standing(),
        **{
            k: ev.metrics[k]
            for k in ("test_perplexity", "ngram_test_perplexity", "test_perplexity_vs_ngram", "val_perplexity")
        },
    )
