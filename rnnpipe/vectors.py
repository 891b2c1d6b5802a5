"""Pretrained word vectors (text or Parquet files, read offline) and the embedding matrix they
give a vocabulary."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from rnnpipe.errors import DataError
from rnnpipe.text import PAD_ID, UNK_ID, Vocabulary

log = logging.getLogger(__name__)


def read_vectors(path: str | Path, keep: Iterable[str] | None = None) -> tuple[list[str], np.ndarray]:
    """The words and vectors of a GloVe or word2vec *text* file (one word and its numbers per
    line; word2vec's "count dim" header line is recognised), or of a Parquet file with a
    `word` column and a `vector` column of number lists (as `data/word_vectors.parquet`, the
    bundled vectors, is written). With `keep`, a text file keeps only the lines of those words
    (exactly or lower-cased), so a large file is read without holding all of it."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"embedding file not found: {p}")
    if p.suffix == ".parquet":
        return _parquet_vectors(p)
    wanted = None if keep is None else set(keep)
    words, rows = [], []
    dim = None
    with open(p, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            parts = line.rstrip().split(" ")
            if n == 1 and len(parts) == 2 and all(x.isdigit() for x in parts):
                dim = int(parts[1])  # word2vec header
                continue
            if len(parts) < 2:
                continue
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 != dim:
                raise DataError(f"{p}, line {n}: expected a word and {dim} numbers, found {len(parts) - 1} numbers")
            word = parts[0]
            if wanted is not None and word not in wanted and word.lower() not in wanted:
                continue
            try:
                rows.append(np.asarray(parts[1:], dtype=np.float32))
            except ValueError:
                raise DataError(f"{p}, line {n}: the numbers after {word!r} are not all numbers") from None
            words.append(word)
    if dim is None:
        raise DataError(f"{p}: no vectors in the file")
    return words, (np.stack(rows) if rows else np.zeros((0, dim), np.float32))


def _parquet_vectors(path: Path) -> tuple[list[str], np.ndarray]:
    """`word` and `vector` (lists of one length) of a Parquet vector file -> (words, float32 matrix)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow's own errors, reported with the file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    missing = [c for c in ("word", "vector") if c not in table.column_names]
    if missing:
        raise DataError(
            f"{path}: a vector file needs columns 'word' and 'vector'; missing "
            f"{', '.join(map(repr, missing))} (columns: {', '.join(table.column_names)})"
        )
    column = table.column("vector").combine_chunks()
    if not (
        pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type) or pa.types.is_large_list(column.type)
    ) or not pa.types.is_floating(column.type.value_type):
        raise DataError(f"{path}, column 'vector': expected lists of numbers, found {column.type}")
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if len(lengths) == 0:
        raise DataError(f"{path}: no vectors in the file")
    bad = np.flatnonzero(lengths != lengths[0])
    if len(bad):
        raise DataError(
            f"{path}, row {bad[0] + 1}, column 'vector': {lengths[bad[0]]} numbers where row 1 has {lengths[0]}"
        )
    words = table.column("word").to_pylist()
    if any(not isinstance(w, str) for w in words):
        row = next(i for i, w in enumerate(words) if not isinstance(w, str))
        raise DataError(f"{path}, row {row + 1}, column 'word': not a word ({words[row]!r})")
    matrix = np.asarray(column.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(len(words), -1)
    if not np.isfinite(matrix).all():
        row = int(np.flatnonzero(~np.isfinite(matrix).all(1))[0])
        raise DataError(f"{path}, row {row + 1}, column 'vector': not a finite number")
    return words, matrix


def load_vectors(
    path: str | Path, vocab: Vocabulary, seed: int = 0, extend: bool = False, lowercase: bool = False
) -> tuple[Vocabulary, np.ndarray, dict[str, float]]:
    """An embedding matrix for `vocab` from a vector file (`read_vectors`), matched and filled
    as `vectors_from_vocabulary` does. With `extend`, the file's words (lower-cased with
    `lowercase`, as the tokenizer would give them) join the vocabulary first. Returns the
    vocabulary, the matrix and the coverage: share of the vocabulary's training words found,
    and of training tokens they account for."""
    words, vectors = read_vectors(path, keep=None if extend else vocab.tokens[UNK_ID + 1 :])
    trained = len(vocab)
    if extend:
        vocab = vocab.extended(w.lower() if lowercase else w for w in words)
    matrix, stats = vectors_from_vocabulary(vocab, words, vectors, seed)
    stats["embedding_words_added"] = float(len(vocab) - trained)
    log.info(
        "%s: %d of %d vocabulary words found (%.1f%% of training tokens); %d words added from the file",
        path,
        int(stats["embedding_words_found"]),
        trained - UNK_ID - 1,
        100 * stats["embedding_coverage_tokens"],
        len(vocab) - trained,
    )
    return vocab, matrix, stats


def vectors_from_vocabulary(
    vocab: Vocabulary, tokens: Sequence[str], vectors: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, dict[str, float]]:
    """An embedding matrix for `vocab` from other vectors (`tokens[i]` has row `vectors[i]`:
    a vector file's, a language model's). A word takes the vector of the same token, else of
    its lower-cased form, else of the first token that lower-cases to it. Rows of words not
    found are drawn at random with the spread of the found vectors; `<pad>` is zero."""
    index: dict[str, int] = {}
    for j, t in enumerate(tokens):
        index.setdefault(t, j)
    for j, t in enumerate(tokens):
        index.setdefault(t.lower(), j)
    found = {}
    for i, t in enumerate(vocab.tokens):
        j = index.get(t, index.get(t.lower())) if i > UNK_ID else None
        if j is not None:
            found[i] = np.asarray(vectors[j], np.float32)
    return _embedding_matrix(vocab, found, int(vectors.shape[1]), seed)


def _embedding_matrix(
    vocab: Vocabulary, found: dict[int, np.ndarray], dim: int, seed: int
) -> tuple[np.ndarray, dict[str, float]]:
    """Rows of the words found; the others drawn at random with the found vectors' spread;
    `<pad>` zero. -> (matrix, coverage: of vocabulary words and of training tokens)."""
    rng = np.random.default_rng(seed)
    scale = float(np.std(np.stack(list(found.values())))) if found else 0.1
    matrix = rng.normal(0, scale, size=(len(vocab), dim)).astype(np.float32)
    matrix[PAD_ID] = 0
    for i, v in found.items():
        matrix[i] = v
    counts = vocab.counts or [1] * (len(vocab) - 2)  # words added from a vector file count 0
    trained = sum(1 for c in counts if c > 0)
    hits = [i for i in found if counts[i - 2] > 0]
    covered = sum(counts[i - 2] for i in hits)
    stats = {
        "embedding_dim": float(dim),
        "embedding_coverage_vocab": len(hits) / max(trained, 1),
        "embedding_coverage_tokens": covered / max(sum(counts), 1),
        "embedding_words_found": float(len(hits)),
    }
    return matrix, stats
