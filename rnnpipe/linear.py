"""Closed-form ridge regression with its penalty chosen on validation: the start of every
forecaster's linear part (`rnnpipe.training`) and the ridge baseline it is judged against
(`rnnpipe.pipelines.forecast.baselines.RidgeForecast`) are the same fit."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge

RIDGE_PENALTIES = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)  # alpha / training rows


def fit_ridge(
    X: np.ndarray, Y: np.ndarray, Xv: np.ndarray, Yv: np.ndarray, penalties: tuple[float, ...] = RIDGE_PENALTIES
) -> tuple[Ridge, float, float]:
    """Ridge regression of Y on X (train), its penalty chosen by the mean squared error on
    (Xv, Yv) (validation). The penalty is relative to the number of training rows (alpha =
    penalty x rows), so on standardised features it means the same at any data size.
    -> (fitted model, penalty, validation MSE)."""
    import warnings

    from scipy.linalg import LinAlgWarning

    best = None
    for penalty in penalties:
        with warnings.catch_warnings():  # the smallest penalties on collinear inputs: validation judges them
            warnings.simplefilter("ignore", LinAlgWarning)
            model = Ridge(alpha=penalty * len(X)).fit(X, Y)
        mse = float(np.mean((model.predict(Xv).reshape(Yv.shape) - Yv) ** 2))
        if best is None or mse < best[2]:
            best = (model, penalty, mse)
    return best
