"""The language model: tokens and vocabulary from training text only, exact perplexity, the
n-gram baseline, sampling, and a model that learns a tiny corpus."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from rnnpipe.config import load_config
from rnnpipe.errors import DataError
from rnnpipe.pipelines.lm.artefact import LMConfig, LMPipeline, sample_next
from rnnpipe.pipelines.lm.baselines import KneserNeyLM
from rnnpipe.pipelines.lm.prepare import EOS, StreamBatches, lm_loss, prepare_lm
from rnnpipe.text import TextTable
from rnnpipe.training import fit

TINY = [
    "model.embed_dim=16",
    "model.hidden_size=16",
    "model.num_layers=1",
    "model.dropout=0",
    "train.batch_size=4",
    "stream.bptt=8",
    "text.min_freq=1",
]


def tables(train, test):
    def table(texts):
        return TextTable(list(texts), [""] * len(texts), [str(i) for i in range(len(texts))], None, "mem")

    return {"data": table(train), "test": table(test)}


def test_vocabulary_and_ngram_counts_come_from_training_text_only():
    train = [f"good tea number {i % 5}" for i in range(40)]
    cfg = load_config(LMConfig, overrides=TINY + ["split.val=0.25"])
    p = prepare_lm(tables(train + ["valonlyword appears here"] * 0, ["testonlyword is great"]), cfg)
    vocab = set(p.preprocessor.vocab_.tokens)
    assert "testonlyword" not in vocab and "good" in vocab and EOS in vocab
    assert p.docs("test")[0][0] == "<unk>"  # the baseline reads it as unknown too
    ngram = KneserNeyLM().fit(p.docs("train"), p.docs("val"))
    unigrams = set(ngram.lm_.counts.unigrams)
    assert "testonlyword" not in unigrams and "good" in unigrams
    # the stream: end-of-text first, then each document followed by it
    ids = p.streams["test"]
    eos = p.preprocessor.eos_id
    assert ids[0] == eos and ids[-1] == eos and (ids == eos).sum() == 2


def test_kneser_ney_is_a_distribution_and_its_order_is_chosen_on_validation():
    docs = [["a", "b", "c", "a", "b", "c"], ["b", "c", "a", "b"]] * 20
    kn = KneserNeyLM().fit(docs, docs[:4])
    lm = kn.lm_
    for ctx in [("a", "b"), ("c",), ("zz", "yy")]:
        ctx = tuple(ctx[-(lm.order - 1) :])
        assert sum(lm.unmasked_score(w, ctx) for w in lm.vocab) == pytest.approx(1.0, abs=1e-6)
    assert set(kn.val_perplexity_) == {f"{o}/{d}" for o in kn.ORDERS for d in kn.DISCOUNTS}
    assert kn.val_perplexity_[f"{kn.order_}/{kn.discount_}"] == min(kn.val_perplexity_.values())


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    cfg = load_config(LMConfig, overrides=TINY)
    p = prepare_lm(tables([f"w{i % 7} w{(i + 1) % 7} w{(i + 2) % 7}" for i in range(30)], ["w1 w2 w3 w9"]), cfg)
    pipe = LMPipeline(cfg, p.preprocessor)
    with torch.no_grad():  # tied weights: zero embedding and bias -> all logits equal
        pipe.model.embedding.weight.zero_()
        pipe.model.decoder.bias.zero_()
    lp, n = pipe.log_likelihood(p.streams["test"])
    assert n == 5 and math.exp(-lp / n) == pytest.approx(len(p.preprocessor.vocab_), rel=1e-6)


def test_stream_batches_cover_the_stream_in_order():
    ids = np.arange(101)
    b = StreamBatches(ids, rows=4, bptt=7)
    got = list(b.batches())
    assert got[0][0][1] is True and all(not x[1] for x, _ in got[1:])
    x = torch.cat([x for (x, _), _ in got], dim=1)
    y = torch.cat([y for _, y in got], dim=1)
    assert (y == x + 1).all() and x.shape == (4, 25) and x[1, 0] == 25
    shuffled = list(b.batches(shuffle=True, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(torch.cat([x for (x, _), _ in shuffled], 1), x)  # same tokens, other cuts
    assert len(b) == 4 * 4
    with pytest.raises(DataError, match="too short"):
        StreamBatches(np.arange(5), rows=4, bptt=7)


def test_sampling_respects_temperature_top_k_and_top_p():
    logits = torch.tensor([0.0, 3.0, 2.0, 1.0])
    assert sample_next(logits, 0.0) == 1  # greedy
    g = torch.Generator().manual_seed(0)
    assert {sample_next(logits, 1.0, top_k=2, generator=g) for _ in range(200)} == {1, 2}
    p = torch.softmax(logits, 0)  # top-p: the smallest set reaching p
    only_first = float(p[1]) - 1e-3
    assert {sample_next(logits, 1.0, top_p=only_first, generator=g) for _ in range(50)} == {1}
    draws = [sample_next(logits, 5.0, generator=torch.Generator().manual_seed(s)) for s in range(50)]
    assert len(set(draws)) > 2  # a high temperature flattens


def test_a_model_trained_on_a_tiny_repetitive_corpus_continues_it_at_temperature_zero():
    corpus = ["the cat sat on the mat and the dog sat on the log"] * 60
    cfg = load_config(
        LMConfig,
        overrides=TINY
        + [
            "model.embed_dim=32",
            "model.hidden_size=32",
            "train.epochs=40",
            "train.lr=1e-2",
            "train.patience=40",
            "split.val=0.1",
            "generate.max_new_tokens=8",
        ],
    )
    p = prepare_lm(tables(corpus, corpus[:2]), cfg)
    pipe = LMPipeline(cfg, p.preprocessor)
    fit(pipe.model, p.batches("train", 4, 8), p.batches("val", 4, 8), cfg.train, loss_fn=lm_loss, progress=False)
    out = pipe.predict(
        pd.DataFrame({"prompt": ["the cat sat on", "the cat sat on the mat and the dog"]}), temperature=0.0
    )
    assert out.text.tolist() == ["the mat and the dog sat on the", "sat on the log"]
    assert out.note.tolist() == ["stopped at max_new_tokens=8", ""]  # the second stopped at end of text
    assert out.n_tokens.tolist() == [8, 4]
    # a seed makes sampling reproducible; the prompt with no known word says so
    a = pipe.predict(pd.DataFrame({"prompt": ["the", "zzz qqq", "", None]}), temperature=1.5, seed=7)
    b = pipe.predict(pd.DataFrame({"prompt": ["the", "zzz qqq", "", None]}), temperature=1.5, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert "no word of the prompt" in a.note.iloc[1] and a.note.iloc[2].startswith("empty prompt")
    assert pd.isna(a.text.iloc[3]) and a.note.iloc[3].startswith("empty text")
    with pytest.raises(DataError, match="top_p"):
        pipe.predict(pd.DataFrame({"prompt": ["the"]}), top_p=2.0)
    with pytest.raises(DataError, match="unknown generation setting 'temp'"):
        pipe.predict(pd.DataFrame({"prompt": ["the"]}), temp=1.0)


def test_the_ngram_serves_as_a_language_model_with_the_perplexity_it_was_judged_by(tmp_path):
    """The n-gram registered when the model loses to it: its log-likelihood of a stream is the
    perplexity the gate compared (exactly, after a save and a load, which fits it again from the
    saved documents), and it continues prompts with the model's columns and settings."""
    from rnnpipe.pipelines.lm.artefact import NgramPipeline

    corpus = ["the cat sat on the mat and the dog sat on the log", "a dog and a cat"] * 30
    cfg = load_config(LMConfig, overrides=[*TINY, "split.val=0.2", "generate.max_new_tokens=8"])
    p = prepare_lm(tables(corpus, ["the dog sat on the mat", "a cat sat on a zebra"]), cfg)
    ngram = KneserNeyLM().fit(p.docs("train"), p.docs("val"))
    saved = NgramPipeline.of(cfg, p, ngram).save(tmp_path / "ngram")
    pipe = LMPipeline.load(saved)
    assert isinstance(pipe, NgramPipeline) and pipe.model is None
    assert (pipe.ngram.order_, pipe.ngram.discount_) == (ngram.order_, ngram.discount_)
    for part in ("val", "test"):
        lp, n = pipe.log_likelihood(p.streams[part])
        ppl, _, n_ngram = ngram.perplexity(p.docs(part))
        assert n == n_ngram and math.exp(-lp / n) == pytest.approx(ppl, rel=1e-12)
    out = pipe.predict(pd.DataFrame({"prompt": ["the cat sat on", "zzz", None]}), temperature=0.0)
    assert list(out.columns) == ["text", "n_tokens", "note"]
    # greedy: "the" after "sat on", then "log" and "mat" tie (the first in order wins), then the end
    assert out.text.iloc[0] == "the log" and out.n_tokens.iloc[0] == 2 and out.note.iloc[0] == ""
    assert "no word of the prompt" in out.note.iloc[1] and out.n_tokens.iloc[1] > 0
    assert pd.isna(out.text.iloc[2])
    sampled = [pipe.predict(pd.DataFrame({"prompt": ["a"]}), temperature=1.0, seed=s).text.iloc[0] for s in (1, 1, 2)]
    assert sampled[0] == sampled[1] and set(" ".join(sampled).split()) <= set(p.preprocessor.vocab_.tokens)
