"""The plots every kind shares (loss curves, model against baselines) and how a plot is made.

Figures are made without pyplot (`subplots`): importing rnnpipe never switches matplotlib's
backend (a notebook keeps its own), and no figure is kept alive by pyplot's figure manager
once it is logged. Each kind's own metrics and plots are in its package's `evaluation`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure


def subplots(*args: int, figsize: tuple[float, float] | None = None, **kwargs):
    """A figure and its axes (the arguments of `Figure.subplots`), without pyplot."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def plot_loss_curves(history: Sequence[dict[str, float]], best_epoch: int | None = None):
    epochs = [h["epoch"] for h in history]
    fig, ax = subplots(figsize=(7, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], marker="o", ms=3, label="train_loss")
    ax.plot(epochs, [h["val_loss"] for h in history], marker="o", ms=3, label="val_loss")
    if best_epoch:
        ax.axvline(best_epoch, color="gray", ls="--", lw=1, label=f"best epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (scaled units)")
    ax.set_title("loss curves")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_comparison(
    rows: Sequence[dict],
    keys: Sequence[str] = ("f1_onset", "pr_auc_onset", "f1_all"),
    title: str = "test: model vs baselines",
):
    """Grouped bars: one group per metric, one bar per method."""
    fig, ax = subplots(figsize=(8, 4))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        vals = [row[k] for k in keys]
        bars = ax.bar(np.arange(len(keys)) + i * width, vals, width, label=row["method"])
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(np.arange(len(keys)) + width * (len(rows) - 1) / 2, keys)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
