"""The bundled word vectors (data/word_vectors.parquet) and the script that makes them: the
file holds what data/SOURCES.md says and nothing taken from any data set's text."""

import importlib.util

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REPO

from rnnpipe.pipelines.reviews.config import ReviewsConfig
from rnnpipe.text import Tokenizer
from rnnpipe.vectors import read_vectors

VECTORS = REPO / "data" / "word_vectors.parquet"


def script():
    spec = importlib.util.spec_from_file_location("make_word_vectors", REPO / "data" / "make_word_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # torch and transformers are imported only when encoding
    return module


def test_the_bundled_vectors_are_the_encoders_whole_words():
    words, vectors = read_vectors(VECTORS)
    assert vectors.shape == (len(words), 200) and len(set(words)) == len(words) > 20000
    assert np.isfinite(vectors).all() and np.linalg.norm(vectors, axis=1).mean() == pytest.approx(1, abs=0.01)
    rule = script().WORD
    assert all(rule.match(w) for w in words)
    # each word is one token of the default tokenizer, as it would meet it in a review
    tokenize = Tokenizer(**{k: getattr(ReviewsConfig().text, k) for k in ("lowercase", "html", "urls", "pattern")})
    assert all(tokenize(w) == [w] for w in words[::50])
    assert pq.read_schema(VECTORS).field("vector").type.value_type == "halffloat"
    # meaning, not noise: a word is nearer its synonym than its opposite
    index = {w: i for i, w in enumerate(words)}
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cos = lambda a, b: float(unit[index[a]] @ unit[index[b]])  # noqa: E731
    assert cos("delicious", "delightful") > cos("delicious", "awful")
    assert cos("terrible", "awful") > cos("terrible", "great")


def test_the_script_keeps_whole_words_and_reduces_with_pca(tmp_path):
    make = script()
    (tmp_path / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[unused0]", "[CLS]", "the", "good", "##ing", "!", "don't", "1999", "café", "a-b", "?"])
    )
    assert make.words_of(tmp_path) == ["the", "good", "!", "don't", "?"]
    rng = np.random.default_rng(0)
    wide = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 8)) + rng.normal(scale=1e-3, size=(50, 8))
    low, kept = make.reduce(wide, 3)
    assert low.shape == (50, 3) and kept > 0.999  # three directions hold (nearly) all of it
    assert np.linalg.norm(low, axis=1).mean() == pytest.approx(1)
    out = tmp_path / "v.parquet"
    make.write(["a", "b"], low[:2], out)
    words, back = read_vectors(out)
    assert words == ["a", "b"] and np.allclose(back, low[:2], atol=2e-3)
    assert not list(tmp_path.glob("*.tmp"))
