"""Texts made into token streams: the vocabulary fitted on train, truncated-BPTT batches."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnpipe import settings
from rnnpipe.errors import DataError
from rnnpipe.features.splits import stratified_split
from rnnpipe.io import preloadable
from rnnpipe.pipelines.lm.config import (
    LMConfig,
)
from rnnpipe.text import UNK, Tokenizer, Vocabulary, read_texts, text_digests

EOS = "<eos>"


class LMPreprocessor:
    """Raw text -> tokens (words or characters) -> ids of a training-only vocabulary whose
    id 2 is the end-of-text token."""

    def __init__(self, cfg: LMConfig):
        t = cfg.text
        self.level = t.level
        pattern = t.pattern if t.level == "word" else r"[\s\S]"
        self.tokenizer = Tokenizer(t.lowercase, t.html, t.urls, pattern)
        self.cfg = cfg

    def tokens(self, text: str) -> list[str]:
        out = self.tokenizer(text)
        if self.level == "char":  # runs of white space are one space
            out = [" " if c.isspace() else c for c in out]
            out = [c for i, c in enumerate(out) if c != " " or (i and out[i - 1] != " ")]
        return out

    def fit(self, texts: list[str]) -> LMPreprocessor:
        t = self.cfg.text
        built = Vocabulary.build((self.tokens(x) for x in texts), t.min_freq, t.max_size)
        self.vocab_ = Vocabulary([EOS, *built.tokens[2:]], [0, *(built.counts or [])])
        self.vocab_.total_tokens, self.vocab_.covered_tokens = built.total_tokens, built.covered_tokens
        return self

    @property
    def eos_id(self) -> int:
        return self.vocab_.index[EOS]

    def in_vocabulary(self, tokens: list[str]) -> list[str]:
        """Tokens as the model and the n-gram baseline see them (unknown -> `<unk>`)."""
        index = self.vocab_.index
        return [t if t in index else UNK for t in tokens]

    def stream(self, texts: list[str]) -> np.ndarray:
        """One id stream: end-of-text, then each document followed by end-of-text."""
        eos = self.eos_id
        pieces = [np.array([eos], np.int64)]
        for text in texts:
            pieces.append(self.vocab_.encode(self.tokens(text)))
            pieces.append(np.array([eos], np.int64))
        return np.concatenate(pieces)

    def detokenize(self, tokens: list[str]) -> str:
        return "".join(tokens) if self.level == "char" else " ".join(tokens)

    def to_dict(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.to_dict(), "level": self.level, "vocab": self.vocab_.tokens}

    @classmethod
    def from_dict(cls, cfg: LMConfig, d: dict[str, Any]) -> LMPreprocessor:
        p = cls(cfg)
        p.vocab_ = Vocabulary(d["vocab"][2:])
        return p


class StreamBatches:
    """A `BatchSource` over a token stream for truncated backpropagation through time: the
    stream is cut into `rows` parallel rows, and consecutive (rows, bptt) windows come in
    order, so the model's carried state continues each row. Yields ((tokens, reset), next
    tokens); `reset` is True for the first window of a pass. `shuffle` (training) moves the
    window boundaries by a random offset each pass; `batch_size` is ignored (the layout fixes
    the rows)."""

    def __init__(self, ids: np.ndarray, rows: int, bptt: int):
        n = (len(ids) - 1) // rows
        if n < 2:
            raise DataError(f"a stream of {len(ids)} tokens is too short for {rows} rows")
        ids = torch.as_tensor(ids[: n * rows + 1], dtype=torch.long)
        self.x = ids[:-1].reshape(rows, n)
        self.y = ids[1:].reshape(rows, n)
        self.rows, self.bptt = rows, bptt

    @property
    def tokens(self) -> int:
        return int(self.y.numel())

    def __len__(self) -> int:  # in rows x windows, so that ceil(len / rows) counts the windows
        return self.rows * math.ceil(self.x.shape[1] / self.bptt)

    def to(self, device) -> StreamBatches:
        out = StreamBatches.__new__(StreamBatches)
        out.__dict__.update(self.__dict__)
        out.x, out.y = self.x.to(device), self.y.to(device)
        return out

    def batches(self, batch_size: int = 0, shuffle: bool = False, generator: torch.Generator | None = None):
        n = self.x.shape[1]
        start = int(torch.randint(0, self.bptt, (1,), generator=generator)) if shuffle else 0
        bounds = ([0] if start else []) + list(range(start, n, self.bptt)) + [n]
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            if hi > lo:
                yield (self.x[:, lo:hi], i == 0), self.y[:, lo:hi]


def lm_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per token (natural log): exp of it is the perplexity."""
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


@dataclass
class LMPrepared:
    texts: dict[str, list[str]]
    preprocessor: LMPreprocessor
    streams: dict[str, np.ndarray]
    split_kind: str
    fingerprint: str
    source: str
    skipped: dict[str, int] = field(default_factory=dict)

    def batches(self, part: str, rows: int, bptt: int) -> StreamBatches:
        return StreamBatches(self.streams[part], rows, bptt)

    def seen(self) -> np.ndarray:
        """Digests of the texts the model learns from or stops on (train and val), kept in
        its artefact: a classifier that starts from it checks that none is its val or test."""
        return text_digests(self.texts["train"] + self.texts["val"])

    def docs(self, part: str) -> list[list[str]]:
        """The part's documents as in-vocabulary tokens (what the n-gram baseline reads)."""
        p = self.preprocessor
        return [p.in_vocabulary(p.tokens(t)) for t in self.texts[part]]

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            part: {"documents": len(self.texts[part]), "tokens": int(len(s) - 1), "unknown": int((s == 1).sum())}
            for part, s in self.streams.items()
        }

    def summary(self) -> dict[str, Any]:
        v = self.preprocessor.vocab_
        return {
            "split": self.split_kind,
            "level": self.preprocessor.level,
            "counts": self.counts(),
            "vocabulary": len(v),
            "skipped_rows": self.skipped,
            "train_tokens_in_vocabulary": round(v.covered_tokens / max(v.total_tokens, 1), 4),
        }


@preloadable
def load_lm_texts(cfg: LMConfig) -> dict[str, Any]:
    d = cfg.data
    kw = dict(bad_rows=d.bad_rows, fmt=d.format, require_labels=False)
    out = {"data": read_texts(settings.resolve_data_path(d.path), d.text_col, "", **kw)}
    if d.test_path:
        out["test"] = read_texts(settings.resolve_data_path(d.test_path), d.text_col, "", **kw)
    return out


def prepare_lm(tables: dict[str, Any], cfg: LMConfig) -> LMPrepared:
    """Documents to train / val / test (at random, seeded; or the given test file), the
    vocabulary from the training part only, and each part as one id stream."""
    data = tables["data"]
    s = cfg.split
    held = {"val": s.val} if "test" in tables else {"val": s.val, "test": s.test}
    parts = stratified_split(np.zeros(len(data), np.int64), held, s.seed)
    texts = {p: [data.texts[i] for i in parts[p]] for p in parts}
    skipped = dict(data.skipped)
    if "test" in tables:
        texts["test"] = tables["test"].texts
        skipped.update({f"test_{k}": v for k, v in tables["test"].skipped.items()})
        kind = f"random train/val of {Path(data.source).name}; test = {Path(tables['test'].source).name}"
    else:
        kind = f"random train/val/test of {Path(data.source).name}"
    for part in ("train", "val", "test"):
        if not texts.get(part):
            raise DataError(f"{data.source}: the {part} part is empty; use more data or larger split fractions")
    pre = LMPreprocessor(cfg).fit(texts["train"])
    streams = {part: pre.stream(texts[part]) for part in ("train", "val", "test")}
    h = hashlib.sha256()
    for part in ("train", "val", "test"):
        for t in texts[part]:
            h.update(f"{part}\x1f{t}\x1e".encode())
    return LMPrepared(texts, pre, streams, kind, h.hexdigest(), data.source, skipped)
