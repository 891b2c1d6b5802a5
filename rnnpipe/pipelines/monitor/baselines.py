"""The monitor's baselines: the majority class, a rule on the last reading, and logistic
regression on window summaries."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rnnpipe import models


def window_summary(values: np.ndarray, ends: np.ndarray, lookback: int) -> np.ndarray:
    """(N, 6 * C): last, mean, min, max, least-squares slope and std of each channel of the
    windows ending at rows `ends` (the same statistics the wide part of a classifier reads)."""
    w = torch.from_numpy(
        np.ascontiguousarray(values[ends[:, None] + np.arange(-lookback + 1, 1)], dtype=np.float64)
    )  # (N, L, C)
    return models.window_summary(w).numpy()


class MajorityBaseline:
    name = "majority"

    def fit(self, values, ends, y):
        self.label_ = float(np.mean(y) > 0.5)
        return self

    def score(self, values, ends):
        return np.full(len(ends), self.label_)


class LastReadingRule:
    """Score = the last reading of one channel, signed so that higher means "event"."""

    name = "rule"

    def __init__(self, column: int, sign: float):
        self.column, self.sign = column, sign

    def fit(self, values, ends, y):
        return self

    def score(self, values, ends):
        return self.sign * values[ends, self.column]


class SummaryLogisticRegression:
    name = "logreg"

    def __init__(self, lookback: int, class_weight: str | None = "balanced", seed: int = 0):
        self.lookback = lookback
        self.model = make_pipeline(
            StandardScaler(), LogisticRegression(class_weight=class_weight, max_iter=2000, random_state=seed)
        )

    def fit(self, values, ends, y):
        self.model.fit(window_summary(values, ends, self.lookback), y)
        return self

    def score(self, values, ends):
        return self.model.decision_function(window_summary(values, ends, self.lookback))
