"""The classifier and its baselines on the same test texts: metrics per class, the paired
bootstrap against TF-IDF, confusion matrices, the confidently wrong reviews."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rnnpipe.pipelines.reviews.artefact import ReviewsPipeline
from rnnpipe.pipelines.reviews.baselines import (
    MajorityClass,
)
from rnnpipe.pipelines.reviews.metrics import (
    decide,
    paired_bootstrap_macro_f1,
    text_classification_metrics,
    tune_binary_threshold,
)
from rnnpipe.pipelines.reviews.prepare import ReviewsPrepared, _tuned


@dataclass
class ReviewsEvaluation:
    metrics: dict[str, float]
    predictions: dict[str, np.ndarray]  # method -> test class codes
    probabilities: dict[str, np.ndarray]  # method -> test probabilities

    def comparison(self) -> list[dict[str, Any]]:
        rows = []
        for method, pre in (("model", ""), ("tfidf", "tfidf_"), ("majority", "majority_")):
            rows.append(
                {
                    "method": method,
                    **{k: round(self.metrics[f"{pre}test_{k}"], 4) for k in ("accuracy", "macro_f1", "roc_auc")},
                    "val_macro_f1": round(self.metrics.get(f"{pre}val_macro_f1", float("nan")), 4),
                }
            )
        return rows

    def standing(self) -> str:
        m, t = self.metrics["test_macro_f1"], self.metrics["tfidf_test_macro_f1"]
        verdict = "reaches" if m >= t else "does NOT reach"
        lo, hi = self.metrics["test_macro_f1_minus_tfidf_ci_low"], self.metrics["test_macro_f1_minus_tfidf_ci_high"]
        noise = (
            "within the noise of this test set"
            if lo <= 0 <= hi
            else "beyond the noise of this test set"
            if lo > 0
            else "a real shortfall on this test set"
        )
        return (
            f"test macro-F1 {m:.3f} (accuracy {self.metrics['test_accuracy']:.3f}) vs TF-IDF + "
            f"logistic regression {t:.3f} ({self.metrics['tfidf_test_accuracy']:.3f}) and majority "
            f"{self.metrics['majority_test_macro_f1']:.3f}: the recurrent model {verdict} the baseline; "
            f"the difference {m - t:+.3f} (95% paired-bootstrap interval {lo:+.3f} to {hi:+.3f}) is {noise}"
        )


def evaluate_reviews(pipeline: ReviewsPipeline, p: ReviewsPrepared) -> ReviewsEvaluation:
    """The model, TF-IDF + logistic regression and the majority class on test. Everything
    chosen is chosen on validation by the same rule for each method: the binary decision
    threshold (classify.decision=tuned) and the baseline's regularisation C. The model's
    threshold is stored in `pipeline.threshold` and travels with the registered model. The
    baseline was fitted when the data was prepared (`fit_tfidf_baseline`)."""
    tuned = _tuned(pipeline.config, p.classes)

    def threshold(proba_val: np.ndarray) -> float | None:
        return tune_binary_threshold(p.y["val"], proba_val[:, 1]) if tuned else None

    metrics: dict[str, float] = {}
    preds, probas = {}, {}

    def score(name: str, proba_val: np.ndarray, proba_test: np.ndarray, thr: float | None) -> None:
        pre = f"{name}_" if name else ""
        key = name or "model"
        metrics.update(
            text_classification_metrics(p.y["val"], proba_val, decide(proba_val, thr), p.classes, f"{pre}val")
        )
        preds[key] = decide(proba_test, thr)
        probas[key] = proba_test
        metrics.update(text_classification_metrics(p.y["test"], proba_test, preds[key], p.classes, f"{pre}test"))
        if thr is not None:
            metrics[f"{pre}threshold"] = thr

    ngrams = p.ngrams or {}
    pv = pipeline.predict_proba(p.encoded["val"], ngrams.get("val"))
    pt = pipeline.predict_proba(p.encoded["test"], ngrams.get("test"))
    pipeline.threshold = threshold(pv)
    score("", pv, pt, pipeline.threshold)

    b = p.tfidf
    score("tfidf", b.predict_proba(p.texts["val"]), b.predict_proba(p.texts["test"]), p.tfidf_threshold)
    metrics["tfidf_C"] = b.C

    maj = MajorityClass().fit(p.texts["train"], p.y["train"])
    score("majority", maj.predict_proba(p.texts["val"]), maj.predict_proba(p.texts["test"]), None)
    # is the difference from the baseline more than this test set's noise? (the gate still
    # compares the point figures; this says how much one run's verdict can be trusted)
    boot = paired_bootstrap_macro_f1(
        p.y["test"], preds["model"], preds["tfidf"], len(p.classes), seed=pipeline.config.train.seed
    )
    metrics.update(
        {
            "test_macro_f1_minus_tfidf": boot["diff"],
            "test_macro_f1_minus_tfidf_ci_low": boot["ci_low"],
            "test_macro_f1_minus_tfidf_ci_high": boot["ci_high"],
            "test_macro_f1_p_not_better_than_tfidf": boot["p_not_better"],
        }
    )
    return ReviewsEvaluation(metrics, preds, probas)


def confidently_wrong(p: ReviewsPrepared, ev: ReviewsEvaluation, n: int = 25, width: int = 400) -> pd.DataFrame:
    """The test reviews the model got wrong with the most confidence in its answer."""
    pred, proba = ev.predictions["model"], ev.probabilities["model"]
    wrong = np.flatnonzero(pred != p.y["test"])
    conf = proba[wrong, pred[wrong]]
    top = wrong[np.argsort(-conf, kind="stable")[:n]]
    return pd.DataFrame(
        {
            "id": [p.ids["test"][i] for i in top],
            "actual": [p.classes[p.y["test"][i]] for i in top],
            "predicted": [p.classes[pred[i]] for i in top],
            "confidence": np.round(proba[top, pred[top]], 4),
            "tfidf_predicted": [p.classes[ev.predictions["tfidf"][i]] for i in top],
            "text": [(t[:width] + "...") if len(t) > width else t for t in (p.texts["test"][i] for i in top)],
        }
    )
