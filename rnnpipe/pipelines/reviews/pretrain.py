"""Pretraining the classifier's encoder as a language model, or starting it from a registered one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from rnnpipe import settings
from rnnpipe.errors import DataError, ModelError
from rnnpipe.pipelines.reviews.config import ReviewsConfig
from rnnpipe.pipelines.reviews.model import TextClassifier
from rnnpipe.pipelines.reviews.prepare import ReviewsPrepared
from rnnpipe.text import EncodedTexts, read_texts, text_digest
from rnnpipe.vectors import vectors_from_vocabulary


@dataclass
class Pretrained:
    """Weights of language models trained on training text only, shaped for the classifier:
    the embedding, and the encoder's recurrent layers (a forward LM for the forward direction,
    a backward LM, on reversed text, for the reverse direction of a bidirectional encoder)."""

    embedding: torch.Tensor
    encoder: dict[str, torch.Tensor]
    metrics: dict[str, float]
    tags: dict[str, str] = field(default_factory=dict)  # where it came from (a registered LM)

    def load_into(self, model: TextClassifier) -> None:
        with torch.no_grad():
            model.embedding.weight.copy_(self.embedding)
            model.embedding.weight[0].zero_()
        model.encoder.rnn.load_state_dict(self.encoder)


def pretraining_texts(p: ReviewsPrepared, cfg: ReviewsConfig) -> tuple[list[str], list[str]]:
    """(texts to learn from, texts to stop on): the training part's texts (never val or test)
    plus the unlabelled `pretrain.path`, and a held-out share of the training texts."""
    train = p.texts["train"]
    n_hold = max(1, int(round(len(train) * cfg.pretrain.holdout)))
    order = np.random.default_rng(cfg.split.seed).permutation(len(train))
    hold = sorted(order[:n_hold].tolist())
    held = set(hold)
    learn = [t for i, t in enumerate(train) if i not in held]
    if cfg.pretrain.path:
        extra = read_texts(
            settings.resolve_data_path(cfg.pretrain.path),
            cfg.pretrain.text_col or cfg.data.text_col,
            "",
            bad_rows=cfg.data.bad_rows,
            fmt="auto",
            require_labels=False,
        )
        learn = learn + extra.texts
    return learn, [train[i] for i in hold]


def from_language_model(p: ReviewsPrepared, cfg: ReviewsConfig) -> tuple[ReviewsConfig, Pretrained]:
    """The classifier's start from the registered language model `pretrain.model` (ULMFiT's
    transfer step): its embedding, mapped word by word onto the classifier's vocabulary (words
    it lacks drawn at random, as for `embed.path`), and its recurrent layers. The encoder takes
    the language model's shape (cell, hidden size, layers; one direction), and the returned
    settings say so. Refused when the language model learned from (or stopped on) any of this
    run's validation or test texts, or when it does not record which texts it saw."""
    from rnnpipe.registry import load_pipeline, resolve_model

    spec = cfg.pretrain.model
    ref = resolve_model(spec)
    lm = load_pipeline(ref, "lm")
    if lm.preprocessor.level != "word":
        raise ModelError(
            f"pretrain.model={spec!r}: {ref} is a {lm.preprocessor.level}-level language model; "
            "a classifier can start only from a word-level one"
        )
    if lm.seen is None:
        raise ModelError(
            f"pretrain.model={spec!r}: {ref} does not record the texts it learned from (it was "
            "logged before rnnpipe kept them), so it cannot be shown not to have seen this run's "
            "validation and test texts; train it again with rnnpipe train lm"
        )
    seen = set(lm.seen.tolist())
    for part in ("val", "test"):
        hits = [i for i, t in enumerate(p.texts[part]) if text_digest(t) in seen]
        if hits:
            raise DataError(
                f"pretrain.model={spec!r}: {ref} learned from {len(hits)} of this run's {len(p.texts[part])} "
                f"{part} reviews (e.g. {p.ids[part][hits[0]]!r}); a language model to start from must never "
                "have seen the classifier's validation or test texts. Train it on other text, e.g. "
                "rnnpipe train lm --set data.path=unlabelled.parquet"
            )
    m = lm.config.model
    adopted = dataclasses.replace(
        cfg,
        model=dataclasses.replace(
            cfg.model, cell=m.cell, hidden_size=m.hidden_size, num_layers=m.num_layers, bidirectional=False
        ),
        embed=dataclasses.replace(cfg.embed, dim=m.embed_dim),
    )
    weights = lm.model.embedding.weight.detach().cpu().numpy()
    matrix, stats = vectors_from_vocabulary(
        p.preprocessor.vocab_, lm.preprocessor.vocab_.tokens, weights, cfg.train.seed
    )
    encoder = {k: v.detach().cpu().clone() for k, v in lm.model.encoder.rnn.state_dict().items()}
    metrics = {f"pretrain_{k}": v for k, v in stats.items()}
    metrics["pretrain_lm_texts_seen"] = float(len(lm.seen))
    tags = {
        "pretrain_model": str(ref),
        "pretrain_model_run_id": ref.run_id,
        "pretrain_encoder": f"{m.cell} {m.hidden_size} x {m.num_layers}, one direction",
    }
    return adopted, Pretrained(torch.as_tensor(matrix), encoder, metrics, tags)


def _stream(encoded: EncodedTexts, reverse: bool) -> np.ndarray:
    """Documents end to end, each followed by `<pad>` (id 0) as end-of-text."""
    pieces = [np.zeros(1, np.int64)]
    for i in range(len(encoded)):
        ids = encoded.ids[encoded.offsets[i] : encoded.offsets[i + 1]]
        pieces += [ids[::-1] if reverse else ids, np.zeros(1, np.int64)]
    return np.concatenate(pieces)


def pretrain_encoder(p: ReviewsPrepared, cfg: ReviewsConfig, progress: bool | None = False) -> Pretrained:
    """Train a language model with the classifier's vocabulary, embedding and encoder shape
    on `pretraining_texts` (two for a bidirectional encoder: forward and on reversed text),
    with the shared fit loop, and return its weights for `ReviewsPipeline.from_prepared`."""
    import time

    from rnnpipe.pipelines.lm.model import LanguageModel
    from rnnpipe.pipelines.lm.prepare import StreamBatches, lm_loss
    from rnnpipe.training import fit

    m, t = cfg.model, cfg.pretrain
    learn, hold = pretraining_texts(p, cfg)
    enc_learn, enc_hold = p.preprocessor.encode(learn), p.preprocessor.encode(hold)
    dim = int(p.embedding.shape[1]) if p.embedding is not None else cfg.embed.dim
    lm_train = dataclasses.replace(
        cfg.train,
        epochs=t.epochs,
        batch_size=t.batch_size,
        lr=t.lr,
        patience=2,
        clip_grad_norm=0.25,
        lr_schedule="cosine",
    )
    metrics = {
        "pretrain_texts": float(len(learn)),
        "pretrain_tokens": float(enc_learn.token_count()),
        "pretrain_holdout_texts": float(len(hold)),
    }
    t0 = time.perf_counter()
    embedding, encoder = None, {}
    for direction in ["forward", "backward"] if m.bidirectional else ["forward"]:
        reverse = direction == "backward"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.train.seed + reverse)
            lm = LanguageModel(
                len(p.preprocessor.vocab_), dim, m.cell, m.hidden_size, m.num_layers, t.dropout, tie_weights=True
            )
        if p.embedding is not None:
            with torch.no_grad():
                lm.embedding.weight.copy_(torch.as_tensor(p.embedding))
            lm.embedding.weight.requires_grad_(not cfg.embed.freeze)  # fixed vectors stay fixed here too
        train = StreamBatches(_stream(enc_learn, reverse), t.batch_size, t.bptt)
        val = StreamBatches(_stream(enc_hold, reverse), min(t.batch_size, 8), t.bptt)
        result = fit(lm, train, val, lm_train, loss_fn=lm_loss, progress=progress)
        metrics[f"pretrain_{direction}_val_perplexity"] = float(np.exp(result.best_val_loss))
        metrics[f"pretrain_{direction}_epochs"] = float(len(result.history))
        metrics["pretrain_tokens_per_s"] = result.samples_per_s * t.bptt
        state = lm.encoder.rnn.state_dict()
        encoder.update({(f"{k}_reverse" if reverse else k): v.detach().cpu().clone() for k, v in state.items()})
        if embedding is None:
            embedding = lm.embedding.weight.detach().cpu().clone()
    metrics["pretrain_seconds"] = time.perf_counter() - t0
    return Pretrained(embedding, encoder, metrics)
