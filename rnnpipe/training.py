"""One fit loop for every model in rnnpipe.

Device and precision are chosen in a few lines at the top; data arrive as preloaded tensors
(`WindowSet`, `TextBatches` or anything with the same `batches`/`__len__`/`to`), moved to the
device once. A batch is `(x, y)`; when `x` is a tuple (e.g. token ids and lengths) the model
gets its items as arguments.
Each epoch ends with a validation pass, a checkpoint (model, optimiser, scheduler, RNG, best
weights, history) and a callback; training stops early when validation stops improving and
always ends on the best weights.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rnnpipe import settings
from rnnpipe import threads as rnnpipe_threads
from rnnpipe.config import TrainConfig, flatten
from rnnpipe.errors import ConfigError, ModelError

log = logging.getLogger(__name__)


def _forward(model: nn.Module, x) -> torch.Tensor:
    return model(*x) if isinstance(x, tuple) else model(x)


class BatchSource(Protocol):
    def __len__(self) -> int: ...
    def to(self, device: torch.device) -> BatchSource: ...
    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None): ...


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device={name!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name}: CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device={name}: MPS is not available on this machine")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int  # 0: no epoch improved on the starting weights
    best_val_loss: float
    stopped_early: bool
    device: str
    precision: str
    resumed_from_epoch: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    initial_val_loss: float = float("nan")  # before the first epoch (after the warm start)
    warm_start: dict[str, float] = field(default_factory=dict)
    band: dict[str, float] = field(default_factory=dict)  # a quantile forecaster's `fit_band`
    threads: int = 0  # torch's intra-op threads during training (`train.threads`)

    @property
    def samples_per_s(self) -> float:
        rates = [h["samples_per_s"] for h in self.history]
        return float(np.mean(rates)) if rates else float("nan")


def checkpoint_path(cfg: Any, fingerprint: str) -> Path:
    """Where a pipeline's training checkpoints go: the same config (bar train.epochs, so a
    resumed run may train longer) on the same data always maps to the same file."""
    params = {k: v for k, v in flatten(cfg).items() if k != "train.epochs"}
    blob = json.dumps([params, fingerprint], sort_keys=True, default=str).encode()
    key = hashlib.sha256(blob).hexdigest()[:16]
    return settings.checkpoint_dir() / f"{cfg.register.experiment}-{key}.pt"


def read_checkpoint_meta(path: str | Path) -> dict[str, Any] | None:
    p = Path(path)
    if not p.is_file():
        return None
    return torch.load(p, map_location="cpu", weights_only=False).get("meta", {})


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def evaluate_loss(
    model: nn.Module, data: BatchSource, loss_fn: Callable, batch_size: int, autocast: Callable[[], Any]
) -> float:
    model.eval()
    total, n = 0.0, 0
    for x, y in data.batches(batch_size):
        rnnpipe_threads.tick()
        with autocast():
            pred = _forward(model, x)
        total += float(loss_fn(pred.float(), y)) * len(y)
        n += len(y)
    return total / max(n, 1)


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


class PointLoss(nn.Module):
    """A loss on the point forecast alone of a model whose output (B, H, 1 + Q) also holds
    quantiles: what the training loop optimises for it (`point` is the loss itself)."""

    def __init__(self, point: Callable):
        super().__init__()
        self.point = point

    def forward(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.point(pred[..., 0], y)


BAND_STEPS, BAND_LR, BAND_L2 = 500, 0.01, 1e-4


@torch.no_grad()
def _band_inputs(model: nn.Module, data: BatchSource, limit: int, seed: int):
    """Encoder states, raw window summaries and point residuals (scaled units) of at most
    `limit` windows, float32 on the CPU."""
    from rnnpipe.models import window_summary

    model.eval()
    zs, ss, rs, n = [], [], [], 0
    generator = torch.Generator().manual_seed(seed)
    for x, y in data.batches(4096, shuffle=len(data) > limit, generator=generator):
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


@torch.no_grad()
def predict_batches(model: nn.Module, data: BatchSource, batch_size: int = 1024) -> np.ndarray:
    """Model outputs for every window of `data`, in order, as float64 numpy."""
    model.eval()
    outs = []
    for x, _ in data.batches(batch_size):
        rnnpipe_threads.tick()
        outs.append(_forward(model, x).float().cpu())
    return torch.cat(outs).double().numpy() if outs else np.empty((0,))


def fit(
    model: nn.Module,
    train: BatchSource,
    val: BatchSource,
    cfg: TrainConfig,
    *,
    loss_fn: Callable | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_meta: dict[str, Any] | None = None,
    resume: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    progress: bool | None = None,
    label: str = "",
) -> FitResult:
    """Train `model` in place and return its history; the model ends on its best weights.

    `progress=None` shows the bar only on a terminal. With `resume=True` and a checkpoint at
    `checkpoint_path` whose `meta["key"]` matches `checkpoint_meta["key"]`, training picks up
    after the last finished epoch. `label` starts every log line (`fold 2: epoch 3/30 ...`),
    for trainings that run side by side.
    """

    def say(message: str, *args: Any) -> None:
        if label:
            log.info("%s: " + message, label, *args)
        else:
            log.info(message, *args)

    if len(train) == 0 or len(val) == 0:
        raise ConfigError(
            f"no windows to train on ({len(train)} train, {len(val)} val): "
            "the series are too short for window.lookback and window.horizon"
        )
    loss_fn = loss_fn or nn.MSELoss()
    if getattr(model, "quantiles", ()):
        loss_fn = PointLoss(loss_fn)  # the quantiles are fitted after training (`fit_band`)
    device = select_device(cfg.device)
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    if use_bf16 and device.type != "cuda":
        raise ConfigError("train.precision=bf16 needs a CUDA device here")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16)

    threads = rnnpipe_threads.apply(cfg.threads)
    seed_everything(cfg.seed)
    model.to(device)
    train, val = train.to(device), val.to(device)
    groups = model.param_groups(cfg.lr) if hasattr(model, "param_groups") else model.parameters()
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    elif cfg.lr_schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=max(1, cfg.patience // 2))
    else:
        scheduler = None
    generator = torch.Generator().manual_seed(cfg.seed)

    history: list[dict[str, float]] = []
    best_val, best_epoch, best_state, bad_epochs, start_epoch = math.inf, 0, None, 0, 1
    trained_best = math.inf  # best val loss of the epochs themselves: patience counts from it
    meta = dict(checkpoint_meta or {})
    warm: dict[str, float] = {}
    initial_val = math.nan
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    if resume:
        if ckpt is None or not ckpt.is_file():
            raise ModelError(f"--resume: no checkpoint at {ckpt}; nothing to resume")
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if meta.get("key") and state.get("meta", {}).get("key") != meta["key"]:
            raise ModelError(f"--resume: {ckpt} was written for another config or data set")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, best_val, best_epoch = state["history"], state["best_val"], state["best_epoch"]
        best_state, bad_epochs = state["best_state"], state["bad_epochs"]
        initial_val, warm = state.get("initial_val", math.nan), state.get("warm_start", {})
        trained_best = state.get("trained_best", best_val)
        start_epoch = state["epoch"] + 1
        meta = {**state.get("meta", {}), **meta}
        say("resuming from %s after epoch %d", ckpt, state["epoch"])
    resumed_from = start_epoch - 1

    part = getattr(model, "linear_part", None)
    if not resume:
        # the starting weights are a candidate (epoch 0): for a forecaster the naive forecast;
        # with a linear part, the best linear model of the window alone (fitted on train,
        # its penalty chosen on val). Training must improve on them on validation.
        if part is not None:
            t_warm = time.perf_counter()
            warm = (
                part.warm_start()
                if hasattr(part, "warm_start")  # a start fitted elsewhere
                else warm_start_linear_part(model, train, val, loss_fn, cfg.seed)
            )
            warm["warm_start_s"] = time.perf_counter() - t_warm
            say("linear part alone: %s", ", ".join(f"{k}={v:.4g}" for k, v in warm.items()))
        initial_val = evaluate_loss(model, val, loss_fn, max(cfg.batch_size, 1024), autocast)
        best_val, best_epoch = initial_val, 0
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if part is not None:
        # what joint training starts from is the part's own rule (`after_warm_start`); on
        # resume the weights come from the checkpoint and only the rule's freezing applies
        part.after_warm_start(resumed=resume)

    n_batches = math.ceil(len(train) / cfg.batch_size)
    stopped_early = bad_epochs >= cfg.patience
    for epoch in range(start_epoch, cfg.epochs + 1):
        if stopped_early:
            break
        model.train()
        t0, seen, total = time.perf_counter(), 0, 0.0
        bar = tqdm(
            total=n_batches,
            desc=f"epoch {epoch}/{cfg.epochs}",
            unit="batch",
            leave=False,
            disable=(None if progress is None else not progress),
            dynamic_ncols=True,
        )
        for x, y in train.batches(cfg.batch_size, shuffle=cfg.shuffle, generator=generator):
            rnnpipe_threads.tick()
            with autocast():
                pred = _forward(model, x)
            loss = loss_fn(pred.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad_norm > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            optimizer.step()
            total += float(loss.detach()) * len(y)
            seen += len(y)
            bar.update(1)
            bar.set_postfix(loss=f"{total / seen:.4f}", samples_s=f"{seen / (time.perf_counter() - t0):,.0f}")
        bar.close()
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_time = time.perf_counter() - t0
        val_loss = evaluate_loss(model, val, loss_fn, max(cfg.batch_size, 1024), autocast)
        lr = optimizer.param_groups[-1]["lr"]  # the base rate (a slower group may come first)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_loss)
        elif scheduler is not None:
            scheduler.step()
        record = {
            "epoch": epoch,
            "train_loss": total / seen,
            "val_loss": val_loss,
            "lr": lr,
            "samples_per_s": seen / train_time,
            "epoch_time_s": train_time,
        }
        history.append(record)
        if val_loss < trained_best:
            trained_best, bad_epochs = val_loss, 0
        else:
            bad_epochs += 1
        if val_loss < best_val:  # the model ends on the best of the start and every epoch
            best_val, best_epoch = val_loss, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        stopped_early = bad_epochs >= cfg.patience
        say(
            "epoch %d/%d train_loss=%.5f val_loss=%.5f lr=%.2e %.0f samples/s%s",
            epoch,
            cfg.epochs,
            record["train_loss"],
            val_loss,
            lr,
            record["samples_per_s"],
            "  (best)" if best_epoch == epoch else "",
        )
        if ckpt is not None:
            _save_checkpoint(
                ckpt,
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "history": history,
                    "best_val": best_val,
                    "best_epoch": best_epoch,
                    "best_state": best_state,
                    "bad_epochs": bad_epochs,
                    "meta": meta,
                    "initial_val": initial_val,
                    "warm_start": warm,
                    "trained_best": trained_best,
                },
            )
        if on_epoch is not None:
            on_epoch(record)
    if stopped_early:
        say(
            "early stop: no val_loss improvement for %d epochs; best epoch %d (val_loss=%.5f)",
            cfg.patience,
            best_epoch,
            best_val,
        )
    if best_state is not None:
        model.load_state_dict(copy.deepcopy(best_state))
    if best_epoch == 0:
        say("no epoch improved on the starting weights on validation (val_loss=%.5f); the model keeps them", best_val)
    band = {}
    if getattr(model, "quantiles", ()):
        t_band = time.perf_counter()
        band = fit_band(model, train, val, cfg.seed)
        band["band_fit_s"] = time.perf_counter() - t_band
        say("quantile band: %s", ", ".join(f"{k}={v:.4g}" for k, v in band.items()))
    return FitResult(
        history,
        best_epoch,
        best_val,
        stopped_early,
        str(device),
        "bf16" if use_bf16 else "fp32",
        resumed_from,
        meta,
        initial_val,
        warm,
        band,
        threads,
    )
