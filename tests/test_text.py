"""Text ingestion, tokenising, vocabulary, batches and the text classifier (no Prefect)."""

import itertools
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from rnnpipe.config import load_config
from rnnpipe.errors import DataError
from rnnpipe.features.splits import stratified_split
from rnnpipe.io import RowOrigin
from rnnpipe.pipelines.reviews.config import ReviewsConfig
from rnnpipe.pipelines.reviews.model import TextClassifier
from rnnpipe.pipelines.reviews.prepare import prepare_reviews
from rnnpipe.text import (
    PAD_ID,
    UNK_ID,
    EncodedTexts,
    TextBatches,
    TextTable,
    Tokenizer,
    Vocabulary,
    encode_texts,
    read_texts,
)
from rnnpipe.vectors import load_vectors


def table(texts, labels, source="mem"):
    return TextTable(
        list(texts), list(labels), [str(i) for i in range(len(texts))], RowOrigin(np.arange(len(texts))), source
    )


def test_tokenizer_lowercases_strips_html_and_marks_urls():
    tok = Tokenizer()
    assert tok("GREAT stuff!<br /><br />See https://a.com/x?y=1 now. Don't") == [
        "great",
        "stuff",
        "!",
        "see",
        "<url>",
        "now",
        "don't",
    ]
    assert Tokenizer(urls="drop")("see www.a.com") == ["see"]
    assert Tokenizer(lowercase=False, pattern=r"[A-Za-z]+")("Très Bon") == ["Tr", "s", "Bon"]
    assert tok("très bon 很好吃") == ["très", "bon", "很好吃"]


def test_vocabulary_ranks_by_count_and_maps_unknown_words_to_unk():
    v = Vocabulary.build([["a", "b", "a"], ["a", "c", "b"], ["d"]], min_freq=2, max_size=10)
    assert v.tokens == ["<pad>", "<unk>", "a", "b"]
    assert list(v.encode(["b", "zzz", "a", "c"])) == [3, UNK_ID, 2, UNK_ID]
    assert Vocabulary.build([["a", "b", "a", "b", "c", "c", "c"]], 1, max_size=2).tokens[2:] == ["c", "a"]


def test_vocabulary_uses_training_text_only():
    train = [f"good tasty word{i % 3}" if i % 2 else f"bad stale word{i % 3}" for i in range(40)]
    labels = ["great" if i % 2 else "other" for i in range(40)]
    test = ["good testonlyword", "bad anotherunseen"] * 5
    cfg = load_config(ReviewsConfig, overrides=["text.min_freq=1", "split.val=0.25"])
    p = prepare_reviews({"data": table(train, labels), "test": table(test, ["great", "other"] * 5)}, cfg)
    vocab = p.preprocessor.vocab_
    assert "testonlyword" not in vocab.index and "anotherunseen" not in vocab.index
    assert "good" in vocab.index
    # a word seen only in the validation part is not in the vocabulary either
    val_only = set(" ".join(p.texts["val"]).split()) - set(" ".join(p.texts["train"]).split())
    assert not val_only & set(vocab.index)
    enc = p.encoded["test"]
    first = enc.ids[enc.offsets[0] : enc.offsets[1]]
    assert list(first) == [vocab.index["good"], UNK_ID]
    assert p.counts()["train"]["reviews"] + p.counts()["val"]["reviews"] == 40


def test_stratified_split_keeps_label_shares_and_is_seeded():
    y = np.array([0] * 70 + [1] * 30)
    parts = stratified_split(y, {"val": 0.2, "test": 0.1}, seed=3)
    assert sorted(np.concatenate(list(parts.values()))) == list(range(100))
    assert [int(y[parts["val"]].sum()), len(parts["val"])] == [6, 20]
    assert [int(y[parts["test"]].sum()), len(parts["test"])] == [3, 10]
    again = stratified_split(y, {"val": 0.2, "test": 0.1}, seed=3)
    assert all((again[k] == parts[k]).all() for k in parts)


def test_encoding_truncates_and_gives_empty_texts_one_unk():
    v = Vocabulary(["a", "b"])
    enc = encode_texts(["a b a b a", "...", "b zz"], Tokenizer(), v, max_len=3)
    assert list(enc.lengths) == [3, 1, 2] and list(enc.n_tokens) == [5, 0, 2]
    assert list(enc.ids[3:4]) == [UNK_ID] and list(enc.n_unknown) == [0, 1, 1]
    tail = encode_texts(["a a b"], Tokenizer(), v, max_len=1, truncate="tail")
    assert list(tail.ids) == [3]


def encoded(lengths, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, 50, size=int(sum(lengths)))
    return EncodedTexts(
        ids, np.concatenate([[0], np.cumsum(lengths)]), np.asarray(lengths), np.zeros(len(lengths), np.int64)
    )


def test_bucketed_batches_cover_every_text_once_padded_to_their_own_longest():
    lengths = np.random.default_rng(1).integers(1, 80, size=300)
    data = TextBatches(encoded(lengths), np.arange(300) % 2)
    seen, widths = [], []
    for (tokens, lens), _y in data.batches(16, shuffle=True, generator=torch.Generator().manual_seed(0)):
        assert tokens.shape[1] == int(lens.max())
        assert ((tokens != PAD_ID).sum(1) == lens).all()
        seen.append(lens)
        widths.append(tokens.shape[1] * len(lens))
    assert sum(len(s) for s in seen) == 300
    naive = TextBatches(encoded(lengths), bucket=False, pad_to_longest=True)
    naive_cells = sum(t.numel() for (t, _), _ in naive.batches(16))
    assert sum(widths) < 0.7 * naive_cells  # bucketing pads far less
    # evaluation order is sorted by length; order() says how to put results back
    lens_eval = torch.cat([lens for (_, lens), _ in data.batches(32)])
    assert (lens_eval.numpy() == lengths[data.order()]).all()


def test_evaluation_batches_keep_to_a_token_budget_and_change_no_prediction():
    """Long texts go a few at a time (a pass's memory follows rows x longest), short ones in
    full batches; every text once, in the evaluation order, and the same outputs."""
    from rnnpipe.training import predict_batches

    lengths = np.random.default_rng(2).integers(1, 120, size=400)
    budget = TextBatches(encoded(lengths), max_tokens=2000)
    sizes = [(len(lens), int(lens.max())) for (_, lens), _ in budget.batches(64)]
    assert all(n * longest <= 2000 or n == 1 for n, longest in sizes)
    assert sizes[0][0] == 64 and sizes[-1][0] < 20  # short texts fill a batch, long ones do not
    lens_eval = torch.cat([lens for (_, lens), _ in budget.batches(64)])
    assert (lens_eval.numpy() == lengths[budget.order()]).all()
    torch.manual_seed(0)
    model = TextClassifier(50, 8, 3, cell="lstm", hidden_size=6).eval()
    plain = predict_batches(model, TextBatches(encoded(lengths)), 64)
    np.testing.assert_allclose(predict_batches(model, budget, 64), plain, atol=1e-5)


@pytest.mark.parametrize(
    "cell, pooling, bidirectional",
    list(itertools.product(["rnn", "lstm", "gru"], ["last", "mean", "max", "attention"], [True, False])),
)
def test_padded_batches_equal_one_text_at_a_time(cell, pooling, bidirectional):
    """Bidirectional encoders pack the batch; one direction runs over the padding and masks it."""
    torch.manual_seed(0)
    model = TextClassifier(
        50, 8, 3, cell=cell, hidden_size=6, num_layers=2, bidirectional=bidirectional, pooling=pooling
    ).eval()
    lengths = [5, 1, 9, 3, 9, 2]
    data = TextBatches(encoded(lengths))
    with torch.no_grad():
        (tokens, lens), _ = next(TextBatches(encoded(lengths), bucket=False).batches(6))
        batched = model(tokens, lens)
        one_by_one = torch.cat([model(tokens[i : i + 1, :n]) for i, n in enumerate(lengths)])
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=1e-5)
    assert data.longest == 9


def test_read_texts_reports_bad_rows_by_file_row_and_column(tmp_path):
    rows = [b"1,good stuff,great", b"2,,other", b"3,bad \xff\xfe bytes,other", b"4,fine,meh", b"5,ok,great"]

    def write(keep):
        path = tmp_path / "r.csv"
        path.write_bytes(b"id,review,score\n" + b"\n".join(rows[i] for i in keep) + b"\n")
        return path

    with pytest.raises(DataError, match=r"r.csv, row 2 \(line 3\): column 'review': empty text"):
        read_texts(write(range(5)), "review", "score")
    with pytest.raises(DataError, match=r"row 2 \(line 3\): column 'review': bytes that are not UTF-8"):
        read_texts(write([0, 2, 3]), "review", "score")
    with pytest.raises(
        DataError,
        match=r"row 2 \(line 3\): column 'score': unknown label 'meh' "
        r"\(known: great, other\)",
    ):
        read_texts(write([0, 3]), "review", "score", labels=["great", "other"])
    t = read_texts(write(range(5)), "review", "score", id_col="id", labels=["great", "other"], bad_rows="skip")
    assert t.texts == ["good stuff", "ok"] and t.ids == ["1", "5"]
    assert t.skipped == {"empty_text": 1, "undecodable": 1, "unknown_label": 1}


def test_read_texts_jsonl_and_parquet(tmp_path):
    path = tmp_path / "r.jsonl"
    lines = [
        json.dumps({"text": "nice", "label": 5}).encode(),
        b'{"text": "caf\xe9", "label": 1}',
        json.dumps({"text": 42, "label": 1}).encode(),
        b"not json",
        json.dumps({"text": "meh", "label": 3}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=r"r.jsonl, row 2 \(line 2\).*not UTF-8"):
        read_texts(path, "text", "label")
    t = read_texts(path, "text", "label", bad_rows="skip")
    assert t.texts == ["nice", "meh"] and t.labels == ["5", "3"]
    assert t.skipped == {"undecodable": 1, "not_text": 2}
    pq = tmp_path / "r.parquet"
    pd.DataFrame({"text": [1, 2], "label": ["a", "b"]}).to_parquet(pq)
    with pytest.raises(DataError, match="column 'text' holds int64 values, expected text"):
        read_texts(pq, "text", "label")


def test_load_vectors_glove_and_word2vec_text_files(tmp_path):
    v = Vocabulary(["good", "bad", "meh"], counts=[10, 5, 1])
    glove = tmp_path / "glove.txt"
    glove.write_text("good 1 2 3\nBad 4 5 6\nother 7 8 9\n")
    same, m, stats = load_vectors(glove, v)
    assert same.tokens == v.tokens and stats["embedding_words_added"] == 0
    assert m.shape == (5, 3) and (m[PAD_ID] == 0).all()
    assert list(m[2]) == [1, 2, 3] and list(m[3]) == [4, 5, 6]  # "Bad" matched lower-cased
    assert stats["embedding_coverage_vocab"] == pytest.approx(2 / 3)
    assert stats["embedding_coverage_tokens"] == pytest.approx(15 / 16)
    w2v = tmp_path / "w2v.txt"
    w2v.write_text("2 3\ngood 1 2 3\nmeh 0 0 1\n")
    assert load_vectors(w2v, v)[2]["embedding_words_found"] == 2
    bad = tmp_path / "bad.txt"
    bad.write_text("good 1 2 3\nbad 1 2\n")
    with pytest.raises(DataError, match=r"bad.txt, line 2: expected a word and 3 numbers, found 2"):
        load_vectors(bad, v)
    model = TextClassifier(5, 3, 2, pretrained=torch.as_tensor(m), freeze=True)
    assert not model.embedding.weight.requires_grad
    torch.testing.assert_close(model.embedding.weight[2], torch.tensor([1.0, 2, 3]))


def test_parquet_vector_file_and_vocabulary_extended_with_its_words(tmp_path):
    """The bundled vectors' format (Parquet: word, vector), and `extend`: the file's words join
    the training vocabulary after its own (count 0), lower-cased as the tokenizer would give
    them, while coverage still counts training words only."""
    v = Vocabulary(["good", "bad", "meh"], counts=[10, 5, 1])
    path = tmp_path / "vectors.parquet"
    table = pa.table(
        {
            "word": ["good", "Tasty", "bad", "good"],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(8, dtype=np.float16)), 2),
        }
    )
    pq.write_table(table, path)
    same, m, stats = load_vectors(path, v)
    assert same is v and m.shape == (5, 2)
    assert list(m[2]) == [0, 1] and list(m[3]) == [4, 5]  # the first row of a repeated word wins
    assert stats["embedding_words_found"] == 2 and stats["embedding_coverage_tokens"] == pytest.approx(15 / 16)
    bigger, m, stats = load_vectors(path, v, extend=True, lowercase=True)
    assert bigger.tokens == [*v.tokens, "tasty"] and bigger.counts == [10, 5, 1, 0]
    assert list(m[5]) == [2, 3]  # "Tasty" is found for the token "tasty"
    assert stats["embedding_coverage_vocab"] == pytest.approx(2 / 3) and stats["embedding_words_added"] == 1
    assert list(bigger.encode(["tasty", "good", "yum"])) == [5, 2, UNK_ID]
    ragged = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"word": ["a", "b"], "vector": [[1.0, 2.0], [3.0]]}), ragged)
    with pytest.raises(DataError, match=r"ragged.parquet, row 2, column 'vector': 1 numbers where row 1 has 2"):
        load_vectors(ragged, v)
    unnamed = tmp_path / "unnamed.parquet"
    pq.write_table(pa.table({"token": ["a"], "vector": [[1.0]]}), unnamed)
    with pytest.raises(DataError, match="needs columns 'word' and 'vector'; missing 'word'"):
        load_vectors(unnamed, v)


def test_paired_bootstrap_of_macro_f1_difference():
    from sklearn.metrics import f1_score

    from rnnpipe.pipelines.reviews.metrics import paired_bootstrap_macro_f1

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 600)
    good = np.where(rng.random(600) < 0.85, y, rng.integers(0, 3, 600))  # right 85%+ of the time
    poor = np.where(rng.random(600) < 0.55, y, rng.integers(0, 3, 600))
    r = paired_bootstrap_macro_f1(y, good, poor, 3)
    exact = f1_score(y, good, average="macro") - f1_score(y, poor, average="macro")
    assert r["diff"] == pytest.approx(exact, abs=1e-12)
    assert 0 < r["ci_low"] < r["diff"] < r["ci_high"] and r["p_not_better"] == 0.0
    assert paired_bootstrap_macro_f1(y, good, poor, 3) == r  # seeded
    # the same predictions: no difference in any replicate, so the interval is the point 0
    same = paired_bootstrap_macro_f1(y, good, good, 3)
    assert same["diff"] == same["ci_low"] == same["ci_high"] == 0.0 and same["p_not_better"] == 1.0
    # b differs from a on 2 of 600 rows, where a is right: a is never worse on a draw, and no
    # better exactly on draws that miss both rows, (1 - 2/600)^600 = e^-2 of them
    a = good.copy()
    a[:2] = y[:2]
    b = a.copy()
    b[:2] = (y[:2] + 1) % 3
    tiny = paired_bootstrap_macro_f1(y, a, b, 3)
    assert tiny["diff"] > 0 and tiny["ci_low"] == 0.0 and tiny["ci_high"] < 0.02
    assert tiny["p_not_better"] == pytest.approx(np.exp(-2), abs=0.03)
