"""Classical baselines, scored on the same data as the recurrent models.

Early warning (windows of readings):

- majority: always the most frequent class of the training windows;
- rule: a threshold on the last reading of the event's channel (the threshold is chosen on
  validation like the model's);
- logreg: logistic regression on window summary statistics (last, mean, min, max, slope, std
  of each channel).

Each exposes `fit(inputs, ends, y)` on training windows and `score(inputs, ends)`: higher
means more likely an event.

Forecasting: `RidgeForecast` on the forecaster's scaled window (alpha chosen on validation). Text classification: `TfidfLogisticRegression`
(word 1-2 grams) and `MajorityClass`, each with `fit(texts, y)` and `predict_proba(texts)`.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rnnpipe import models


def window_summary(values: np.ndarray, ends: np.ndarray, lookback: int) -> np.ndarray:
    """(N, 6 * C): last, mean, min, max, least-squares slope and std of each channel of the
    windows ending at rows `ends` (the same statistics the wide part of a classifier reads)."""
    w = torch.from_numpy(np.ascontiguousarray(values[ends[:, None] + np.arange(-lookback + 1, 1)],
                                              dtype=np.float64))  # (N, L, C)
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
        self.model = make_pipeline(StandardScaler(), LogisticRegression(
            class_weight=class_weight, max_iter=2000, random_state=seed))

    def fit(self, values, ends, y):
        self.model.fit(window_summary(values, ends, self.lookback), y)
        return self

    def score(self, values, ends):
        return self.model.decision_function(window_summary(values, ends, self.lookback))


RIDGE_PENALTIES = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)  # alpha / training rows


def fit_ridge(X: np.ndarray, Y: np.ndarray, Xv: np.ndarray, Yv: np.ndarray,
              penalties: tuple[float, ...] = RIDGE_PENALTIES) -> tuple[Ridge, float, float]:
    """Ridge regression of Y on X (train), its penalty chosen by the mean squared error on
    (Xv, Yv) (validation). The penalty is relative to the number of training rows (alpha =
    penalty x rows), so on standardised features it means the same at any data size.
    -> (fitted model, penalty, validation MSE)."""
    best = None
    for penalty in penalties:
        model = Ridge(alpha=penalty * len(X)).fit(X, Y)
        mse = float(np.mean((model.predict(Xv).reshape(Yv.shape) - Yv) ** 2))
        if best is None or mse < best[2]:
            best = (model, penalty, mse)
    return best


class RidgeForecast:
    """Ridge regression on the forecaster's own inputs: the scaled window of every input
    channel -> the scaled targets of every step ahead (the same encoding the recurrent model
    learns, so it is a linear model of the same window), decoded like the model's output.
    The penalty is chosen on validation windows (`fit_ridge`). The linear part of a
    forecaster (`model.highway=linear`) starts from this same fit."""

    name = "ridge"

    def __init__(self, lookback: int):
        self.lookback = lookback

    def _x(self, inputs: np.ndarray, ends: np.ndarray) -> np.ndarray:
        return inputs[ends[:, None] + np.arange(-self.lookback + 1, 1)].reshape(len(ends), -1)

    def fit(self, inputs: np.ndarray, targets: np.ndarray, train_ends: np.ndarray,
            val_ends: np.ndarray) -> "RidgeForecast":
        self.model, self.penalty_, _ = fit_ridge(self._x(inputs, train_ends), targets[train_ends],
                                               self._x(inputs, val_ends), targets[val_ends])
        return self

    def predict(self, inputs: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Scaled outputs (N, H), like the recurrent model's."""
        return self.model.predict(self._x(inputs, ends)).reshape(len(ends), -1)

    def forecast(self, prepared, ends: np.ndarray) -> np.ndarray:
        """Forecasts (N, H) in the target's units for the windows ending at `ends`."""
        return prepared.preprocessor.decode(self.predict(prepared.inputs, ends), prepared.frame, ends)


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
