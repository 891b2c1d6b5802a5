"""Review sentiment: raw text in, label and class probabilities out.

The shared parts do the work (ingestion with row-level errors, the recurrent encoder, the fit
loop, the registry); this module holds what is specific to text: the stratified split, the
fitted `TextPreprocessor` (tokenizer + training vocabulary), the `ReviewsPipeline` artefact,
and the evaluation against TF-IDF + logistic regression and the majority class.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rnnpipe import settings
from rnnpipe.baselines import MajorityClass, TfidfLogisticRegression
from rnnpipe.config import ReviewsConfig, from_dict, to_dict
from rnnpipe.errors import DataError
from rnnpipe.evaluation import decide, text_classification_metrics, tune_binary_threshold
from rnnpipe.features.splits import stratified_split
from rnnpipe.models import TextClassifier
from rnnpipe.text import (EncodedTexts, TextBatches, TextTable, Tokenizer, Vocabulary, check_text,
                          encode_texts, load_vectors, read_texts)
from rnnpipe.training import predict_batches

PARTS = ("train", "val", "test")
TEXT_COLUMN = "text"  # what the served model reads


def load_reviews(cfg: ReviewsConfig) -> dict[str, TextTable]:
    """The training file ("data") and, when data.test_path is set, the test file ("test").
    Labels are those of data.labels, else the ones found in the training file."""
    d = cfg.data
    kw = dict(id_col=d.id_col, bad_rows=d.bad_rows, fmt=d.format)
    tables = {"data": read_texts(settings.resolve_data_path(d.path), d.text_col, d.label_col,
                                 labels=d.labels or None, **kw)}
    if d.test_path:
        known = d.labels or sorted(set(tables["data"].labels))
        tables["test"] = read_texts(settings.resolve_data_path(d.test_path), d.text_col, d.label_col,
                                    labels=known, **kw)
    return tables


class TextPreprocessor:
    """Raw text -> token ids: the tokenizer of `cfg.text` and a vocabulary fitted on the
    training part only."""

    def __init__(self, cfg: ReviewsConfig):
        t = cfg.text
        self.cfg = cfg
        self.tokenizer = Tokenizer(t.lowercase, t.html, t.urls, t.pattern)

    def fit(self, texts: list[str]) -> "TextPreprocessor":
        t = self.cfg.text
        self.vocab_ = Vocabulary.build((self.tokenizer(x) for x in texts), t.min_freq, t.max_size)
        return self

    def encode(self, texts: list[str]) -> EncodedTexts:
        t = self.cfg.text
        return encode_texts(texts, self.tokenizer, self.vocab_, t.max_len, t.truncate)

    def to_dict(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.to_dict(), "vocab": self.vocab_.tokens}

    @classmethod
    def from_dict(cls, cfg: ReviewsConfig, d: dict[str, Any]) -> "TextPreprocessor":
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

    def batches(self, part: str) -> TextBatches:
        return TextBatches(self.encoded[part], self.y[part], bucket=self.preprocessor.cfg.text.bucketing)

    def counts(self) -> dict[str, dict[str, int]]:
        return {p: {"reviews": len(self.y[p]), "tokens": self.encoded[p].token_count(),
                    **{c: int((self.y[p] == i).sum()) for i, c in enumerate(self.classes)}}
                for p in PARTS}

    def summary(self) -> dict[str, Any]:
        v = self.preprocessor.vocab_
        return {"split": self.split_kind, "classes": self.classes, "counts": self.counts(),
                "skipped_rows": self.skipped, "vocabulary": len(v),
                "train_tokens_in_vocabulary": round(v.covered_tokens / max(v.total_tokens, 1), 4),
                **self.embedding_stats}


def prepare_reviews(tables: dict[str, TextTable], cfg: ReviewsConfig) -> ReviewsPrepared:
    """Stratified split (or the given test file), vocabulary on train, every part encoded once,
    and the pretrained vectors when embed.path is set."""
    data = tables["data"]
    classes = [str(c) for c in cfg.data.labels] or sorted(set(data.labels))
    if len(classes) < 2:
        raise DataError(f"{data.source}: column {cfg.data.label_col!r} holds one label ({classes[0]!r}); "
                        "a classifier needs at least two")
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
    encoded = {p: pre.encode(texts[p]) for p in PARTS}
    h = hashlib.sha256()
    for p in PARTS:
        for i, t_, c in zip(ids[p], texts[p], y[p]):
            h.update(f"{p}\x1f{i}\x1f{classes[c]}\x1f{t_}\x1e".encode())
    prepared = ReviewsPrepared(classes, texts, ids, y, encoded, pre, kind, h.hexdigest(), data.source, skipped)
    if cfg.embed.path:
        prepared.embedding, prepared.embedding_stats = load_vectors(
            settings.resolve_data_path(cfg.embed.path), pre.vocab_, cfg.train.seed)
    return prepared


class ReviewsPipeline:
    """Tokenizer + vocabulary + text classifier + the decision rule chosen on validation."""

    KIND = "reviews"

    def __init__(self, config: ReviewsConfig, preprocessor: TextPreprocessor, classes: list[str],
                 model: TextClassifier | None = None, threshold: float | None = None,
                 embedding: np.ndarray | None = None, embed_dim: int | None = None):
        self.config, self.preprocessor, self.classes = config, preprocessor, list(classes)
        self.threshold = threshold
        self.embed_dim = int(embedding.shape[1]) if embedding is not None else (embed_dim or config.embed.dim)
        if model is None:
            m, e = config.model, config.embed
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.train.seed)
                model = TextClassifier(
                    len(preprocessor.vocab_), self.embed_dim, len(self.classes), embed_dropout=e.dropout,
                    pretrained=None if embedding is None else torch.as_tensor(embedding),
                    freeze=e.freeze and embedding is not None, cell=m.cell, hidden_size=m.hidden_size,
                    num_layers=m.num_layers, dropout=m.dropout, bidirectional=m.bidirectional,
                    pooling=m.pooling)
        self.model = model

    def predict_proba(self, encoded: EncodedTexts, batch_size: int = 512) -> np.ndarray:
        """(N, classes) probabilities, in the order of `encoded`."""
        device = next(self.model.parameters()).device
        data = TextBatches(encoded, bucket=True)
        logits = predict_batches(self.model, data.to(device), batch_size)
        out = np.empty_like(logits)
        out[data.order()] = logits
        out = np.exp(out - out.max(axis=1, keepdims=True))
        return out / out.sum(axis=1, keepdims=True)

    def batch_spec(self, available: list[str]) -> tuple[list[str], str | None]:
        """(the text column it reads, None: it answers row by row) for batch jobs."""
        return [TEXT_COLUMN if TEXT_COLUMN in available else self.config.data.text_col], None

    def predict(self, reviews: pd.DataFrame) -> pd.DataFrame:
        """A `text` column (or the training text column) of raw reviews -> per review: the
        label, the probability of each class, the token count, the share of tokens outside
        the vocabulary, and a note when the answer deserves one (empty or non-text input: no
        label; no known word; cut to text.max_len tokens)."""
        col = TEXT_COLUMN if TEXT_COLUMN in reviews.columns else self.config.data.text_col
        if col not in reviews.columns:
            raise DataError(f"input: column {TEXT_COLUMN!r} not found (columns: "
                            f"{', '.join(map(str, reviews.columns))})")
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
            enc = self.preprocessor.encode([t for t, k in zip(texts, ok) if k])
            proba[ok] = self.predict_proba(enc)
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
        out.update({"n_tokens": n_tokens, "unknown_share": unknown, "note": notes})
        return pd.DataFrame(out, index=reviews.index).reset_index(drop=True)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        (p / "config.json").write_text(json.dumps(to_dict(self.config), indent=2))
        (p / "preprocessor.json").write_text(json.dumps(
            {**self.preprocessor.to_dict(), "classes": self.classes, "threshold": self.threshold,
             "embed_dim": self.embed_dim}))
        torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, p / "weights.pt")
        return p

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "ReviewsPipeline":
        p = Path(path)
        cfg = from_dict(ReviewsConfig, json.loads((p / "config.json").read_text()))
        state = json.loads((p / "preprocessor.json").read_text())
        pipe = cls(cfg, TextPreprocessor.from_dict(cfg, state), state["classes"],
                   threshold=state["threshold"], embed_dim=state["embed_dim"])
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


# --- evaluation ----------------------------------------------------------------------------

TFIDF_C_GRID = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass
class ReviewsEvaluation:
    metrics: dict[str, float]
    predictions: dict[str, np.ndarray]  # method -> test class codes
    probabilities: dict[str, np.ndarray]  # method -> test probabilities

    def comparison(self) -> list[dict[str, Any]]:
        rows = []
        for method, pre in (("model", ""), ("tfidf", "tfidf_"), ("majority", "majority_")):
            rows.append({"method": method, **{k: round(self.metrics[f"{pre}test_{k}"], 4)
                                              for k in ("accuracy", "macro_f1", "roc_auc")},
                         "val_macro_f1": round(self.metrics.get(f"{pre}val_macro_f1", float("nan")), 4)})
        return rows

    def standing(self) -> str:
        m, t = self.metrics["test_macro_f1"], self.metrics["tfidf_test_macro_f1"]
        verdict = "reaches" if m >= t else "does NOT reach"
        return (f"test macro-F1 {m:.3f} (accuracy {self.metrics['test_accuracy']:.3f}) vs TF-IDF + "
                f"logistic regression {t:.3f} ({self.metrics['tfidf_test_accuracy']:.3f}) and majority "
                f"{self.metrics['majority_test_macro_f1']:.3f}: the recurrent model {verdict} the baseline")


def evaluate_reviews(pipeline: ReviewsPipeline, p: ReviewsPrepared) -> ReviewsEvaluation:
    """The model, TF-IDF + logistic regression and the majority class on test. Everything
    chosen is chosen on validation by the same rule for each method: the binary decision
    threshold (classify.decision=tuned) and the baseline's regularisation C. The model's
    threshold is stored in `pipeline.threshold` and travels with the registered model."""
    tuned = pipeline.config.classify.decision == "tuned" and len(p.classes) == 2

    def threshold(proba_val: np.ndarray) -> float | None:
        return tune_binary_threshold(p.y["val"], proba_val[:, 1]) if tuned else None

    metrics: dict[str, float] = {}
    preds, probas = {}, {}

    def score(name: str, proba_val: np.ndarray, proba_test: np.ndarray, thr: float | None) -> None:
        pre = f"{name}_" if name else ""
        key = name or "model"
        metrics.update(text_classification_metrics(p.y["val"], proba_val, decide(proba_val, thr),
                                                   p.classes, f"{pre}val"))
        preds[key] = decide(proba_test, thr)
        probas[key] = proba_test
        metrics.update(text_classification_metrics(p.y["test"], proba_test, preds[key], p.classes, f"{pre}test"))
        if thr is not None:
            metrics[f"{pre}threshold"] = thr

    pv, pt = pipeline.predict_proba(p.encoded["val"]), pipeline.predict_proba(p.encoded["test"])
    pipeline.threshold = threshold(pv)
    score("", pv, pt, pipeline.threshold)

    best = None
    for C in TFIDF_C_GRID:
        b = TfidfLogisticRegression(C, lowercase=pipeline.config.text.lowercase).fit(p.texts["train"], p.y["train"])
        bv = b.predict_proba(p.texts["val"])
        thr = threshold(bv)
        f1 = text_classification_metrics(p.y["val"], bv, decide(bv, thr), p.classes, "v")["v_macro_f1"]
        if best is None or f1 > best[0]:
            best = (f1, C, b, bv, thr)
    _, C, b, bv, thr = best
    score("tfidf", bv, b.predict_proba(p.texts["test"]), thr)
    metrics["tfidf_C"] = C

    maj = MajorityClass().fit(p.texts["train"], p.y["train"])
    score("majority", maj.predict_proba(p.texts["val"]), maj.predict_proba(p.texts["test"]), None)
    return ReviewsEvaluation(metrics, preds, probas)


def confidently_wrong(p: ReviewsPrepared, ev: ReviewsEvaluation, n: int = 25, width: int = 400) -> pd.DataFrame:
    """The test reviews the model got wrong with the most confidence in its answer."""
    pred, proba = ev.predictions["model"], ev.probabilities["model"]
    wrong = np.flatnonzero(pred != p.y["test"])
    conf = proba[wrong, pred[wrong]]
    top = wrong[np.argsort(-conf, kind="stable")[:n]]
    return pd.DataFrame({
        "id": [p.ids["test"][i] for i in top],
        "actual": [p.classes[p.y["test"][i]] for i in top],
        "predicted": [p.classes[pred[i]] for i in top],
        "confidence": np.round(proba[top, pred[top]], 4),
        "tfidf_predicted": [p.classes[ev.predictions["tfidf"][i]] for i in top],
        "text": [(t[:width] + "...") if len(t) > width else t for t in (p.texts["test"][i] for i in top)],
    })


def reviews_example(p: ReviewsPrepared, n: int = 3) -> pd.DataFrame:
    """Raw reviews as a user sends them."""
    return pd.DataFrame({TEXT_COLUMN: p.texts["test"][:n]})


def gate_spec(cfg: ReviewsConfig) -> dict[str, Any]:
    """The reviews gate: `register.metric` (higher is better) against TF-IDF and the majority."""
    r = cfg.register
    return dict(metric=r.metric, baselines={"tfidf": f"tfidf_{r.metric}", "majority": f"majority_{r.metric}"},
                margin=r.baseline_margin, greater_is_better=True)


def train_and_evaluate(cfg: ReviewsConfig):
    """One sweep trial: the reviews flow's steps with no orchestration around them."""
    from rnnpipe.training import Trained, fit

    p = prepare_reviews(load_reviews(cfg), cfg)
    pipe = ReviewsPipeline(cfg, p.preprocessor, p.classes, embedding=p.embedding)
    result = fit(pipe.model, p.batches("train"), p.batches("val"), cfg.train, loss_fn=text_loss(cfg, p),
                 progress=False)
    return Trained(pipe, result, evaluate_reviews(pipe, p).metrics, reviews_example(p), p.fingerprint)
