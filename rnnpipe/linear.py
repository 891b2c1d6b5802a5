"""Closed-form ridge regression with its penalty chosen on validation: the start of every
forecaster's linear part (`rnnpipe.training`) and the ridge baseline it is judged against
(`rnnpipe.pipelines.forecast.baselines.RidgeForecast`) are the same fit."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch
from sklearn.linear_model import Ridge
from torch import nn

from rnnpipe.errors import ModelError
from rnnpipe.features.windows import BatchSource

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


log = logging.getLogger(__name__)


# --- a closed-form start for a model's linear part ----------------------------------------

LOGREG_L2 = (1e-5, 1e-4, 1e-3, 1e-2)
WARM_START_WINDOWS = 200_000


@torch.no_grad()
def _features(part: nn.Module, data: BatchSource, limit: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (unstandardised) features of the linear part and the targets of at most `limit`
    windows (a seeded sample when there are more), float64 on the CPU. A batch's input may be
    a pair: windows and the inputs known for their forecast steps."""
    zs, ys, n = [], [], 0
    generator = torch.Generator().manual_seed(seed)
    for x, y in data.batches(4096, shuffle=len(data) > limit, generator=generator):
        z = part.raw_features(*x) if isinstance(x, tuple) else part.raw_features(x)
        zs.append(z.double().cpu())
        ys.append(y.double().cpu().reshape(len(y), -1))
        n += len(y)
        if n >= limit:
            break
    return torch.cat(zs)[:limit], torch.cat(ys)[:limit]


def warm_start_linear_part(
    model: nn.Module, train: BatchSource, val: BatchSource, loss_fn: Callable, seed: int = 0
) -> dict[str, float]:
    """Fit `model.linear_part` alone on the training windows (the recurrent head is at zero)
    and choose its penalty on validation: for the squared-error loss, the ridge baseline's own
    fit (`rnnpipe.linear.fit_ridge`), so this model *is* the ridge baseline; otherwise
    L2-penalised L-BFGS on `loss_fn` (e.g. an early-warning classifier's cross-entropy).
    Summary features are standardised with statistics of the training windows first.
    Returns what was chosen."""
    part, lin = model.linear_part, model.linear_part.linear
    Z, Y = _features(part, train, WARM_START_WINDOWS, seed)
    Zv, Yv = _features(part, val, WARM_START_WINDOWS, seed)
    part.fit_standardisation(Z.to(part.center))
    center, scale = part.center.double().cpu(), part.scale.double().cpu()
    Z, Zv = (Z - center) / scale, (Zv - center) / scale
    loss_fn = getattr(loss_fn, "point", loss_fn)  # a quantile loss: the point forecast's part
    if isinstance(loss_fn, nn.MSELoss):
        from rnnpipe.linear import fit_ridge

        ridge, penalty, v = fit_ridge(Z.numpy(), Y.numpy(), Zv.numpy(), Yv.numpy())
        weight = torch.as_tensor(ridge.coef_).reshape(lin.out_features, -1)
        bias = torch.as_tensor(ridge.intercept_).reshape(-1)
        chosen = {"warm_start_ridge_penalty": penalty, "warm_start_val_loss": v}
        if getattr(model, "residual_scale", None) is not None:  # the residual recipe
            spread = (Y - torch.as_tensor(ridge.predict(Z.numpy())).reshape(Y.shape)).std(0)
            with torch.no_grad():
                model.residual_scale.copy_(spread.clamp_min(1e-6).to(model.residual_scale))
            chosen["residual_scale_mean"] = float(spread.mean())
    else:
        A = torch.cat([Z, torch.ones(len(Z), 1, dtype=Z.dtype)], 1)
        Av = torch.cat([Zv, torch.ones(len(Zv), 1, dtype=Zv.dtype)], 1)

        def loss_of(W: torch.Tensor, X: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
            out = X @ W
            return loss_fn((out.squeeze(-1) if part.squeeze else out).float(), T.float()).double()

        best = None
        for l2 in LOGREG_L2:
            W = torch.zeros(A.shape[1], lin.out_features, dtype=A.dtype, requires_grad=True)
            opt = torch.optim.LBFGS([W], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

            def closure(opt=opt, W=W, l2=l2):  # this iteration's, bound
                opt.zero_grad()
                loss = loss_of(W, A, Y) + l2 * W[:-1].pow(2).sum()
                loss.backward()
                return loss

            opt.step(closure)
            with torch.no_grad():
                v = float(loss_of(W, Av, Yv))
            if math.isfinite(v) and (best is None or v < best[0]):
                best = (v, l2, W.detach())
        if best is None:
            raise ModelError("the linear part's warm start diverged for every penalty")
        v, l2, W = best
        weight, bias = W[:-1].T, W[-1]
        chosen = {"warm_start_l2": l2, "warm_start_val_loss": v}
    with torch.no_grad():
        lin.weight.copy_(weight.to(lin.weight))
        lin.bias.copy_(bias.to(lin.bias))
    return chosen
