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
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rnnpipe import settings
from rnnpipe import threads as rnnpipe_threads
from rnnpipe.band import fit_band
from rnnpipe.config import TrainConfig, flatten
from rnnpipe.errors import ConfigError, ModelError
from rnnpipe.features.windows import INFERENCE_BATCH, BatchSource
from rnnpipe.linear import warm_start_linear_part

log = logging.getLogger(__name__)


def _forward(model: nn.Module, x) -> torch.Tensor:
    return model(*x) if isinstance(x, tuple) else model(x)


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


class PointLoss(nn.Module):
    """A loss on the point forecast alone of a model whose output (B, H, 1 + Q) also holds
    quantiles: what the training loop optimises for it (`point` is the loss itself)."""

    def __init__(self, point: Callable):
        super().__init__()
        self.point = point

    def forward(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.point(pred[..., 0], y)


@torch.no_grad()
def predict_batches(model: nn.Module, data: BatchSource, batch_size: int = INFERENCE_BATCH) -> np.ndarray:
    """Model outputs for every window of `data`, in order, as float64 numpy."""
    model.eval()
    outs = []
    for x, _ in data.batches(batch_size):
        rnnpipe_threads.tick()
        outs.append(_forward(model, x).float().cpu())
    return torch.cat(outs).double().numpy() if outs else np.empty((0,))


@dataclass
class _Progress:
    """Where a training stands: the history, the best weights so far and the patience
    count; what a checkpoint holds besides the optimiser's and the generators' states."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int = 0
    best_state: dict[str, Any] | None = None
    bad_epochs: int = 0
    trained_best: float = math.inf  # best val loss of the epochs themselves: patience counts from it
    initial_val: float = math.nan
    warm: dict[str, float] = field(default_factory=dict)
    epoch: int = 0  # the last finished epoch

    def start(self, model: nn.Module, val_loss: float) -> None:
        """The starting weights are a candidate (epoch 0)."""
        self.initial_val, self.best_val, self.best_epoch = val_loss, val_loss, 0
        self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def after_epoch(self, model: nn.Module, record: dict[str, float], patience: int) -> bool:
        """Record an epoch; the model ends on the best of the start and every epoch. Returns
        whether patience ran out."""
        self.history.append(record)
        self.epoch, val_loss = int(record["epoch"]), record["val_loss"]
        if val_loss < self.trained_best:
            self.trained_best, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
        if val_loss < self.best_val:
            self.best_val, self.best_epoch = val_loss, self.epoch
            self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return self.bad_epochs >= patience

    def state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "history": self.history,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "bad_epochs": self.bad_epochs,
            "initial_val": self.initial_val,
            "warm_start": self.warm,
            "trained_best": self.trained_best,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Progress:
        return cls(
            history=state["history"],
            best_val=state["best_val"],
            best_epoch=state["best_epoch"],
            best_state=state["best_state"],
            bad_epochs=state["bad_epochs"],
            trained_best=state.get("trained_best", state["best_val"]),
            initial_val=state.get("initial_val", math.nan),
            warm=state.get("warm_start", {}),
            epoch=state["epoch"],
        )


def _precision(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether to train in bf16 (`train.precision`; auto: on CUDA)."""
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    if use_bf16 and device.type != "cuda":
        raise ConfigError("train.precision=bf16 needs a CUDA device here")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    return use_bf16


def _optimiser(model: nn.Module, cfg: TrainConfig):
    """AdamW over the model's parameter groups (a slower group for a linear part), and the
    learning-rate schedule (`train.lr_schedule`)."""
    groups = model.param_groups(cfg.lr) if hasattr(model, "param_groups") else model.parameters()
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.lr_schedule == "cosine":
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.lr_schedule == "plateau":
        return optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=max(1, cfg.patience // 2))
    return optimizer, None


def _train_epoch(model, train: BatchSource, cfg: TrainConfig, loss_fn, optimizer, generator, autocast, bar):
    """One pass over the training batches: (mean loss, samples seen)."""
    model.train()
    t0, seen, total = time.perf_counter(), 0, 0.0
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
    return total / max(seen, 1), seen


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
    use_bf16 = _precision(cfg, device)

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16)

    threads = rnnpipe_threads.apply(cfg.threads)
    seed_everything(cfg.seed)
    model.to(device)
    train, val = train.to(device), val.to(device)
    optimizer, scheduler = _optimiser(model, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    meta = dict(checkpoint_meta or {})
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    done = _Progress()
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
        done = _Progress.from_state(state)
        meta = {**state.get("meta", {}), **meta}
        say("resuming from %s after epoch %d", ckpt, state["epoch"])
    resumed_from = done.epoch

    part = getattr(model, "linear_part", None)
    if not resume:
        # the starting weights are a candidate (epoch 0): for a forecaster the naive forecast;
        # with a linear part, the best linear model of the window alone (fitted on train,
        # its penalty chosen on val). Training must improve on them on validation.
        if part is not None:
            t_warm = time.perf_counter()
            done.warm = (
                part.warm_start()
                if hasattr(part, "warm_start")  # a start fitted elsewhere
                else warm_start_linear_part(model, train, val, loss_fn, cfg.seed)
            )
            done.warm["warm_start_s"] = time.perf_counter() - t_warm
            say("linear part alone: %s", ", ".join(f"{k}={v:.4g}" for k, v in done.warm.items()))
        done.start(model, evaluate_loss(model, val, loss_fn, INFERENCE_BATCH, autocast))
    if part is not None:
        # what joint training starts from is the part's own rule (`after_warm_start`); on
        # resume the weights come from the checkpoint and only the rule's freezing applies
        part.after_warm_start(resumed=resume)

    n_batches = math.ceil(len(train) / cfg.batch_size)
    stopped_early = done.bad_epochs >= cfg.patience
    for epoch in range(done.epoch + 1, cfg.epochs + 1):
        if stopped_early:
            break
        t0 = time.perf_counter()
        quiet = None if progress is None else not progress
        bar_args = dict(total=n_batches, unit="batch", leave=False, disable=quiet, dynamic_ncols=True)
        with tqdm(desc=f"epoch {epoch}/{cfg.epochs}", **bar_args) as bar:
            train_loss, seen = _train_epoch(model, train, cfg, loss_fn, optimizer, generator, autocast, bar)
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_time = time.perf_counter() - t0
        val_loss = evaluate_loss(model, val, loss_fn, INFERENCE_BATCH, autocast)
        lr = optimizer.param_groups[-1]["lr"]  # the base rate (a slower group may come first)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_loss)
        elif scheduler is not None:
            scheduler.step()
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": lr,
            "samples_per_s": seen / train_time,
            "epoch_time_s": train_time,
        }
        stopped_early = done.after_epoch(model, record, cfg.patience)
        say(
            "epoch %d/%d train_loss=%.5f val_loss=%.5f lr=%.2e %.0f samples/s%s",
            epoch,
            cfg.epochs,
            train_loss,
            val_loss,
            lr,
            record["samples_per_s"],
            "  (best)" if done.best_epoch == epoch else "",
        )
        if ckpt is not None:
            _save_checkpoint(
                ckpt,
                {
                    **done.state(),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "meta": meta,
                },
            )
        if on_epoch is not None:
            on_epoch(record)
    if stopped_early:
        say(
            "early stop: no val_loss improvement for %d epochs; best epoch %d (val_loss=%.5f)",
            cfg.patience,
            done.best_epoch,
            done.best_val,
        )
    if done.best_state is not None:
        model.load_state_dict(copy.deepcopy(done.best_state))
    if done.best_epoch == 0:
        say(
            "no epoch improved on the starting weights on validation (val_loss=%.5f); the model keeps them",
            done.best_val,
        )
    band = {}
    if getattr(model, "quantiles", ()):
        t_band = time.perf_counter()
        band = fit_band(model, train, val, cfg.seed)
        band["band_fit_s"] = time.perf_counter() - t_band
        say("quantile band: %s", ", ".join(f"{k}={v:.4g}" for k, v in band.items()))
    return FitResult(
        done.history,
        done.best_epoch,
        done.best_val,
        stopped_early,
        str(device),
        "bf16" if use_bf16 else "fp32",
        resumed_from,
        meta,
        done.initial_val,
        done.warm,
        band,
        threads,
    )
