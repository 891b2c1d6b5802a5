"""Perplexity against the Kneser-Ney n-gram, sampled continuations, the curves."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from rnnpipe.errors import ModelError
from rnnpipe.evaluation import subplots
from rnnpipe.pipelines.lm.artefact import LMPipeline
from rnnpipe.pipelines.lm.baselines import KneserNeyLM
from rnnpipe.pipelines.lm.data import PROMPT_COLUMN
from rnnpipe.pipelines.lm.prepare import LMPrepared


@dataclass
class LMEvaluation:
    metrics: dict[str, float]
    samples: pd.DataFrame  # prompt, temperature, continuation
    ngram: Any = None  # the fitted KneserNeyLM, registered to serve when the model loses to it

    def standing(self) -> str:
        m = self.metrics
        verdict = "beats" if m["test_perplexity"] < m["ngram_test_perplexity"] else "does NOT beat"
        return (
            f"test perplexity {m['test_perplexity']:.2f} vs the Kneser-Ney {int(m['ngram_order'])}-gram's "
            f"{m['ngram_test_perplexity']:.2f} (ratio {m['test_perplexity_vs_ngram']:.3f}): the recurrent "
            f"model {verdict} the baseline"
        )


def evaluate_lm(pipeline: LMPipeline, p: LMPrepared) -> LMEvaluation:
    """Exact val and test perplexity of the model and of the n-gram baseline (order and
    discount chosen on validation, fitted on the training documents) on the same tokens, bits
    per character at character level, and the table of sampled continuations."""
    metrics: dict[str, float] = {}
    for part in ("val", "test"):
        lp, n = pipeline.log_likelihood(p.streams[part])
        metrics[f"{part}_perplexity"] = math.exp(-lp / n)
        metrics[f"{part}_tokens"] = float(n)
    ngram = KneserNeyLM().fit(p.docs("train"), p.docs("val"))
    for part in ("val", "test"):
        ppl, _, n = ngram.perplexity(p.docs(part))
        if n != metrics[f"{part}_tokens"]:
            raise ModelError(f"the n-gram baseline scored {n} {part} tokens, the model {metrics[f'{part}_tokens']:.0f}")
        metrics[f"ngram_{part}_perplexity"] = ppl
    metrics.update(
        {
            "ngram_order": float(ngram.order_),
            "ngram_discount": float(ngram.discount_),
            "test_perplexity_vs_ngram": metrics["test_perplexity"] / metrics["ngram_test_perplexity"],
        }
    )
    if pipeline.preprocessor.level == "char":
        for name in ("", "ngram_"):
            metrics[f"{name}test_bits_per_char"] = math.log2(metrics[f"{name}test_perplexity"])
    return LMEvaluation(metrics, sample_table(pipeline), ngram)


def sample_table(pipeline: LMPipeline) -> pd.DataFrame:
    """Continuations of the configured prompts at each configured temperature (seeded)."""
    g = pipeline.config.generate
    rows = []
    for temperature in g.temperatures:
        out = pipeline.predict(pd.DataFrame({PROMPT_COLUMN: g.prompts}), temperature=temperature)
        for prompt, text, note in zip(g.prompts, out.text, out.note):
            rows.append({"prompt": prompt, "temperature": temperature, "continuation": text, "note": note})
    return pd.DataFrame(rows)


def plot_perplexity(history: list[dict[str, float]], ngram_val: float | None = None):
    """Per-epoch train and val perplexity, with the n-gram's val perplexity for reference."""

    epochs = [h["epoch"] for h in history]
    fig, ax = subplots(figsize=(7, 4))
    ax.plot(epochs, [math.exp(h["train_loss"]) for h in history], marker="o", ms=3, label="train")
    ax.plot(epochs, [math.exp(h["val_loss"]) for h in history], marker="o", ms=3, label="val")
    if ngram_val:
        ax.axhline(ngram_val, color="gray", ls="--", lw=1, label=f"Kneser-Ney n-gram, val ({ngram_val:.1f})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity")
    ax.set_title("language model: perplexity per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
