"""Text for recurrent models: reading labelled texts, tokenising, a vocabulary, encoding once,
length-bucketed batches, and pretrained word vectors from a local file.

Texts are tokenised and encoded to integer ids a single time (`EncodedTexts`: one flat id
array plus offsets); every epoch only gathers ids into padded batches. With bucketing, a batch
holds reviews of similar length, and the encoder runs them as packed sequences, so neither
padding nor its compute grows with the longest review in the data.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from rnnpipe.errors import DataError
from rnnpipe.io import RowOrigin, detect_format, jsonl_files, jsonl_records, read_table

log = logging.getLogger(__name__)


PAD, UNK, URL = "<pad>", "<unk>", "<url>"

PAD_ID, UNK_ID = 0, 1

_URL = r"(?:https?://|www\.)[^\s<>\"]+"

_TAG = re.compile(r"<[^>\n]{0,200}>")

BAD_REASONS = ("undecodable", "not_text", "empty_text", "empty_label", "unknown_label")


@dataclass
class TextTable:
    """Labelled texts that passed the row checks, with where each came from."""

    texts: list[str]
    labels: list[str]
    ids: list[str]
    origin: RowOrigin
    source: str
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)


def _scan_jsonl(path: Path, columns: Sequence[str]) -> tuple[dict[str, list], RowOrigin, list[str | None]]:
    """JSON Lines read line by line, so a bad line is reported (or skipped) on its own: pyarrow's
    reader fails the whole file on one undecodable byte. Returns the columns, the origin and,
    per row, why it could not be read (None when it could)."""
    files = jsonl_files(path)
    cols: dict[str, list] = {c: [] for c in columns}
    rows, file_ids, problems = [], [], []
    for fi, f in enumerate(files):
        for r, (_, record, problem) in enumerate(jsonl_records(f)):
            for c in columns:
                cols[c].append((record or {}).get(c))
            rows.append(r)
            file_ids.append(fi)
            problems.append(problem)
    if not rows:
        raise DataError(f"{path}: no JSON lines found")
    present = {c for c in columns if any(v is not None for v in cols[c])}
    for c in columns:
        if c not in present:
            raise DataError(f"{path}: column {c!r} not found in any line")
    origin = RowOrigin(np.asarray(rows, np.int64), [str(f) for f in files], np.asarray(file_ids, np.int32), "jsonl")
    return cols, origin, problems


def read_texts(
    path: str | Path,
    text_col: str,
    label_col: str,
    *,
    id_col: str = "",
    labels: Sequence[str] | None = None,
    bad_rows: str = "error",
    fmt: str = "auto",
    require_labels: bool = True,
) -> TextTable:
    """Read texts and labels, checking every row.

    A row is bad when its text has bytes that are not UTF-8, is not text, or is empty; or its
    label is missing or, when `labels` is given, not one of them. `bad_rows="error"` stops at
    the first with its file, row and column; "skip" drops them and counts them by reason.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {p}")
    kind = detect_format(p, fmt)
    columns = [c for c in dict.fromkeys([text_col, label_col if require_labels else "", id_col]) if c]
    if kind == "jsonl":
        cols, origin, problems = _scan_jsonl(p, columns)
        raw_text, raw_label = cols[text_col], cols.get(label_col)
        raw_ids = cols.get(id_col)
    else:
        table, origin = read_table(p, columns, kind, binary_columns=[text_col])
        problems = [None] * table.num_rows
        t = table[text_col]
        if not (pa.types.is_binary(t.type) or pa.types.is_large_binary(t.type) or pa.types.is_null(t.type)):
            raise DataError(f"{origin.describe(0)}: column {text_col!r} holds {t.type} values, expected text")
        raw_text = t.to_pylist()
        raw_label = table[label_col].cast(pa.string()).to_pylist() if require_labels else None
        raw_ids = table[id_col].cast(pa.string()).to_pylist() if id_col else None
    known = None if not labels else {str(x) for x in labels}

    texts, out_labels, ids, keep = [], [], [], []
    skipped = dict.fromkeys(BAD_REASONS, 0)
    first_bad: dict[str, str] = {}
    for i, value in enumerate(raw_text):
        reason = problems[i]
        if reason is None:
            reason, text = check_text(value)
            if reason is not None:
                key, _, message = reason.partition(":")
                reason = f"{key}:column {text_col!r}: {message}"
        if reason is None and require_labels:
            label = raw_label[i]
            if label is None or (isinstance(label, str) and not label.strip()):
                reason = f"empty_label:column {label_col!r} is empty"
            else:
                label = (
                    str(label).strip() if not isinstance(label, float) or not label.is_integer() else str(int(label))
                )
                if known is not None and label not in known:
                    reason = (
                        f"unknown_label:column {label_col!r}: unknown label {label!r} "
                        f"(known: {', '.join(sorted(known))})"
                    )
        if reason is not None:
            key, _, message = reason.partition(":")
            if bad_rows == "error":
                raise DataError(f"{origin.describe(i)}: {message}; set data.bad_rows=skip to drop such rows")
            skipped[key] += 1
            first_bad.setdefault(key, f"{origin.describe(i)}: {message}")
            continue
        texts.append(text)
        out_labels.append(label if require_labels else "")
        ids.append(str(raw_ids[i]) if raw_ids is not None and raw_ids[i] is not None else str(i))
        keep.append(i)
    for key, n in skipped.items():
        if n:
            log.warning("%s: skipped %d rows (%s), e.g. %s", p, n, key.replace("_", " "), first_bad[key])
    if not texts:
        bad = sum(skipped.values())
        raise DataError(f"{p}: no usable rows ({bad} bad)" if bad else f"{p}: no rows")
    return TextTable(
        texts, out_labels, ids, origin.take(np.asarray(keep)), str(p), {k: v for k, v in skipped.items() if v}
    )


def check_text(value: Any) -> tuple[str | None, str]:
    """(None, the text) for usable text, else ("reason:message", ""): no text, bytes that
    are not UTF-8, a value that is not text, or only white space."""
    if value is None:
        return "empty_text:empty text", ""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"undecodable:bytes that are not UTF-8 (at byte {exc.start})", ""
    if not isinstance(value, str):
        return f"not_text:{type(value).__name__} value {value!r:.40}, expected text", ""
    if not value.strip():
        return "empty_text:empty text", ""
    return None, value


class Tokenizer:
    """Lower-casing, HTML tags dropped, URLs as one `<url>` token (or dropped, or kept as
    text), then the matches of a regex: by default Unicode words (with inner apostrophes)
    and the marks ! and ?, which carry sentiment."""

    def __init__(
        self, lowercase: bool = True, html: bool = True, urls: str = "token", pattern: str = r"\w+(?:'\w+)*|[!?]"
    ):
        self.lowercase, self.html, self.urls, self.pattern = lowercase, html, urls, pattern
        alternatives = f"(?P<url>{_URL})|(?:{pattern})" if urls != "keep" else f"(?:{pattern})"
        self._re = re.compile(alternatives, re.IGNORECASE if urls != "keep" else 0)
        self._word = re.compile(pattern)

    def __call__(self, text: str) -> list[str]:
        if self.html:
            text = _TAG.sub(" ", text)
        if self.lowercase:
            text = text.lower()
        out = []
        for m in self._re.finditer(text):
            if self.urls != "keep" and m.group("url"):
                if self.urls == "token":
                    out.append(URL)
            elif m.group(0):
                out.append(m.group(0))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"lowercase": self.lowercase, "html": self.html, "urls": self.urls, "pattern": self.pattern}


class Vocabulary:
    """Token <-> id; 0 is `<pad>`, 1 is `<unk>`. Built from training text only."""

    def __init__(self, tokens: Sequence[str], counts: Sequence[int] | None = None):
        self.tokens = [PAD, UNK, *[t for t in tokens if t not in (PAD, UNK)]]
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.counts = list(counts) if counts is not None else None

    @classmethod
    def build(cls, token_lists: Iterable[list[str]], min_freq: int = 2, max_size: int = 20000) -> Vocabulary:
        counter = Counter(t for tokens in token_lists for t in tokens)
        ranked = sorted(
            ((c, t) for t, c in counter.items() if c >= min_freq and t not in (PAD, UNK)),
            key=lambda ct: (-ct[0], ct[1]),
        )[:max_size]
        vocab = cls([t for _, t in ranked], [c for c, _ in ranked])
        vocab.total_tokens = sum(counter.values())
        vocab.covered_tokens = sum(c for c, _ in ranked)
        return vocab

    def extended(self, words: Iterable[str]) -> Vocabulary:
        """This vocabulary and, after its own words, those of `words` it lacks (count 0): the
        words of a pretrained vector file, so that a word no training text used still has a
        vector. Nothing here comes from validation or test texts."""
        extra = list(dict.fromkeys(w for w in words if w and w not in self.index))
        out = Vocabulary(
            [*self.tokens[UNK_ID + 1 :], *extra], None if self.counts is None else [*self.counts, *[0] * len(extra)]
        )
        for attr in ("total_tokens", "covered_tokens"):
            if hasattr(self, attr):
                setattr(out, attr, getattr(self, attr))
        return out

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        get = self.index.get
        return np.fromiter((get(t, UNK_ID) for t in tokens), dtype=np.int64, count=len(tokens))


def text_digests(texts: Sequence[str]) -> np.ndarray:
    """Sorted unique 64-bit digests of texts: what a model records of the texts it learned
    from, so that a later model can check it never saw its own validation or test texts."""
    return np.unique(np.array([text_digest(t) for t in texts], dtype=np.uint64))


def text_digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


@dataclass
class EncodedTexts:
    """Token ids of many texts end to end: text i is `ids[offsets[i]:offsets[i+1]]`, cut to
    `max_len`; `n_tokens` is its length before the cut. A text without tokens is one `<unk>`."""

    ids: np.ndarray  # (total,) int64
    offsets: np.ndarray  # (N + 1,) int64
    n_tokens: np.ndarray  # (N,) tokens before truncation
    n_unknown: np.ndarray  # (N,) `<unk>` among the kept tokens

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def token_count(self) -> int:
        return int(self.lengths.sum())


def encode_texts(
    texts: Sequence[str], tokenizer: Tokenizer, vocab: Vocabulary, max_len: int, truncate: str = "head"
) -> EncodedTexts:
    pieces, n_tokens = [], np.empty(len(texts), np.int64)
    for i, text in enumerate(texts):
        tokens = tokenizer(text)
        n_tokens[i] = len(tokens)
        ids = vocab.encode(tokens[:max_len] if truncate == "head" else tokens[-max_len:])
        pieces.append(ids if len(ids) else np.array([UNK_ID], np.int64))
    lengths = np.fromiter((len(x) for x in pieces), np.int64, count=len(pieces))
    ids = np.concatenate(pieces) if pieces else np.empty(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    unknown = np.add.reduceat((ids == UNK_ID).astype(np.int64), offsets[:-1]) if len(ids) else lengths * 0
    return EncodedTexts(ids, offsets, n_tokens, unknown)


BUCKET_SPAN = 50  # batches per bucketing chunk: long enough to group lengths, short enough to mix


class TextBatches:
    """A `BatchSource` of encoded texts: yields ((ids (B, T), lengths (B,)), labels (B,)).

    `bucket=True` sorts texts by length within chunks of `BUCKET_SPAN` batches (shuffled per
    epoch when training, the whole set in evaluation), so each batch is padded only to its
    own longest text. `bucket=False, pad_to_longest=True` is the naive alternative kept for
    measurement: every batch is padded to the longest text of the whole set.
    """

    def __init__(
        self,
        encoded: EncodedTexts,
        labels: np.ndarray | None = None,
        bucket: bool = True,
        pad_to_longest: bool = False,
        features=None,
        max_tokens: int = 0,
    ):
        self.encoded, self.bucket, self.pad_to_longest = encoded, bucket, pad_to_longest
        self.max_tokens = max_tokens  # in evaluation order, a batch's rows x its longest text at most this
        self.features = features  # optional (N, F) scipy sparse rows (n-gram features), per text
        self.ids = torch.as_tensor(encoded.ids)
        self.starts = torch.as_tensor(encoded.offsets[:-1])
        self.lengths = torch.as_tensor(encoded.lengths)
        n = len(encoded)
        self.labels = torch.as_tensor(np.zeros(n, np.int64) if labels is None else np.asarray(labels, np.int64))
        self.longest = int(encoded.lengths.max()) if n else 0

    def __len__(self) -> int:
        return len(self.lengths)

    def to(self, device: torch.device) -> TextBatches:
        out = TextBatches.__new__(TextBatches)
        out.__dict__.update(self.__dict__)
        out.ids, out.starts, out.labels = self.ids.to(device), self.starts.to(device), self.labels.to(device)
        out.lengths = self.lengths  # stays on the CPU: packing wants CPU lengths
        return out

    def order(self) -> np.ndarray:
        """The order in which `batches(shuffle=False)` yields the texts."""
        n = len(self)
        if self.bucket:
            return np.argsort(self.encoded.lengths, kind="stable")
        return np.arange(n)

    def _index_batches(self, batch_size: int, shuffle: bool, generator: torch.Generator | None):
        n = len(self)
        if not shuffle:
            order = torch.as_tensor(self.order())
            if self.bucket and self.max_tokens:
                return token_budget_batches(order, self.lengths[order].numpy(), batch_size, self.max_tokens)
            return list(torch.split(order, batch_size))
        perm = torch.randperm(n, generator=generator)
        if not self.bucket:
            return list(torch.split(perm, batch_size))
        batches = []
        for chunk in torch.split(perm, batch_size * BUCKET_SPAN):
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            batches.extend(torch.split(chunk, batch_size))
        shuffled = torch.randperm(len(batches), generator=generator)
        return [batches[i] for i in shuffled]

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None):
        device = self.ids.device
        for idx in self._index_batches(batch_size, shuffle, generator):
            lengths = self.lengths[idx]
            width = self.longest if self.pad_to_longest else int(lengths.max())
            steps = torch.arange(width, device=device)
            idx_d = idx.to(device)
            pos = self.starts[idx_d][:, None] + steps[None, :]
            mask = steps[None, :] < lengths.to(device)[:, None]
            tokens = torch.where(mask, self.ids[pos.clamp_(max=len(self.ids) - 1)], PAD_ID)
            if self.features is None:
                yield (tokens, lengths), self.labels[idx_d]
            else:
                yield (tokens, lengths, sparse_rows(self.features, idx.numpy(), device)), self.labels[idx_d]


def token_budget_batches(order: torch.Tensor, lengths: np.ndarray, rows: int, tokens: int) -> list[torch.Tensor]:
    """`order` (texts sorted by ascending `lengths`) cut into batches of at most `rows` texts
    whose padded size (texts x the batch's longest) stays within `tokens` (at least one text
    a batch): a recurrent layer's memory per pass follows the padded size, so long texts go
    in fewer at a time and short ones in full batches."""
    out, i, n = [], 0, len(order)
    while i < n:
        k = min(rows, n - i)
        # the largest k with k * lengths[i + k - 1] <= tokens (the product grows with k)
        lo, hi = 1, k
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if mid * int(lengths[i + mid - 1]) <= tokens:
                lo = mid
            else:
                hi = mid - 1
        out.append(order[i : i + lo])
        i += lo
    return out


def sparse_rows(matrix, rows: np.ndarray, device) -> torch.Tensor:
    """Rows of a scipy sparse matrix as a torch sparse (COO) tensor on `device`."""
    part = matrix[rows].tocoo()
    index = torch.as_tensor(np.vstack([part.row, part.col]), dtype=torch.long)
    values = torch.as_tensor(part.data, dtype=torch.float32)
    return torch.sparse_coo_tensor(index, values, part.shape, check_invariants=False).to(device)
