"""Scoring text classes, for any number of classes: the decision rule (argmax, or a tuned
threshold for two), metrics per class and macro, the paired bootstrap of two classifiers on
the same texts, and the confusion matrix. Imports no pipeline code."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from rnnpipe.evaluation import subplots


def decide(proba: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class codes from probabilities: argmax, or for two classes with a `threshold`, class 1
    when its probability reaches the threshold."""
    if threshold is not None and proba.shape[1] == 2:
        return (proba[:, 1] >= threshold).astype(np.int64)
    return proba.argmax(axis=1)


def tune_binary_threshold(y: np.ndarray, p1: np.ndarray) -> float:
    """The threshold on P(class 1) with the highest macro-F1 on (validation) data; ties go to
    the one nearest 0.5."""
    y = np.asarray(y).astype(int)
    candidates = np.unique(np.concatenate([np.quantile(p1, np.linspace(0, 1, 257)), [0.5]]))
    best, best_t = -1.0, 0.5
    for t in sorted(candidates, key=lambda t: abs(t - 0.5)):
        pred = p1 >= t
        tp, fp, fn = np.sum(pred & (y == 1)), np.sum(pred & (y == 0)), np.sum(~pred & (y == 1))
        tn = len(y) - tp - fp - fn
        f1_1 = 2 * tp / max(2 * tp + fp + fn, 1)
        f1_0 = 2 * tn / max(2 * tn + fn + fp, 1)
        if (f1_0 + f1_1) / 2 > best + 1e-12:
            best, best_t = (f1_0 + f1_1) / 2, float(t)
    return best_t


def metric_key(name: str) -> str:
    """A class name as MLflow accepts it in a metric key."""
    return "".join(ch if ch.isalnum() or ch in "_-. /" else "_" for ch in str(name))


def text_classification_metrics(
    y: np.ndarray, proba: np.ndarray, pred: np.ndarray, classes: Sequence[str], prefix: str
) -> dict[str, float]:
    """Accuracy, macro-F1, F1 / precision / recall of each class (`{prefix}_f1.<class>`) and
    ROC-AUC (binary: of class 1; several classes: one-vs-rest macro average)."""
    y, pred = np.asarray(y), np.asarray(pred)
    labels = list(range(len(classes)))
    out = {
        "accuracy": accuracy_score(y, pred),
        "macro_f1": f1_score(y, pred, labels=labels, average="macro", zero_division=0),
    }
    f1 = f1_score(y, pred, labels=labels, average=None, zero_division=0)
    prec = precision_score(y, pred, labels=labels, average=None, zero_division=0)
    rec = recall_score(y, pred, labels=labels, average=None, zero_division=0)
    for i, c in enumerate(classes):
        out[f"f1.{metric_key(c)}"], out[f"precision.{metric_key(c)}"] = f1[i], prec[i]
        out[f"recall.{metric_key(c)}"] = rec[i]
    present = np.unique(y)
    if len(classes) == 2 and len(present) == 2:
        out["roc_auc"] = roc_auc_score(y, proba[:, 1])
    elif len(present) == len(classes) > 2:
        out["roc_auc"] = roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=labels)
    else:
        out["roc_auc"] = float("nan")
    return {f"{prefix}_{k}": float(v) for k, v in out.items()}


def paired_bootstrap_macro_f1(
    y: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    n_classes: int,
    replicates: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Macro-F1 of `pred_a` minus that of `pred_b` on the same rows, and a percentile interval
    of that difference from a paired bootstrap: each replicate draws the rows with replacement
    once and scores both predictions on the draw, so what the two get right together cancels
    (Efron & Tibshirani 1993; the usual check that one classifier beats another on one test
    set). Per class F1 = 2tp / (2tp + fp + fn), 0 where a class is neither present nor
    predicted, as `text_classification_metrics` scores it. Returns diff, ci_low, ci_high and
    p_not_better (the share of replicates where a does not beat b)."""
    y, a, b = (np.asarray(v, dtype=np.int64) for v in (y, pred_a, pred_b))
    n = len(y)
    if n == 0:
        raise ValueError("no rows to compare")
    ind = []  # (n, 6 per class) indicators: tp, fp, fn of a, then of b
    for c in range(n_classes):
        t = y == c
        for p in (a, b):
            q = p == c
            ind += [t & q, ~t & q, t & ~q]
    ind = np.stack(ind, axis=1).astype(np.float64)

    def macro(counts: np.ndarray) -> np.ndarray:  # (R, 6K) -> (R,) a's minus b's macro-F1
        c = counts.reshape(len(counts), n_classes, 2, 3)
        tp, fp, fn = c[..., 0], c[..., 1], c[..., 2]
        den = 2 * tp + fp + fn
        f1 = np.divide(2 * tp, den, out=np.zeros_like(den), where=den > 0).mean(axis=1)
        return f1[:, 0] - f1[:, 1]

    rng = np.random.default_rng(seed)
    per = max(1, 4_000_000 // n)  # replicates per draw: about 32 MB of weights at a time
    diffs = []
    for start in range(0, replicates, per):
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=min(per, replicates - start))
        diffs.append(macro(w @ ind))
    diffs = np.concatenate(diffs)
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return {
        "diff": float(macro(ind.sum(axis=0, keepdims=True))[0]),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p_not_better": float(np.mean(diffs <= 0)),
    }


def plot_confusion_matrix(y: np.ndarray, pred: np.ndarray, classes: Sequence[str], title: str):
    """Counts of actual (rows) by predicted (columns) class, with row shares in brackets."""
    k = len(classes)
    m = confusion_matrix(y, pred, labels=list(range(k)))
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    size = 2.6 + 0.7 * k
    fig, ax = subplots(figsize=(size + 0.6, size))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(m):
        ax.text(
            j,
            i,
            f"{v:,}\n({share[i, j]:.0%})",
            ha="center",
            va="center",
            fontsize=8,
            color="white" if share[i, j] > 0.5 else "black",
        )
    ax.set_xticks(range(k), [str(c) for c in classes], rotation=30 if k > 3 else 0)
    ax.set_yticks(range(k), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
