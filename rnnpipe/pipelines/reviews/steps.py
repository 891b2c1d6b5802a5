"""The review classifier's steps (`rnnpipe.steps`): ingest -> split, tokenise, encode, fit the
TF-IDF baseline -> (pretrain the encoder as a language model, or take a registered one) ->
train -> evaluate against TF-IDF + logistic regression and the majority class -> register (and,
when the model loses to TF-IDF, TF-IDF itself as a version of the same model)."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from rnnpipe.pipelines.reviews.config import ReviewsConfig
from rnnpipe.steps import Context, TrainingSteps

log = logging.getLogger(__name__)

HEADLINE = (
    "test_accuracy",
    "test_macro_f1",
    "test_roc_auc",
    "tfidf_test_accuracy",
    "tfidf_test_macro_f1",
    "majority_test_macro_f1",
)


class ReviewsSteps(TrainingSteps):
    kind: ClassVar[str] = "reviews"

    def ingest(self, cfg: ReviewsConfig, ctx: Context):
        from rnnpipe.pipelines.reviews.prepare import load_reviews

        tables = load_reviews(cfg)
        for t in tables.values():
            log.info("read %d reviews from %s%s", len(t), t.source, f" (skipped {t.skipped})" if t.skipped else "")
        return tables

    def prepare(self, tables, cfg: ReviewsConfig, ctx: Context):
        """Split, vocabulary on train, encode every part once (and load vectors if configured)."""
        from rnnpipe.pipelines.reviews.prepare import prepare_reviews

        p = prepare_reviews(tables, cfg)
        ctx.artifacts.table("reviews-split", [{"part": k, **v} for k, v in p.counts().items()], p.split_kind)
        log.info("%s; vocabulary %d; %s", p.split_kind, len(p.preprocessor.vocab_), p.counts())
        return p

    def before_run(self, cfg: ReviewsConfig, prepared, ctx: Context):
        """With `pretrain.model`, the registered language model to start from: before the run
        starts, so that its params record the encoder it takes."""
        if not cfg.pretrain.model:
            return cfg, None
        return ctx.do("language-model", language_model, prepared, cfg)

    def build(self, cfg: ReviewsConfig, prepared, pretrained, run_id: str, ctx: Context):
        from rnnpipe.pipelines.reviews.artefact import ReviewsPipeline
        from rnnpipe.registry import Run

        if pretrained is not None:
            Run(run_id).log_metrics(pretrained.metrics)
            Run(run_id).set_tags(pretrained.tags)
        elif cfg.pretrain.enabled:
            pretrained = ctx.do("pretrain", pretrain, prepared, cfg, run_id)
        return ReviewsPipeline.from_prepared(cfg, prepared, pretrained)

    def batches(self, cfg: ReviewsConfig, prepared):
        return prepared.batches("train"), prepared.batches("val")

    def loss(self, cfg: ReviewsConfig, prepared):
        from rnnpipe.pipelines.reviews.artefact import text_loss

        return text_loss(cfg, prepared)

    def evaluate(self, pipeline, prepared, result, run_id: str, ctx: Context):
        """Model, TF-IDF + logistic regression and majority class on test, side by side (this
        sets `pipeline.threshold`, chosen on validation)."""
        from rnnpipe.evaluation import plot_comparison
        from rnnpipe.pipelines.reviews.evaluation import confidently_wrong, evaluate_reviews
        from rnnpipe.pipelines.reviews.metrics import plot_confusion_matrix
        from rnnpipe.registry import Run

        run = Run(run_id)
        ev = evaluate_reviews(pipeline, prepared)
        run.log_metrics(ev.metrics)
        train = prepared.counts()["train"]
        run.log_metrics(
            {
                "train_tokens_per_s": result.samples_per_s * train["tokens"] / train["reviews"],
                "vocabulary_size": len(prepared.preprocessor.vocab_),
            }
        )
        run.log_metrics({f"data_skipped_{k}": v for k, v in prepared.skipped.items()})
        run.log_metrics(dict(prepared.embedding_stats))
        table = ev.comparison()
        run.log_dict(table, "metrics/comparison.json")
        run.log_figure(
            plot_comparison(table, keys=("accuracy", "macro_f1", "roc_auc")), "plots/test_model_vs_baselines.png"
        )
        y, classes = prepared.y["test"], prepared.classes
        run.log_figure(
            plot_confusion_matrix(y, ev.predictions["model"], classes, "model, test"), "plots/confusion_test.png"
        )
        run.log_figure(
            plot_confusion_matrix(y, ev.predictions["tfidf"], classes, "TF-IDF + logistic regression, test"),
            "plots/confusion_test_tfidf.png",
        )
        wrong = confidently_wrong(prepared, ev)
        run.client.log_table(run_id, wrong, "errors/confidently_wrong.json")
        run.log_text(wrong.to_csv(index=False), "errors/confidently_wrong.csv")
        standing = ev.standing()
        tags = {"vs_baselines": standing, "mlflow.note.content": standing, "split": prepared.split_kind}
        run.set_tags({**tags, **prepared.embedding_tags})
        ctx.artifacts.table("reviews-test-comparison", table, standing)
        log.info(standing)
        return ev

    def profile(self, cfg: ReviewsConfig, tables, prepared, pipeline, evaluation):
        """The reference of drift reports, on (a sample of) the validation texts: token counts,
        unknown-word shares (on the training texts, which made the vocabulary, that share is
        near zero by construction, and every new text would look foreign) and the model's
        predicted classes; the training labels' prior beside them."""
        import numpy as np
        import pandas as pd

        from rnnpipe.drift import profile, sample
        from rnnpipe.pipelines.reviews.data import TEXT_COLUMN

        texts = pd.DataFrame({TEXT_COLUMN: sample(np.asarray(prepared.texts["val"], dtype=object), 5000)})
        features, predictions = pipeline.drift_values(texts, pipeline.predict(texts))
        y = prepared.y["train"]
        prior = {c: float(np.mean(y == i)) for i, c in enumerate(prepared.classes)}
        meta = {"val_texts": len(texts), "train_label_prior": prior}
        return profile(features, predictions, cfg.drift, categorical=("label",), meta=meta)

    def example(self, cfg: ReviewsConfig, tables, prepared):
        from rnnpipe.pipelines.reviews.artefact import reviews_example

        return reviews_example(prepared)

    def baseline(self, cfg: ReviewsConfig, prepared, ev, decision):
        """TF-IDF, when the model lost to it and it beats the majority class."""
        from rnnpipe.pipelines.reviews.artefact import ReviewsPipeline

        r, m = cfg.register, ev.metrics
        if r.register_baseline and decision.rule == "baseline" and m[f"tfidf_{r.metric}"] >= m[f"majority_{r.metric}"]:
            return "tfidf", ReviewsPipeline.tfidf_baseline(cfg, prepared), m[f"tfidf_{r.metric}"]
        return None

    def headline(self, cfg, pipeline, ev, side) -> dict[str, Any]:
        return {"threshold": pipeline.threshold, "standing": ev.standing(), **{k: ev.metrics[k] for k in HEADLINE}}


def pretrain(prepared, cfg: ReviewsConfig, run_id: str):
    """A language model on the training texts (and pretrain.path) for the classifier to start from."""
    from rnnpipe.pipelines.reviews.pretrain import pretrain_encoder
    from rnnpipe.registry import Run

    out = pretrain_encoder(prepared, cfg, progress=None)
    Run(run_id).log_metrics(out.metrics)
    log.info(
        "pretrained on %d texts (%d tokens) in %.0f s; held-out perplexity %s",
        out.metrics["pretrain_texts"],
        out.metrics["pretrain_tokens"],
        out.metrics["pretrain_seconds"],
        ", ".join(f"{k.split('_')[1]} {v:.1f}" for k, v in out.metrics.items() if k.endswith("val_perplexity")),
    )
    return out


def language_model(prepared, cfg: ReviewsConfig):
    """The registered language model `pretrain.model` to start from, checked never to have
    seen this run's validation or test texts; the settings come back with its encoder shape."""
    from rnnpipe.pipelines.reviews.pretrain import from_language_model

    cfg, out = from_language_model(prepared, cfg)
    log.info(
        "starting from %s (%s); %.0f%% of the classifier's vocabulary is in its vocabulary",
        out.tags["pretrain_model"],
        out.tags["pretrain_encoder"],
        100 * out.metrics["pretrain_embedding_coverage_vocab"],
    )
    return cfg, out
