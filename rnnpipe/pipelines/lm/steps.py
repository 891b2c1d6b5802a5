"""The language model's steps (`rnnpipe.steps`): ingest -> split, vocabulary, encode -> train
(truncated BPTT) -> evaluate against a Kneser-Ney n-gram -> register."""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

from rnnpipe.pipelines.lm.config import LMConfig
from rnnpipe.steps import Context, TrainingSteps

log = logging.getLogger(__name__)

PROFILE_PROMPTS = 1000  # validation openings in the drift reference


class LMSteps(TrainingSteps):
    kind: ClassVar[str] = "lm"

    def ingest(self, cfg: LMConfig, ctx: Context):
        from rnnpipe.pipelines.lm.prepare import load_lm_texts

        tables = load_lm_texts(cfg)
        for t in tables.values():
            log.info("read %d texts from %s%s", len(t), t.source, f" (skipped {t.skipped})" if t.skipped else "")
        return tables

    def prepare(self, tables, cfg: LMConfig, ctx: Context):
        """Split the documents, build the vocabulary on train, encode each part as one stream."""
        from rnnpipe.pipelines.lm.prepare import prepare_lm

        p = prepare_lm(tables, cfg)
        ctx.artifacts.table("lm-split", [{"part": k, **v} for k, v in p.counts().items()], p.split_kind)
        pre = p.preprocessor
        log.info("%s; %s level, vocabulary %d; %s", p.split_kind, pre.level, len(pre.vocab_), p.counts())
        return p

    def build(self, cfg: LMConfig, prepared, state, run_id: str, ctx: Context):
        from rnnpipe.pipelines.lm.artefact import LMPipeline

        return LMPipeline(cfg, prepared.preprocessor, seen=prepared.seen())

    def batches(self, cfg: LMConfig, prepared):
        rows, bptt = cfg.train.batch_size, cfg.stream.bptt
        return prepared.batches("train", rows, bptt), prepared.batches("val", rows, bptt)

    def loss(self, cfg: LMConfig, prepared):
        from rnnpipe.pipelines.lm.prepare import lm_loss

        return lm_loss

    def epoch_metrics(self, record: dict[str, float]) -> dict[str, float]:
        return {
            "train_perplexity": math.exp(min(record["train_loss"], 50)),
            "val_perplexity": math.exp(min(record["val_loss"], 50)),
        }

    def evaluate(self, pipeline, prepared, result, run_id: str, ctx: Context):
        """Exact perplexity against the Kneser-Ney n-gram on the same tokens, the curves, and a
        table of sampled continuations."""
        from rnnpipe.pipelines.lm.evaluation import evaluate_lm, plot_perplexity
        from rnnpipe.registry import Run

        run = Run(run_id)
        ev = evaluate_lm(pipeline, prepared)
        run.log_metrics(ev.metrics)
        run.log_metrics(
            {
                "train_tokens_per_s": result.samples_per_s * pipeline.config.stream.bptt,
                "vocabulary_size": len(prepared.preprocessor.vocab_),
            }
        )
        curves = plot_perplexity(result.history, ev.metrics["ngram_val_perplexity"])
        run.log_figure(curves, "plots/perplexity_curves.png")
        run.client.log_table(run_id, ev.samples, "samples/continuations.json")
        run.log_text(ev.samples.to_csv(index=False), "samples/continuations.csv")
        standing = ev.standing()
        run.set_tags({"vs_baselines": standing, "mlflow.note.content": standing, "split": prepared.split_kind})
        ctx.artifacts.table("lm-samples", ev.samples.to_dict("records"), standing)
        log.info(standing)
        return ev

    def profile(self, cfg: LMConfig, tables, prepared, pipeline, evaluation):
        """The reference of drift reports: prompts made of the openings of validation texts
        (their first 3 to 20 tokens, seeded), with each one's unknown-word share and its
        negative log-likelihood per token (`LMPipeline.drift_values`). On the training texts
        the unknown share is zero by construction."""
        import numpy as np
        import pandas as pd

        from rnnpipe.drift import profile
        from rnnpipe.pipelines.lm.data import PROMPT_COLUMN

        pre, rng = pipeline.preprocessor, np.random.default_rng(cfg.train.seed)
        texts = prepared.texts["val"]
        picked = rng.choice(len(texts), min(len(texts), PROFILE_PROMPTS), replace=False) if texts else []
        prompts = [pre.detokenize(pre.tokens(texts[i])[: int(rng.integers(3, 21))]) for i in sorted(picked)]
        features, _ = pipeline.drift_values(pd.DataFrame({PROMPT_COLUMN: prompts}), None)
        return profile(features, {}, cfg.drift, meta={"val_prompts": len(prompts), "prompt_tokens": "3-20"})

    def example(self, cfg: LMConfig, tables, prepared):
        from rnnpipe.pipelines.lm.artefact import prompts_example

        return prompts_example(cfg)

    def baseline(self, cfg: LMConfig, prepared, ev, decision):
        """The Kneser-Ney n-gram, when the model lost to it."""
        from rnnpipe.pipelines.lm.artefact import NgramPipeline

        r = cfg.register
        if r.register_baseline and decision.rule == "baseline" and ev.ngram is not None:
            return "ngram", NgramPipeline.of(cfg, prepared, ev.ngram), ev.metrics[f"ngram_{r.metric}"]
        return None

    def headline(self, cfg, pipeline, ev, side) -> dict[str, Any]:
        keys = ("test_perplexity", "ngram_test_perplexity", "test_perplexity_vs_ngram", "val_perplexity")
        return {"standing": ev.standing(), **{k: ev.metrics[k] for k in keys}}
