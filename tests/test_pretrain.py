"""The reviews classifier's pretraining and wide part: the language model learns from
training text only (never val or test), its weights reach the classifier, and the wide
part starts as the TF-IDF baseline's own regression."""

import numpy as np
import pandas as pd
import pytest
import torch

from rnnpipe.config import load_config
from rnnpipe.pipelines.reviews.artefact import ReviewsPipeline
from rnnpipe.pipelines.reviews.config import ReviewsConfig
from rnnpipe.pipelines.reviews.prepare import prepare_reviews
from rnnpipe.pipelines.reviews.pretrain import pretrain_encoder, pretraining_texts
from rnnpipe.text import TextTable, sparse_rows

TINY = [
    "model.hidden_size=8",
    "embed.dim=8",
    "text.min_freq=1",
    "pretrain.epochs=1",
    "pretrain.bptt=8",
    "pretrain.batch_size=4",
    "train.batch_size=8",
    "split.val=0.2",
    "split.test=0.2",
]


def reviews_table():
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for i in range(60):
        pos = i % 2 == 0
        word = rng.choice(["great", "lovely", "tasty"] if pos else ["awful", "stale", "bland"])
        texts.append(f"the tea was {word} review{i}")  # review{i}: a word only this text holds
        labels.append("pos" if pos else "neg")
    return {"data": TextTable(texts, labels, [str(i) for i in range(60)], None, "mem")}


@pytest.fixture(scope="module")
def prepared():
    cfg = load_config(
        ReviewsConfig,
        overrides=TINY + ["pretrain.enabled=true", "model.highway=none", "model.cell=gru", "model.bidirectional=true"],
    )
    return cfg, prepare_reviews(reviews_table(), cfg)


def test_pretraining_reads_training_text_only(prepared):
    cfg, p = prepared
    learn, hold = pretraining_texts(p, cfg)
    train = set(p.texts["train"])
    assert set(learn) | set(hold) == train and not set(learn) & set(hold)
    assert not (set(learn) | set(hold)) & (set(p.texts["val"]) | set(p.texts["test"]))
    vocab = set(p.preprocessor.vocab_.tokens)
    for part in ("val", "test"):  # a word only a val or test text holds is not in the vocabulary
        for text in p.texts[part]:
            assert text.split()[-1] not in vocab
    pre = pretrain_encoder(p, cfg)
    assert pre.metrics["pretrain_texts"] == len(learn)
    assert pre.metrics["pretrain_tokens"] == p.preprocessor.encode(learn).token_count()
    assert pre.metrics["pretrain_tokens"] < p.encoded["train"].token_count()  # the holdout is aside


def test_pretrained_weights_reach_the_classifier(prepared):
    cfg, p = prepared
    pre = pretrain_encoder(p, cfg)
    pipe = ReviewsPipeline.from_prepared(cfg, p, pre)
    emb = pipe.model.embedding.weight.detach()
    assert torch.equal(emb[1:], pre.embedding[1:]) and not emb[0].any()  # <pad> stays zero
    rnn = pipe.model.encoder.rnn.state_dict()
    assert set(rnn) == set(pre.encoder)  # bidirectional: forward and backward language models
    assert all(torch.equal(rnn[k], v) for k, v in pre.encoder.items())
    plain = ReviewsPipeline.from_prepared(cfg, p, None)
    assert not torch.equal(plain.model.encoder.rnn.state_dict()["weight_hh_l0"], rnn["weight_hh_l0"])


def test_a_one_direction_encoder_pretrains_one_language_model():
    cfg = load_config(ReviewsConfig, overrides=TINY + ["pretrain.enabled=true", "model.highway=none"])
    assert (cfg.model.cell, cfg.model.bidirectional) == ("lstm", False)  # the default encoder
    p = prepare_reviews(reviews_table(), cfg)
    pre = pretrain_encoder(p, cfg)
    assert "pretrain_forward_val_perplexity" in pre.metrics
    assert not any("backward" in k for k in pre.metrics)
    assert pre.encoder and not any(k.endswith("_reverse") for k in pre.encoder)
    rnn = ReviewsPipeline.from_prepared(cfg, p, pre).model.encoder.rnn.state_dict()
    assert all(torch.equal(rnn[k], v) for k, v in pre.encoder.items())


def test_wide_part_starts_as_the_tfidf_regression_and_stays_fixed():
    cfg = load_config(ReviewsConfig, overrides=TINY + ["model.highway=linear"])
    p = prepare_reviews(reviews_table(), cfg)
    pipe = ReviewsPipeline.from_prepared(cfg, p, None)
    part = pipe.model.linear_part
    part.warm_start()
    feats = p.tfidf.features(p.texts["val"])
    logits = part(sparse_rows(feats, np.arange(feats.shape[0]), "cpu"))
    # two classes: the wide part's logit difference is the baseline's decision function
    expect = p.tfidf.model.decision_function(feats)
    assert np.allclose((logits[:, 1] - logits[:, 0]).detach().numpy(), expect, atol=1e-4)
    part.after_warm_start()
    assert not part.weight.requires_grad and not part.bias.requires_grad


def test_tfidf_baseline_pipeline_answers_like_the_baseline_and_round_trips(tmp_path):
    cfg = load_config(ReviewsConfig, overrides=TINY + ["model.highway=none"])
    p = prepare_reviews(reviews_table(), cfg)
    pipe = ReviewsPipeline.tfidf_baseline(cfg, p)
    texts = p.texts["test"] + ["the tea was great and lovely", "nothingknown"]
    expect = p.tfidf.predict_proba(texts)
    got = pipe.predict(pd.DataFrame({"text": texts}))
    assert np.allclose(got[["prob_neg", "prob_pos"]].to_numpy(), expect, atol=1e-5)
    assert got["note"].iloc[-1] == "no word is in the vocabulary: the answer is a guess"
    loaded = ReviewsPipeline.load(pipe.save(tmp_path / "pipe"))
    assert loaded.baseline == "tfidf" and not loaded.model.recurrent
    pd.testing.assert_frame_equal(loaded.predict(pd.DataFrame({"text": texts})), got)
