"""Reviews read, split, tokenised and encoded once; the TF-IDF baseline fitted on train."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rnnpipe import settings
from rnnpipe.errors import DataError
from rnnpipe.features.splits import stratified_split
from rnnpipe.features.windows import INFERENCE_TOKENS
from rnnpipe.io import preloadable
from rnnpipe.pipelines.reviews.baselines import (
    TfidfLogisticRegression,
)
from rnnpipe.pipelines.reviews.config import ReviewsConfig
from rnnpipe.pipelines.reviews.metrics import decide, text_classification_metrics, tune_binary_threshold
from rnnpipe.text import EncodedTexts, TextBatches, TextTable, Tokenizer, Vocabulary, encode_texts, read_texts
from rnnpipe.vectors import load_vectors

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
            max_tokens=INFERENCE_TOKENS,  # evaluation's batches (training's are shuffled, cfg.batch_size)
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
