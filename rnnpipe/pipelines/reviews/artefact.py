"""Review sentiment: raw text in, label and class probabilities out.

The shared parts do the work (ingestion with row-level errors, the recurrent encoder, the fit
loop, the registry); this module holds what is specific to text: the stratified split, the
fitted `TextPreprocessor` (tokenizer + training vocabulary), the `ReviewsPipeline` artefact,
and the evaluation against TF-IDF + logistic regression and the majority class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rnnpipe import artefact
from rnnpipe.config import from_dict, to_dict
from rnnpipe.errors import DataError
from rnnpipe.features.windows import INFERENCE_BATCH, INFERENCE_TOKENS
from rnnpipe.pipelines.reviews.baselines import (
    vectorizer_from_dict,
    vectorizer_to_dict,
)
from rnnpipe.pipelines.reviews.config import ReviewsConfig
from rnnpipe.pipelines.reviews.data import TEXT_COLUMN
from rnnpipe.pipelines.reviews.metrics import decide
from rnnpipe.pipelines.reviews.model import TextClassifier
from rnnpipe.pipelines.reviews.prepare import ReviewsPrepared, TextPreprocessor
from rnnpipe.pipelines.reviews.pretrain import Pretrained
from rnnpipe.text import EncodedTexts, TextBatches, check_text
from rnnpipe.training import predict_batches


class ReviewsPipeline:
    """Tokenizer + vocabulary + text classifier + the decision rule chosen on validation."""

    KIND = "reviews"

    def __init__(
        self,
        config: ReviewsConfig,
        preprocessor: TextPreprocessor,
        classes: list[str],
        model: TextClassifier | None = None,
        threshold: float | None = None,
        embedding: np.ndarray | None = None,
        embed_dim: int | None = None,
        ngram_vectorizer=None,
        baseline: str = "",
    ):
        self.config, self.preprocessor, self.classes = config, preprocessor, list(classes)
        self.threshold = threshold
        self.baseline = baseline  # "tfidf": the baseline's regression alone, no recurrent part
        self.ngram_vectorizer = ngram_vectorizer  # the wide part's TF-IDF features (model.highway=linear)
        self.embed_dim = int(embedding.shape[1]) if embedding is not None else (embed_dim or config.embed.dim)
        if model is None:
            m, e = config.model, config.embed
            n_features = len(ngram_vectorizer.vocabulary_) if ngram_vectorizer is not None else 0
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.train.seed)
                model = TextClassifier(
                    len(preprocessor.vocab_),
                    self.embed_dim,
                    len(self.classes),
                    embed_dropout=e.dropout,
                    pretrained=None if embedding is None else torch.as_tensor(embedding),
                    freeze=e.freeze and embedding is not None,
                    ngram_features=n_features,
                    recurrent=not baseline,
                    **m.encoder(),
                )
        self.model = model

    @classmethod
    def from_prepared(
        cls, config: ReviewsConfig, p: ReviewsPrepared, pretrained: Pretrained | None = None
    ) -> ReviewsPipeline:
        """The untrained pipeline for prepared data: the wide part (if any) gets the TF-IDF
        baseline's regression as its start, and the embedding and encoder the pretrained
        language model's weights (if any)."""
        wide = config.model.highway == "linear"
        pipe = cls(
            config,
            p.preprocessor,
            p.classes,
            embedding=p.embedding,
            ngram_vectorizer=p.tfidf.vectorizer if wide else None,
        )
        if wide:
            pipe.model.linear_part.set_initial(*p.tfidf.logit_weights(len(p.classes)))
        if pretrained is not None:
            pretrained.load_into(pipe.model)
            pipe.model.pretrained_lr_mult = config.pretrain.lr_mult
        return pipe

    @classmethod
    def tfidf_baseline(cls, config: ReviewsConfig, p: ReviewsPrepared) -> ReviewsPipeline:
        """The run's TF-IDF + logistic regression baseline as a pipeline of its own: the same
        raw-text input, checks, notes and output columns as the recurrent model, and the
        baseline's own threshold (chosen on validation). Registered beside a recurrent model
        that loses to it, so that there is always a model to serve."""
        pipe = cls(
            config,
            p.preprocessor,
            p.classes,
            threshold=p.tfidf_threshold,
            embed_dim=8,
            ngram_vectorizer=p.tfidf.vectorizer,
            baseline="tfidf",
        )
        pipe.model.linear_part.set_initial(*p.tfidf.logit_weights(len(p.classes)))
        pipe.model.linear_part.warm_start()
        pipe.model.eval()
        return pipe

    def ngram_features(self, texts: list[str]):
        return self.ngram_vectorizer.transform(texts) if self.ngram_vectorizer is not None else None

    def predict_proba(self, encoded: EncodedTexts, ngrams=None, batch_size: int = INFERENCE_BATCH) -> np.ndarray:
        """(N, classes) probabilities, in the order of `encoded` (`ngrams`: the texts' n-gram
        features, for a model with the wide part); batches of at most `INFERENCE_TOKENS`
        padded tokens."""
        device = next(self.model.parameters()).device
        data = TextBatches(encoded, bucket=True, features=ngrams, max_tokens=INFERENCE_TOKENS)
        logits = predict_batches(self.model, data.to(device), batch_size)
        out = np.empty_like(logits)
        out[data.order()] = logits
        out = np.exp(out - out.max(axis=1, keepdims=True))
        return out / out.sum(axis=1, keepdims=True)

    def column_choices(self) -> list[list[str]]:
        """The input column it needs, under either of its accepted names."""
        return [list(dict.fromkeys([TEXT_COLUMN, self.config.data.text_col]))]

    def batch_spec(self, available: list[str]) -> tuple[list[str], str | None]:
        """(the text column it reads, None: it answers row by row) for batch jobs."""
        return [TEXT_COLUMN if TEXT_COLUMN in available else self.config.data.text_col], None

    def predict(self, reviews: pd.DataFrame) -> pd.DataFrame:
        """A `text` column (or the training text column) of raw reviews -> per review: the
        label, the probability of each class, for two classes the decision threshold (the
        label is the second class when its probability reaches `threshold_<class>`), the token
        count, the share of tokens outside the vocabulary, and a note when the answer deserves
        one (empty or non-text input: no label; no known word; cut to text.max_len tokens)."""
        col = TEXT_COLUMN if TEXT_COLUMN in reviews.columns else self.config.data.text_col
        if col not in reviews.columns:
            raise DataError(
                f"input: column {TEXT_COLUMN!r} not found (columns: {', '.join(map(str, reviews.columns))})"
            )
        texts, notes = [], []
        for v in reviews[col].tolist():
            problem, text = check_text(None if isinstance(v, float) and np.isnan(v) else v)
            texts.append(text)
            notes.append("" if problem is None else f"{problem.partition(':')[2]}: nothing to classify")
        ok = np.array([n == "" for n in notes], dtype=bool)
        proba = np.full((len(texts), len(self.classes)), np.nan)
        n_tokens = np.zeros(len(texts), np.int64)
        unknown = np.full(len(texts), np.nan)
        if ok.any():
            kept_texts = [t for t, k in zip(texts, ok) if k]
            enc = self.preprocessor.encode(kept_texts)
            proba[ok] = self.predict_proba(enc, self.ngram_features(kept_texts))
            n_tokens[ok] = enc.n_tokens
            kept = enc.lengths
            unknown[ok] = np.where(enc.n_tokens > 0, enc.n_unknown / np.maximum(kept, 1), 1.0)
            max_len = self.config.text.max_len
            for j, i in enumerate(np.flatnonzero(ok)):
                extra = []
                if enc.n_tokens[j] == 0:
                    extra.append("no words found: the answer is a guess")
                elif enc.n_unknown[j] == kept[j]:
                    extra.append("no word is in the vocabulary: the answer is a guess")
                if enc.n_tokens[j] > max_len:
                    which = "first" if self.config.text.truncate == "head" else "last"
                    extra.append(f"read only the {which} {max_len} of {enc.n_tokens[j]} tokens")
                notes[i] = "; ".join(extra)
        codes = decide(np.nan_to_num(proba), self.threshold)
        labels = [self.classes[c] if k else None for c, k in zip(codes, ok)]
        out = {"label": labels}
        for i, c in enumerate(self.classes):
            out[f"prob_{c}"] = proba[:, i]
        if len(self.classes) == 2:  # the label is the second class when its probability reaches this
            out[f"threshold_{self.classes[1]}"] = 0.5 if self.threshold is None else float(self.threshold)
        out.update({"n_tokens": n_tokens, "unknown_share": unknown, "note": notes})
        return pd.DataFrame(out, index=reviews.index).reset_index(drop=True)

    def label_tally(self):
        """What scores a batch job's labelled rows (the training label column kept as a key)."""
        from rnnpipe.realised import LabelTally

        return LabelTally(self.config.data.label_col, [str(c) for c in self.classes])

    def drift_values(self, inputs: pd.DataFrame, outputs: pd.DataFrame) -> tuple[dict, dict]:
        """A batch chunk's (features, predictions) for its drift report (`rnnpipe.drift`): each
        text's token count and share of words outside the vocabulary, and the predicted class."""
        features = {"tokens": outputs["n_tokens"].to_numpy(np.float64), "unknown_share": outputs["unknown_share"]}
        return features, {"label": outputs["label"]}

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        (p / "config.json").write_text(json.dumps(to_dict(self.config), indent=2))
        (p / "preprocessor.json").write_text(
            json.dumps(
                {
                    **self.preprocessor.to_dict(),
                    "classes": self.classes,
                    "threshold": self.threshold,
                    "embed_dim": self.embed_dim,
                    "baseline": self.baseline,
                    "ngram_vectorizer": (
                        vectorizer_to_dict(self.ngram_vectorizer) if self.ngram_vectorizer is not None else None
                    ),
                }
            )
        )
        torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, p / "weights.pt")
        artefact.mark(p, self.KIND)
        return p

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> ReviewsPipeline:
        p = Path(path)
        artefact.check(p, cls.KIND)
        cfg = from_dict(ReviewsConfig, json.loads((p / "config.json").read_text()))
        state = json.loads((p / "preprocessor.json").read_text())
        vectorizer = state.get("ngram_vectorizer")
        pipe = cls(
            cfg,
            TextPreprocessor.from_dict(cfg, state),
            state["classes"],
            threshold=state["threshold"],
            embed_dim=state["embed_dim"],
            ngram_vectorizer=vectorizer_from_dict(vectorizer) if vectorizer else None,
            baseline=state.get("baseline", ""),
        )
        pipe.model.load_state_dict(torch.load(p / "weights.pt", map_location=device, weights_only=True))
        pipe.model.to(device).eval()
        return pipe


def text_loss(cfg: ReviewsConfig, prepared: ReviewsPrepared):
    """Cross-entropy; with classify.class_weight=balanced each class is weighted by
    n / (classes x its count) in the training part."""
    weight = None
    if cfg.classify.class_weight == "balanced":
        counts = np.bincount(prepared.y["train"], minlength=len(prepared.classes)).astype(np.float64)
        weight = torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = None if weight is None else weight.to(logits.device)
        return torch.nn.functional.cross_entropy(logits, target, weight=w)

    return loss


def reviews_example(p: ReviewsPrepared, n: int = 3) -> pd.DataFrame:
    """Raw reviews as a user sends them."""
    return pd.DataFrame({TEXT_COLUMN: p.texts["test"][:n]})


def gate_spec(cfg: ReviewsConfig) -> dict[str, Any]:
    """The reviews gate: `register.metric` (higher is better) against TF-IDF and the majority."""
    r = cfg.register
    return dict(
        metric=r.metric,
        baselines={"tfidf": f"tfidf_{r.metric}", "majority": f"majority_{r.metric}"},
        margin=r.baseline_margin,
        greater_is_better=True,
    )
