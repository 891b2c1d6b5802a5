"""Classical baselines, scored on the same data as the recurrent models.

Early warning (windows of readings):

- majority: always the most frequent class of the training windows;
- rule: a threshold on the last reading of the event's channel (the threshold is chosen on
  validation like the model's);
- logreg: logistic regression on window summary statistics (last, mean, min, max, slope, std
  of each channel).

Each exposes `fit(inputs, ends, y)` on training windows and `score(inputs, ends)`: higher
means more likely an event.

Forecasting: `RidgeForecast` on the window. Text classification: `TfidfLogisticRegression`
(word 1-2 grams) and `MajorityClass`, each with `fit(texts, y)` and `predict_proba(texts)`.
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def window_summary(values: np.ndarray, ends: np.ndarray, lookback: int) -> np.ndarray:
    """(N, 6 * C): last, mean, min, max, least-squares slope and std of each channel."""
    w = values[ends[:, None] + np.arange(-lookback + 1, 1)]  # (N, L, C)
    t = np.arange(lookback) - (lookback - 1) / 2
    slope = np.einsum("nlc,l->nc", w - w.mean(axis=1, keepdims=True), t) / (t @ t)
    parts = [w[:, -1], w.mean(axis=1), w.min(axis=1), w.max(axis=1), slope, w.std(axis=1)]
    return np.concatenate(parts, axis=1)


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
        self.model = make_pipeline(StandardScaler(), LogisticRegression(
            class_weight=class_weight, max_iter=2000, random_state=seed))

    def fit(self, values, ends, y):
        self.model.fit(window_summary(values, ends, self.lookback), y)
        return self

    def score(self, values, ends):
        return self.model.decision_function(window_summary(values, ends, self.lookback))


class RidgeForecast:
    """Ridge regression from the last `lookback` values to the next `horizon` values, on the
    change relative to the last value (so it extrapolates beyond the training range)."""

    name = "ridge"

    def __init__(self, lookback: int, horizon: int, alpha: float = 1.0):
        self.lookback, self.horizon = lookback, horizon
        self.model = Ridge(alpha=alpha)

    def _xy(self, x: np.ndarray, ends: np.ndarray):
        w = x[ends[:, None] + np.arange(-self.lookback + 1, 1)]
        last = w[:, -1:]
        return w - last, last

    def fit(self, x: np.ndarray, ends: np.ndarray):
        X, last = self._xy(x, ends)
        Y = x[ends[:, None] + np.arange(1, self.horizon + 1)] - last
        self.model.fit(X, Y)
        return self

    def predict(self, x: np.ndarray, ends: np.ndarray) -> np.ndarray:
        X, last = self._xy(x, ends)
        return self.model.predict(X).reshape(len(ends), -1) + last


class TfidfLogisticRegression:
    """TF-IDF of word unigrams and bigrams (sublinear tf, terms in 2+ training texts) and a
    multinomial logistic regression with inverse regularisation `C`."""

    name = "tfidf"

    def __init__(self, C: float = 4.0, lowercase: bool = True, seed: int = 0):
        self.C = C
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True,
                                          lowercase=lowercase, strip_accents=None)
        self.model = LogisticRegression(C=C, max_iter=3000, random_state=seed)

    def fit(self, texts, y):
        self.model.fit(self.vectorizer.fit_transform(texts), y)
        return self

    def predict_proba(self, texts) -> np.ndarray:
        return self.model.predict_proba(self.vectorizer.transform(texts))


class MajorityClass:
    name = "majority"

    def fit(self, texts, y):
        counts = np.bincount(np.asarray(y))
        self.proba_ = counts / counts.sum()
        return self

    def predict_proba(self, texts) -> np.ndarray:
        return np.tile(self.proba_, (len(texts), 1))
