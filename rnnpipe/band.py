"""The quantile band of a forecaster, fitted once its point forecast is trained: quantile
regression of the residuals on training windows, recalibrated on validation (conformalised)."""

from __future__ import annotations

import logging

import torch
from torch import nn

from rnnpipe.features.windows import INFERENCE_BATCH, BatchSource
from rnnpipe.linear import WARM_START_WINDOWS

log = logging.getLogger(__name__)

BAND_STEPS, BAND_LR, BAND_L2 = 500, 0.01, 1e-4


@torch.no_grad()
def _band_inputs(model: nn.Module, data: BatchSource, limit: int, seed: int):
    """Encoder states, raw window summaries and point residuals (scaled units) of at most
    `limit` windows, float32 on the CPU."""
    from rnnpipe.models import window_summary

    model.eval()
    zs, ss, rs, n = [], [], [], 0
    generator = torch.Generator().manual_seed(seed)
    for x, y in data.batches(INFERENCE_BATCH, shuffle=len(data) > limit, generator=generator):
        point, z = model.point_and_state(*x) if isinstance(x, tuple) else model.point_and_state(x)
        window = x[0] if isinstance(x, tuple) else x
        zs.append(z.float().cpu())
        ss.append(window_summary(window.float()).cpu())
        rs.append((y.float() - point.float()).cpu())
        n += len(y)
        if n >= limit:
            break
    return torch.cat(zs)[:limit], torch.cat(ss)[:limit], torch.cat(rs)[:limit]


def fit_band(model: nn.Module, train: BatchSource, val: BatchSource, seed: int = 0) -> dict[str, float]:
    """Fit a quantile forecaster's band (`Forecaster.band`) once its point forecast is trained.

    1. Quantile regression on the training windows: the offsets of each step and level are a
       linear map of the encoder's state and the window's standardised summary statistics,
       fitted by full-batch Adam on the pinball loss of the point forecast's residuals,
       started at their empirical quantiles, keeping the step with the lowest val pinball.
    2. Recalibration on validation (conformalised quantile regression, Romano et al. 2019,
       one level at a time): each level's offset is shifted by the level's quantile of the
       val residuals left over, so that on validation the share of targets at or below each
       quantile equals its level. Test data is never read.
    Returns the figures of the fit, for the run's log.
    """
    from rnnpipe.models import pinball_loss

    torch.manual_seed(seed)
    head, part = model.band_head, model.band_part
    q = torch.as_tensor(model.quantiles, dtype=torch.float32)
    H, Q = model.horizon, len(model.quantiles)
    Z, S, R = _band_inputs(model, train, WARM_START_WINDOWS, seed)
    Zv, Sv, Rv = _band_inputs(model, val, WARM_START_WINDOWS, seed)
    part.fit_standardisation(S.to(part.center))
    center, scale = part.center.float().cpu(), part.scale.float().cpu()
    S, Sv = (S - center) / scale, (Sv - center) / scale
    Wz = torch.zeros(Z.shape[1], H * Q, requires_grad=True)
    Ws = torch.zeros(S.shape[1], H * Q, requires_grad=True)
    b = torch.quantile(R.double(), q.double(), dim=0).T.reshape(-1).float().clone().requires_grad_(True)

    def offsets(Z_, S_):
        return (Z_ @ Wz + S_ @ Ws + b).view(len(Z_), H, Q)

    opt = torch.optim.Adam([Wz, Ws, b], lr=BAND_LR)
    with torch.no_grad():
        best = (float(pinball_loss(offsets(Zv, Sv), Rv, q)), 0, [t.detach().clone() for t in (Wz, Ws, b)])
    initial = best[0]
    for step in range(1, BAND_STEPS + 1):
        opt.zero_grad()
        loss = pinball_loss(offsets(Z, S), R, q) + BAND_L2 * (Wz.pow(2).sum() + Ws.pow(2).sum())
        loss.backward()
        opt.step()
        if step % 10 == 0:
            with torch.no_grad():
                v = float(pinball_loss(offsets(Zv, Sv), Rv, q))
            if v < best[0]:
                best = (v, step, [t.detach().clone() for t in (Wz, Ws, b)])
    fitted, best_step, (Wz_, Ws_, b_) = best[0], best[1], best[2]
    with torch.no_grad():
        Wz.copy_(Wz_), Ws.copy_(Ws_), b.copy_(b_)
        left = Rv.unsqueeze(-1) - offsets(Zv, Sv)  # (N, H, Q)
        shift = torch.stack(
            [torch.quantile(left[:, :, k].double(), float(q[k]), dim=0) for k in range(Q)], dim=-1
        ).float()  # (H, Q)
        head.weight.copy_(Wz.T.to(head.weight))
        head.bias.copy_((b + shift.reshape(-1)).to(head.bias))
        part.linear.weight.copy_(Ws.T.to(part.linear.weight))
        part.linear.bias.zero_()
        calibrated = float(pinball_loss(offsets(Zv, Sv) + shift, Rv, q))
    return {
        "band_val_pinball_static": initial,
        "band_val_pinball_fitted": fitted,
        "band_val_pinball_calibrated": calibrated,
        "band_best_step": float(best_step),
        "band_val_shift_mean": float(shift.abs().mean()),
    }
