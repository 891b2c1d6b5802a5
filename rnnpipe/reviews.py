"""Review sentiment: raw text in, label and class probabilities out.

The shared parts do the work (ingestion with row-level errors, the recurrent encoder, the fit
loop, the registry); this module holds what is specific to text: the stratified split, the
fitted `TextPreprocessor` (tokenizer + training vocabulary), the `ReviewsPipeline` artefact,
and the evaluation against TF-IDF + logistic regression and the majority class.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rnnpipe import artefact, settings
from rnnpipe.baselines import MajorityClass, TfidfLogisticRegression, vectorizer_from_dict, vectorizer_to_dict
from rnnpipe.config import from_dict, to_dict
from rnnpipe.errors import DataError, ModelError
from rnnpipe.evaluation import decide, paired_bootstrap_macro_f1, text_classification_metrics, tune_binary_threshold
from rnnpipe.features.splits import stratified_split
from rnnpipe.ingest import TEXT_COLUMN
from rnnpipe.io import preloadable
from rnnpipe.models import TextClassifier
from rnnpipe.reviews_config import ReviewsConfig
from rnnpipe.text import (
    EncodedTexts,
    TextBatches,
    TextTable,
    Tokenizer,
    Vocabulary,
    check_text,
    encode_texts,
    load_vectors,
    read_texts,
    text_digest,
    vectors_from_vocabulary,
)
from rnnpipe.training import predict_batches

PARTS = ("train", "val", "test")


@preloadable
def load_reviews(cfg: ReviewsConfig) -> dict[str, TextTable]:
    """The training file ("data") and, when data.test_path is set, the test file ("test").
    Labels are those of data.labels, else the ones found in the training file."""
    d = cfg.data
    kw = dict(id_col=d.id_col, bad_rows=d.bad_rows, fmt=d.format)
    tables = {
        "data": read_texts(settings.resolve_data_path(d.path), d.text_col, d.label_col, labels=d.labels or None, **kw)
    }
    if not d.labels:
        check_classes(tables["data"], d.label_col)
    if d.test_path:
        known = d.labels or sorted(set(tables["data"].labels))
        tables["test"] = read_texts(
            settings.resolve_data_path(d.test_path), d.text_col, d.label_col, labels=known, **kw
        )
    return tables


# a label found in the training file on fewer rows than this is refused: too few to learn,
# to stratify into val and test, or to judge (and most often a typo)
MIN_CLASS_ROWS = 5


def check_classes(table: TextTable, label_col: str) -> None:
    """Each label of a training file that defines the classes (no data.labels) is a class."""
    counts = Counter(table.labels)
    rare = sorted((n, label) for label, n in counts.items() if n < MIN_CLASS_ROWS)
    if rare:
        n, label = rare[0]
        raise DataError(
            f"{table.origin.describe(table.labels.index(label))}: column {label_col!r}: label "
            f"{label!r} is on {n} of {len(table)} rows, too few to learn or judge a class "
            f"(a typo?); fix it, or set data.labels to the classes you mean and data.bad_rows=skip"
        )


class TextPreprocessor:
    """Raw text -> token ids: the tokenizer of `cfg.text` and a vocabulary fitted on the
    training part only."""

    def __init__(self, cfg: ReviewsConfig):
        t = cfg.text
        self.cfg = cfg
        self.tokenizer = Tokenizer(t.lowercase, t.html, t.urls, t.pattern)

    def fit(self, texts: list[str]) -> TextPreprocessor:
        t = self.cfg.text
        self.vocab_ = Vocabulary.build((self.tokenizer(x) for x in texts), t.min_freq, t.max_size)
        return self

    def encode(self, texts: list[str]) -> EncodedTexts:
        t = self.cfg.text
        return encode_texts(texts, self.tokenizer, self.vocab_, t.max_len, t.truncate)

    def to_dict(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.to_dict(), "vocab": self.vocab_.tokens}

    @classmethod
    def from_dict(cls, cfg: ReviewsConfig, d: dict[str, Any]) -> TextPreprocessor:
        p = cls(cfg)
        p.vocab_ = Vocabulary(d["vocab"][2:])
        return p


@dataclass
class ReviewsPrepared:
    classes: list[str]
    texts: dict[str, list[str]]
    ids: dict[str, list[str]]
    y: dict[str, np.ndarray]  # class codes
    encoded: dict[str, EncodedTexts]
    preprocessor: TextPreprocessor
    split_kind: str
    fingerprint: str
    source: str
    skipped: dict[str, int] = field(default_factory=dict)
    embedding: np.ndarray | None = None
    embedding_stats: dict[str, float] = field(default_factory=dict)
    embedding_tags: dict[str, str] = field(default_factory=dict)  # the vector file and its sha256
    tfidf: TfidfLogisticRegression | None = None  # the baseline, fitted on train, C chosen on val
    tfidf_threshold: float | None = None
    ngrams: dict[str, Any] | None = None  # part -> its TF-IDF features, for the wide part

    def batches(self, part: str) -> TextBatches:
        return TextBatches(
            self.encoded[part],
            self.y[part],
            bucket=self.preprocessor.cfg.text.bucketing,
            features=self.ngrams[part] if self.ngrams else None,
        )

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            p: {
                "reviews": len(self.y[p]),
                "tokens": self.encoded[p].token_count(),
                **{c: int((self.y[p] == i).sum()) for i, c in enumerate(self.classes)},
            }
            for p in PARTS
        }

    def summary(self) -> dict[str, Any]:
        v = self.preprocessor.vocab_
        return {
            "split": self.split_kind,
            "classes": self.classes,
            "counts": self.counts(),
            "skipped_rows": self.skipped,
            "vocabulary": len(v),
            "train_tokens_in_vocabulary": round(v.covered_tokens / max(v.total_tokens, 1), 4),
            **self.embedding_stats,
        }


def prepare_reviews(tables: dict[str, TextTable], cfg: ReviewsConfig) -> ReviewsPrepared:
    """Stratified split (or the given test file), vocabulary on train, every part encoded once,
    and the pretrained vectors when embed.path is set."""
    data = tables["data"]
    classes = [str(c) for c in cfg.data.labels] or sorted(set(data.labels))
    if len(classes) < 2:
        raise DataError(
            f"{data.source}: column {cfg.data.label_col!r} holds one label ({classes[0]!r}); "
            "a classifier needs at least two"
        )
    code = {c: i for i, c in enumerate(classes)}
    y_all = np.array([code[c] for c in data.labels], dtype=np.int64)
    s = cfg.split
    held = {"val": s.val} if "test" in tables else {"val": s.val, "test": s.test}
    parts = stratified_split(y_all, held, s.seed)
    texts = {p: [data.texts[i] for i in parts[p]] for p in parts}
    ids = {p: [data.ids[i] for i in parts[p]] for p in parts}
    y = {p: y_all[parts[p]] for p in parts}
    skipped = dict(data.skipped)
    if "test" in tables:
        t = tables["test"]
        texts["test"], ids["test"] = t.texts, t.ids
        y["test"] = np.array([code[c] for c in t.labels], dtype=np.int64)
        for k, v in t.skipped.items():
            skipped[f"test_{k}"] = v
        kind = f"stratified train/val of {Path(data.source).name}; test = {Path(t.source).name}"
    else:
        kind = f"stratified train/val/test of {Path(data.source).name}"
    for p in PARTS:
        if len(y[p]) == 0:
            raise DataError(f"{data.source}: the {p} part is empty; use more data or larger split fractions")
    missing = [classes[i] for i in range(len(classes)) if not (y["train"] == i).any()]
    if missing:
        raise DataError(f"{data.source}: no training review has label {missing[0]!r}")
    pre = TextPreprocessor(cfg).fit(texts["train"])
    embedding, embedding_stats, embedding_tags = None, {}, {}
    if cfg.embed.path:  # with embed.extend_vocab the file's words join the vocabulary (none from val/test)
        path = settings.resolve_data_path(cfg.embed.path)
        pre.vocab_, embedding, embedding_stats = load_vectors(
            path, pre.vocab_, cfg.train.seed, cfg.embed.extend_vocab, cfg.text.lowercase
        )
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        embedding_tags = {"embedding_file": str(path), "embedding_sha256": digest}
    encoded = {p: pre.encode(texts[p]) for p in PARTS}
    h = hashlib.sha256()
    for p in PARTS:
        for i, t_, c in zip(ids[p], texts[p], y[p]):
            h.update(f"{p}\x1f{i}\x1f{classes[c]}\x1f{t_}\x1e".encode())
    prepared = ReviewsPrepared(
        classes,
        texts,
        ids,
        y,
        encoded,
        pre,
        kind,
        h.hexdigest(),
        data.source,
        skipped,
        embedding,
        embedding_stats,
        embedding_tags,
    )
    prepared.tfidf, prepared.tfidf_threshold = fit_tfidf_baseline(prepared, cfg)
    if cfg.model.highway == "linear":
        prepared.ngrams = {part: prepared.tfidf.features(texts[part]) for part in PARTS}
    return prepared


TFIDF_C_GRID = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def _tuned(cfg: ReviewsConfig, classes: list[str]) -> bool:
    return cfg.classify.decision == "tuned" and len(classes) == 2


def fit_tfidf_baseline(p: ReviewsPrepared, cfg: ReviewsConfig) -> tuple[TfidfLogisticRegression, float | None]:
    """TF-IDF + logistic regression on the training texts, its `C` and (binary) decision
    threshold chosen on validation macro-F1: the baseline, and the start of the wide part."""
    base = TfidfLogisticRegression(lowercase=cfg.text.lowercase, seed=cfg.train.seed)
    X = base.vectorizer.fit_transform(p.texts["train"])
    Xv = base.features(p.texts["val"])
    best = None
    for C in TFIDF_C_GRID:
        base.C = C
        base.fit_features(X, p.y["train"])
        bv = base.model.predict_proba(Xv)
        thr = tune_binary_threshold(p.y["val"], bv[:, 1]) if _tuned(cfg, p.classes) else None
        f1 = text_classification_metrics(p.y["val"], bv, decide(bv, thr), p.classes, "v")["v_macro_f1"]
        if best is None or f1 > best[0]:
            best = (f1, C, thr)
    _, base.C, thr = best
    base.fit_features(X, p.y["train"])
    return base, thr


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

    def predict_proba(self, encoded: EncodedTexts, ngrams=None, batch_size: int = 512) -> np.ndarray:
        """(N, classes) probabilities, in the order of `encoded` (`ngrams`: the texts' n-gram
        features, for a model with the wide part)."""
        device = next(self.model.parameters()).device
        data = TextBatches(encoded, bucket=True, features=ngrams)
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


# --- pretraining as a language model --------------------------------------------------------


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

    from rnnpipe.lm import StreamBatches, lm_loss
    from rnnpipe.models import LanguageModel
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


# --- evaluation ----------------------------------------------------------------------------


@dataclass
class ReviewsEvaluation:
    metrics: dict[str, float]
    predictions: dict[str, np.ndarray]  # method -> test class codes
    probabilities: dict[str, np.ndarray]  # method -> test probabilities

    def comparison(self) -> list[dict[str, Any]]:
        rows = []
        for method, pre in (("model", ""), ("tfidf", "tfidf_"), ("majority", "majority_")):
            rows.append(
                {
                    "method": method,
                    **{k: round(self.metrics[f"{pre}test_{k}"], 4) for k in ("accuracy", "macro_f1", "roc_auc")},
                    "val_macro_f1": round(self.metrics.get(f"{pre}val_macro_f1", float("nan")), 4),
                }
            )
        return rows

    def standing(self) -> str:
        m, t = self.metrics["test_macro_f1"], self.metrics["tfidf_test_macro_f1"]
        verdict = "reaches" if m >= t else "does NOT reach"
        lo, hi = self.metrics["test_macro_f1_minus_tfidf_ci_low"], self.metrics["test_macro_f1_minus_tfidf_ci_high"]
        noise = (
            "within the noise of this test set"
            if lo <= 0 <= hi
            else "beyond the noise of this test set"
            if lo > 0
            else "a real shortfall on this test set"
        )
        return (
            f"test macro-F1 {m:.3f} (accuracy {self.metrics['test_accuracy']:.3f}) vs TF-IDF + "
            f"logistic regression {t:.3f} ({self.metrics['tfidf_test_accuracy']:.3f}) and majority "
            f"{self.metrics['majority_test_macro_f1']:.3f}: the recurrent model {verdict} the baseline; "
            f"the difference {m - t:+.3f} (95% paired-bootstrap interval {lo:+.3f} to {hi:+.3f}) is {noise}"
        )


def evaluate_reviews(pipeline: ReviewsPipeline, p: ReviewsPrepared) -> ReviewsEvaluation:
    """The model, TF-IDF + logistic regression and the majority class on test. Everything
    chosen is chosen on validation by the same rule for each method: the binary decision
    threshold (classify.decision=tuned) and the baseline's regularisation C. The model's
    threshold is stored in `pipeline.threshold` and travels with the registered model. The
    baseline was fitted when the data was prepared (`fit_tfidf_baseline`)."""
    tuned = _tuned(pipeline.config, p.classes)

    def threshold(proba_val: np.ndarray) -> float | None:
        return tune_binary_threshold(p.y["val"], proba_val[:, 1]) if tuned else None

    metrics: dict[str, float] = {}
    preds, probas = {}, {}

    def score(name: str, proba_val: np.ndarray, proba_test: np.ndarray, thr: float | None) -> None:
        pre = f"{name}_" if name else ""
        key = name or "model"
        metrics.update(
            text_classification_metrics(p.y["val"], proba_val, decide(proba_val, thr), p.classes, f"{pre}val")
        )
        preds[key] = decide(proba_test, thr)
        probas[key] = proba_test
        metrics.update(text_classification_metrics(p.y["test"], proba_test, preds[key], p.classes, f"{pre}test"))
        if thr is not None:
            metrics[f"{pre}threshold"] = thr

    ngrams = p.ngrams or {}
    pv = pipeline.predict_proba(p.encoded["val"], ngrams.get("val"))
    pt = pipeline.predict_proba(p.encoded["test"], ngrams.get("test"))
    pipeline.threshold = threshold(pv)
    score("", pv, pt, pipeline.threshold)

    b = p.tfidf
    score("tfidf", b.predict_proba(p.texts["val"]), b.predict_proba(p.texts["test"]), p.tfidf_threshold)
    metrics["tfidf_C"] = b.C

    maj = MajorityClass().fit(p.texts["train"], p.y["train"])
    score("majority", maj.predict_proba(p.texts["val"]), maj.predict_proba(p.texts["test"]), None)
    # is the difference from the baseline more than this test set's noise? (the gate still
    # compares the point figures; this says how much one run's verdict can be trusted)
    boot = paired_bootstrap_macro_f1(
        p.y["test"], preds["model"], preds["tfidf"], len(p.classes), seed=pipeline.config.train.seed
    )
    metrics.update(
        {
            "test_macro_f1_minus_tfidf": boot["diff"],
            "test_macro_f1_minus_tfidf_ci_low": boot["ci_low"],
            "test_macro_f1_minus_tfidf_ci_high": boot["ci_high"],
            "test_macro_f1_p_not_better_than_tfidf": boot["p_not_better"],
        }
    )
    return ReviewsEvaluation(metrics, preds, probas)


def confidently_wrong(p: ReviewsPrepared, ev: ReviewsEvaluation, n: int = 25, width: int = 400) -> pd.DataFrame:
    """The test reviews the model got wrong with the most confidence in its answer."""
    pred, proba = ev.predictions["model"], ev.probabilities["model"]
    wrong = np.flatnonzero(pred != p.y["test"])
    conf = proba[wrong, pred[wrong]]
    top = wrong[np.argsort(-conf, kind="stable")[:n]]
    return pd.DataFrame(
        {
            "id": [p.ids["test"][i] for i in top],
            "actual": [p.classes[p.y["test"][i]] for i in top],
            "predicted": [p.classes[pred[i]] for i in top],
            "confidence": np.round(proba[top, pred[top]], 4),
            "tfidf_predicted": [p.classes[ev.predictions["tfidf"][i]] for i in top],
            "text": [(t[:width] + "...") if len(t) > width else t for t in (p.texts["test"][i] for i in top)],
        }
    )


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
