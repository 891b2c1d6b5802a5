"""Binary warnings scored: the threshold chosen on validation, F1 and friends, alert lead times."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

from rnnpipe.errors import DataError
from rnnpipe.evaluation import subplots


def choose_threshold(y: np.ndarray, score: np.ndarray, objective: str = "f1", target_recall: float = 0.8) -> float:
    """A decision threshold on validation scores: the one with the highest F1, or the highest
    threshold that still reaches `target_recall`. Predict positive when score >= threshold.
    Always finite: without a positive there is nothing to choose on, and that is an error
    (`rnnpipe.pipelines.monitor.prepare.check_event_counts` refuses such a split before training)."""
    y = np.asarray(y)
    if y.sum() == 0:
        raise DataError("no event among the validation windows: a decision threshold cannot be chosen")
    precision, recall, thresholds = precision_recall_curve(y, score)
    precision, recall = precision[:-1], recall[:-1]
    if objective == "recall":
        ok = np.flatnonzero(recall >= target_recall)
        return float(thresholds[ok[-1]]) if len(ok) else float(thresholds[0])
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    return float(thresholds[int(np.argmax(f1))])


def classification_metrics(
    y: np.ndarray, score: np.ndarray, threshold: float, prefix: str = "test", suffix: str = ""
) -> dict[str, float]:
    """F1, precision and recall of the event class, macro-F1, ROC-AUC and PR-AUC, plus the
    confusion counts. Names like `test_f1`, `test_f1_onset` (suffix "_onset").

    Undefined is NaN, never 0: without an event, F1, recall and the AUCs are NaN (and
    precision too when nothing was flagged), so a gate can tell "cannot judge" from "wrong"."""
    y = np.asarray(y).astype(int)
    pred = (np.asarray(score) >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    events = tp + fn > 0
    nan = float("nan")
    out = {
        "f1": f1_score(y, pred, zero_division=0) if events else nan,
        "precision": precision_score(y, pred, zero_division=0) if events or tp + fp > 0 else nan,
        "recall": recall_score(y, pred, zero_division=0) if events else nan,
        "macro_f1": f1_score(y, pred, average="macro", zero_division=0),
        "roc_auc": roc_auc_score(y, score) if both else float("nan"),
        "pr_auc": average_precision_score(y, score) if both else float("nan"),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }
    return {f"{prefix}_{k}{suffix}": float(v) for k, v in out.items()}


def alert_lead_times(
    events: np.ndarray, offsets: np.ndarray, ends: np.ndarray, alerts: np.ndarray, horizon: int
) -> np.ndarray:
    """For every event onset (event now, none at the previous step) that the scored windows
    could have warned of, the lead in steps of the first alert among the windows ending in
    the `horizon` steps before it; 0 where no alert fired in time."""
    alert_at = np.zeros(len(events), dtype=bool)
    scored = np.zeros(len(events), dtype=bool)
    alert_at[ends[alerts]] = True
    scored[ends] = True
    prev = np.r_[np.nan, events[:-1]]
    prev[offsets[:-1]] = np.nan
    onsets = np.flatnonzero((events == 1) & (prev == 0))
    leads = []
    for t in onsets:
        lo = max(t - horizon, int(offsets[np.searchsorted(offsets, t, side="right") - 1]))
        if not scored[lo:t].any():
            continue
        fired = np.flatnonzero(alert_at[lo:t])
        leads.append(t - (lo + fired[0]) if len(fired) else 0)
    return np.asarray(leads, dtype=np.int64)


def plot_confusion(metrics: dict[str, float], prefix: str = "test", suffix: str = "", title: str = "confusion matrix"):
    m = np.array(
        [
            [metrics[f"{prefix}_tn{suffix}"], metrics[f"{prefix}_fp{suffix}"]],
            [metrics[f"{prefix}_fn{suffix}"], metrics[f"{prefix}_tp{suffix}"]],
        ]
    )
    fig, ax = subplots(figsize=(4.2, 3.8))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, f"{int(v):,}", ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    ax.set_xticks([0, 1], ["no alert", "alert"])
    ax.set_yticks([0, 1], ["no event", "event"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual (within horizon)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
