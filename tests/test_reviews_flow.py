"""The review-sentiment flow end to end on a slice of the bundled reviews (Prefect test
harness, MLflow), and the registered pyfunc on raw strings."""

import hashlib

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO
from mlflow.tracking import MlflowClient

from rnnpipe.config import load_config, to_dict
from rnnpipe.pipelines.reviews.artefact import ReviewsPipeline, text_loss
from rnnpipe.pipelines.reviews.config import ReviewsConfig
from rnnpipe.pipelines.reviews.evaluation import evaluate_reviews
from rnnpipe.pipelines.reviews.prepare import load_reviews, prepare_reviews
from rnnpipe.training import fit

pytestmark = pytest.mark.slow

SMALL = [
    "train.epochs=2",
    "train.batch_size=32",
    "model.hidden_size=8",
    "embed.dim=32",
    "text.max_len=80",
    "text.min_freq=2",
]


@pytest.fixture(scope="module")
def slice_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("reviews")
    train = pd.read_parquet(REPO / "data" / "reviews_train.parquet").head(400)
    test = pd.read_parquet(REPO / "data" / "reviews_test.parquet").head(120)
    train.to_parquet(root / "train.parquet")
    test.to_csv(root / "test.csv", index=False)  # a CSV test file works as well
    rng = np.random.default_rng(0)
    words = ["the", "good", "great", "bad", "not", "taste", "love", "product", "NotInVocab"]
    (root / "vectors.txt").write_text(
        "".join(f"{w} {' '.join(f'{x:.4f}' for x in rng.normal(size=16))}\n" for w in words)
    )
    return root


def test_reviews_flow_registers_a_model_that_classifies_raw_text(prefect_harness, slice_files):
    from rnnpipe.flows.reviews import train_reviews

    cfg = load_config(
        ReviewsConfig,
        overrides=SMALL
        + [
            f"data.path={slice_files / 'train.parquet'}",
            f"data.test_path={slice_files / 'test.csv'}",
            "data.id_col=review_id",  # with a user's own file the id column is mapped, not assumed
            f"embed.path={slice_files / 'vectors.txt'}",
            "register.experiment=e2e-reviews",
            "register.model_name=e2e-reviews",
        ],
    )
    out = train_reviews(config=to_dict(cfg))
    client = MlflowClient()
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    m, params = run.data.metrics, run.data.params
    for k in (
        "test_accuracy",
        "test_macro_f1",
        "test_f1.great",
        "test_f1.other",
        "test_roc_auc",
        "tfidf_test_macro_f1",
        "tfidf_test_accuracy",
        "majority_test_macro_f1",
        "train_tokens_per_s",
        "embedding_coverage_vocab",
        "embedding_coverage_tokens",
        "val_macro_f1",
        "tfidf_val_macro_f1",
    ):
        assert k in m, k
    assert m["embedding_words_found"] == 8  # all but "NotInVocab" (not in the reviews, in any case)
    assert params["embed.path"].endswith("vectors.txt") and run.data.tags["data_fingerprint"]
    assert run.data.tags["embedding_sha256"] == hashlib.sha256((slice_files / "vectors.txt").read_bytes()).hexdigest()
    assert 0 < m["majority_test_macro_f1"] < 0.5  # one class predicted: half of macro-F1 at most
    diff = m["test_macro_f1_minus_tfidf"]
    assert diff == pytest.approx(m["test_macro_f1"] - m["tfidf_test_macro_f1"], abs=1e-9)
    assert m["test_macro_f1_minus_tfidf_ci_low"] <= diff <= m["test_macro_f1_minus_tfidf_ci_high"]
    assert "95% paired-bootstrap interval" in run.data.tags["mlflow.note.content"]
    best = max(m["tfidf_test_macro_f1"], m["majority_test_macro_f1"])
    assert out["alias"] == ("champion" if m["test_macro_f1"] >= best else "challenger")
    assert run.data.tags["mlflow.note.content"].startswith("test macro-F1")
    arts = {a.path for a in client.list_artifacts(out["run_id"], "plots")}
    assert {
        "plots/confusion_test.png",
        "plots/confusion_test_tfidf.png",
        "plots/test_model_vs_baselines.png",
        "plots/loss_curves.png",
    } <= arts
    wrong = pd.read_csv(
        mlflow.artifacts.download_artifacts(run_id=out["run_id"], artifact_path="errors/confidently_wrong.csv")
    )
    assert (wrong.actual != wrong.predicted).all() and wrong.confidence.is_monotonic_decreasing
    assert wrong.id.str.startswith("test-").all()

    served = mlflow.pyfunc.load_model(f"models:/e2e-reviews/{out['version']}")
    texts = [
        "Absolutely delicious, my kids love it and I will buy again!",
        "",
        "   ",
        "stale, bland and overpriced. " * 200,
        "Très bon café, je recommande",
        "很好吃，推荐",
        "☺☺☺ ...",
    ]
    got = served.predict(pd.DataFrame({"text": texts}))
    assert list(got.columns) == [
        "label",
        "prob_great",
        "prob_other",
        "threshold_other",
        "n_tokens",
        "unknown_share",
        "note",
    ]
    assert got.label[0] in ("great", "other") and got.note[0] == ""
    assert pd.isna(got.label[1]) and got.note[1].startswith("empty text") and pd.isna(got.label[2])
    assert np.isnan(got.prob_great[1])
    assert "read only the first 80 of 800 tokens" in got.note[3]
    assert got.label[4] in ("great", "other") and got.unknown_share[4] > 0.5
    assert "no word is in the vocabulary" in got.note[5]
    assert "no words found" in got.note[6]
    ok = got.label.notna()
    np.testing.assert_allclose(got.prob_great[ok] + got.prob_other[ok], 1.0, rtol=1e-6)
    # the output explains each label: "other" exactly when prob_other reaches the threshold
    assert got.threshold_other.nunique() == 1 and 0 < got.threshold_other[0] < 1
    assert ((got.prob_other[ok] >= got.threshold_other[ok]) == (got.label[ok] == "other")).all()

    # the registered model answers like the same config trained in memory
    p = prepare_reviews(load_reviews(cfg), cfg)
    local = ReviewsPipeline.from_prepared(cfg, p)
    fit(local.model, p.batches("train"), p.batches("val"), cfg.train, loss_fn=text_loss(cfg, p), progress=False)
    ev = evaluate_reviews(local, p)
    assert ev.metrics["test_macro_f1"] == pytest.approx(m["test_macro_f1"])
    want = local.predict(pd.DataFrame({"text": texts}))
    np.testing.assert_allclose(got.prob_great[ok], want.prob_great[ok], rtol=1e-5)
    assert (got.label[ok] == want.label[ok]).all()


def test_a_model_that_loses_to_tfidf_leaves_the_baseline_to_serve(prefect_harness, slice_files):
    """A gate no recurrent model can pass here (it must beat TF-IDF by 90%): the run registers
    the TF-IDF baseline as a version of the same model, and that version serves raw text."""
    from rnnpipe.flows.reviews import train_reviews

    cfg = load_config(
        ReviewsConfig,
        overrides=SMALL
        + [
            "train.epochs=1",
            f"data.path={slice_files / 'train.parquet'}",
            f"data.test_path={slice_files / 'test.csv'}",
            "register.baseline_margin=-0.9",
            "register.experiment=e2e-reviews",
            "register.model_name=e2e-lost",
        ],
    )
    out = train_reviews(config=to_dict(cfg))
    client = MlflowClient()
    m = client.get_run(out["run_id"]).data.metrics
    assert out["alias"] == "challenger" and "[baseline]" in out["reason"]
    assert out["baseline_alias"] == "champion" and "tfidf baseline itself" in out["baseline_reason"]
    base = client.get_model_version_by_alias("e2e-lost", "baseline")
    assert base.tags["baseline"] == "tfidf" and str(base.version) == out["baseline_version"]
    assert float(base.tags["test_macro_f1"]) == pytest.approx(m["tfidf_test_macro_f1"], rel=1e-5)
    served = mlflow.pyfunc.load_model("models:/e2e-lost@champion")
    test = pd.read_csv(slice_files / "test.csv")
    got = served.predict(pd.DataFrame({"text": test[cfg.data.text_col]}))
    assert list(got.columns) == [
        "label",
        "prob_great",
        "prob_other",
        "threshold_other",
        "n_tokens",
        "unknown_share",
        "note",
    ]
    # it is the baseline: its test macro-F1 through the served path is the run's TF-IDF figure
    from sklearn.metrics import f1_score

    f1 = f1_score(test[cfg.data.label_col], got.label, average="macro")
    assert f1 == pytest.approx(m["tfidf_test_macro_f1"], abs=1e-6)


def test_train_reviews_cli_reports_bad_rows_without_a_traceback(prefect_harness, tmp_path):
    from click.testing import CliRunner

    from rnnpipe.cli import cli

    bad = tmp_path / "bad.csv"
    bad.write_text("review,score\nlovely,great\n,other\n")
    result = CliRunner().invoke(
        cli, ["train", "reviews", "--set", f"data.path={bad}", "--set", "data.test_path=''", "--set", "data.id_col=''"]
    )
    assert result.exit_code == 2
    assert "bad.csv, row 2 (line 3): column 'review': empty text" in result.output
    assert "Traceback" not in result.output


LM_TINY = [
    "train.epochs=1",
    "train.batch_size=8",
    "stream.bptt=20",
    "model.embed_dim=16",
    "model.hidden_size=16",
    "model.num_layers=1",
    "generate.max_new_tokens=4",
    "register.experiment=e2e-reviews",
]


def test_a_registered_language_model_starts_the_classifier_unless_it_saw_val_or_test(prefect_harness, slice_files):
    """`pretrain.model`: a word-level LM trained on other reviews than the classifier's gives
    the embedding (word by word) and the encoder, whose shape the run takes; an LM that learned
    from the classifier's validation texts is refused, naming one."""
    from rnnpipe.errors import DataError
    from rnnpipe.flows.lm import train_lm
    from rnnpipe.flows.reviews import train_reviews
    from rnnpipe.pipelines.lm.artefact import LMConfig
    from rnnpipe.pipelines.reviews.pretrain import from_language_model
    from rnnpipe.registry import load_pipeline, resolve_model

    other = pd.read_parquet(REPO / "data" / "reviews_train.parquet").iloc[400:700]
    # none of the classifier's texts (the data repeats a few reviews word for word: the check finds them)
    mine = pd.concat(
        [pd.read_parquet(slice_files / "train.parquet").review, pd.read_csv(slice_files / "test.csv").review]
    )
    other[~other.review.isin(mine)][["review"]].to_parquet(slice_files / "unlabelled.parquet")
    lm_cfg = load_config(
        LMConfig,
        overrides=LM_TINY
        + [f"data.path={slice_files / 'unlabelled.parquet'}", "data.test_path=''", "register.model_name=e2e-lm"],
    )
    lm_out = train_lm(config=to_dict(lm_cfg))
    spec = f"e2e-lm/{lm_out['version']}"
    cfg = load_config(
        ReviewsConfig,
        overrides=SMALL
        + [
            "train.epochs=1",
            f"data.path={slice_files / 'train.parquet'}",
            f"data.test_path={slice_files / 'test.csv'}",
            "data.id_col=review_id",
            f"pretrain.model={spec}",
            "register.experiment=e2e-reviews",
            "register.model_name=e2e-from-lm",
        ],
    )
    p = prepare_reviews(load_reviews(cfg), cfg)
    adopted, pre = from_language_model(p, cfg)
    assert (adopted.model.cell, adopted.model.hidden_size, adopted.model.bidirectional, adopted.embed.dim) == (
        "lstm",
        16,
        False,
        16,
    )
    lm = load_pipeline(resolve_model(spec), "lm")
    lm_index, emb = lm.preprocessor.vocab_.index, lm.model.embedding.weight.detach()
    shared = [(i, lm_index[t]) for i, t in enumerate(p.preprocessor.vocab_.tokens) if i > 1 and t in lm_index]
    assert len(shared) > 50 and pre.metrics["pretrain_embedding_words_found"] == len(shared)
    assert all(torch.equal(pre.embedding[i], emb[j]) for i, j in shared)  # word by word, not row by row
    assert all(torch.equal(pre.encoder[k], v) for k, v in lm.model.encoder.rnn.state_dict().items())

    out = train_reviews(config=to_dict(cfg))
    run = MlflowClient().get_run(out["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["pretrain_model"] == f"e2e-lm v{lm_out['version']}"
    assert (run.data.params["model.cell"], run.data.params["model.bidirectional"]) == ("lstm", "False")
    served = mlflow.pyfunc.load_model(f"models:/e2e-from-lm/{out['version']}")
    assert served.predict(pd.DataFrame({"text": ["lovely tea", "stale and bland"]})).label.notna().all()

    # an LM whose training part holds the classifier's validation reviews is refused
    seen = pd.read_parquet(slice_files / "train.parquet")[["review"]]
    seen.to_parquet(slice_files / "seen.parquet")
    leaky = train_lm(
        config=to_dict(
            load_config(
                LMConfig,
                overrides=LM_TINY
                + [
                    f"data.path={slice_files / 'seen.parquet'}",
                    "data.test_path=''",
                    "split.val=0.1",
                    "split.test=0.1",
                    "register.model_name=e2e-lm-leaky",
                ],
            )
        )
    )
    cfg.pretrain.model = f"e2e-lm-leaky/{leaky['version']}"
    with pytest.raises(DataError, match=r"learned from \d+ of this run's \d+ val reviews \(e\.g\. 'train-"):
        from_language_model(p, cfg)


def test_train_reviews_refuses_an_unknown_language_model_before_any_flow(tmp_path):
    from click.testing import CliRunner

    from rnnpipe.cli import cli

    result = CliRunner().invoke(cli, ["train", "reviews", "--set", "pretrain.model=no-such-lm@champion"])
    assert result.exit_code == 2, result.output
    assert result.output.count("error: model 'no-such-lm@champion': no registered model named 'no-such-lm'") == 1
    assert "Traceback" not in result.output
