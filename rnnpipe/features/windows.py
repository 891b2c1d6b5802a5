"""Sliding windows without copies, and the batches a training loop draws from them.

A window is named by the row of its last observed value, `t`: inputs are rows t-L+1 .. t,
targets are steps t+1 .. t+H. `make_windows` returns a strided view; only a batch is ever
gathered into new memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch

from rnnpipe.features.splits import Split

# Windows per forward pass where nothing is trained (validation loss, predictions, the band's
# inputs, serving). A recurrent layer computes its input projection for every step of the
# batch at once (rows x lookback x 4*hidden floats), so large batches cost memory, not speed:
# on 2 cores a 2-layer LSTM of 64 over 60-step windows runs 512-row batches no slower than
# 4,096-row ones, and a 4,096-row batch alone held about 250 MB.
INFERENCE_BATCH = 512
# Texts are long: a batch of them is cut to at most this many padded tokens (rows x its
# longest text), so 400-token reviews go 40 at a time through a 400-unit LSTM (a 512-row
# batch of them held over 1 GB in its input projection) and short ones in full batches.
INFERENCE_TOKENS = 16_384


class BatchSource(Protocol):
    """What the fit loop trains on: window sets, text batches, token streams."""

    def __len__(self) -> int: ...
    def to(self, device: torch.device) -> BatchSource: ...
    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None): ...


def make_windows(values: np.ndarray, lookback: int) -> np.ndarray:
    """(T, F) -> (T - L + 1, L, F): window i holds rows i .. i + L - 1. A view, not a copy."""
    if values.ndim == 1:
        values = values[:, None]
    view = np.lib.stride_tricks.sliding_window_view(values, lookback, axis=0)  # (N, F, L)
    return view.transpose(0, 2, 1)


def window_ends(
    split: Split, part: str, lookback: int, horizon: int, skip: int = 0, valid: np.ndarray | None = None
) -> np.ndarray:
    """Rows t whose window belongs to `part`: every target step t+1 .. t+H lies inside the
    part, and the inputs t-L+1 .. t lie inside the series (from its row `skip` on). Inputs may
    reach back into earlier parts; nothing reaches forward. With `valid` (a (T,) mask), only
    windows whose rows t-L+1 .. t+H are all valid are kept: none spans a gap."""
    ends = []
    series_start = split.bounds[:, 0]
    for (lo, hi), s0 in zip(split.part(part), series_start):
        first = max(lo - 1, s0 + skip + lookback - 1)
        last = hi - 1 - horizon
        if last >= first:
            ends.append(np.arange(first, last + 1, dtype=np.int64))
    ends = np.concatenate(ends) if ends else np.empty(0, dtype=np.int64)
    if valid is not None and len(ends):
        bad = np.concatenate([[0], np.cumsum(~valid)])
        ends = ends[bad[ends + horizon + 1] == bad[ends - lookback + 1]]
    return ends


class WindowSet:
    """Windows over preloaded tensors: inputs (T, F), targets (T, H), window end rows (N,).

    Tensors live on the training device (the GPU when there is one); `batches` gathers each
    batch from a strided `unfold` view, so memory stays at one copy of the series.

    With `future` (R, K), the inputs known in advance (calendar, known features), a batch's
    input is a pair: the windows (B, L, F) and their forecast steps' known inputs (B, H, K),
    rows `future_starts[i] .. + H` of `future` for window i (by default `ends + 1`: the rows
    after the window's last one, as in training data; a prediction passes its own rows).
    """

    def __init__(
        self,
        inputs: np.ndarray | torch.Tensor,
        targets: np.ndarray | torch.Tensor,
        ends: np.ndarray | torch.Tensor,
        lookback: int,
        future: np.ndarray | torch.Tensor | None = None,
        future_starts: np.ndarray | torch.Tensor | None = None,
    ):
        self.inputs = torch.as_tensor(inputs, dtype=torch.float32)
        self.targets = torch.as_tensor(targets, dtype=torch.float32)
        self.ends = torch.as_tensor(ends, dtype=torch.long)
        self.lookback = lookback
        self.future = None if future is None or future.shape[1] == 0 else torch.as_tensor(future, dtype=torch.float32)
        self.future_starts = (
            None
            if self.future is None
            else self.ends + 1
            if future_starts is None
            else torch.as_tensor(future_starts, dtype=torch.long)
        )

    def __len__(self) -> int:
        return int(self.ends.numel())

    def to(self, device: torch.device | str) -> WindowSet:
        moved = WindowSet(self.inputs.to(device), self.targets.to(device), self.ends.to(device), self.lookback)
        if self.future is not None:
            moved.future, moved.future_starts = self.future.to(device), self.future_starts.to(device)
        return moved

    @property
    def device(self) -> torch.device:
        return self.inputs.device

    @property
    def horizon(self) -> int:
        return self.targets.shape[1]

    def nbytes(self) -> int:
        tensors = [self.inputs, self.targets, self.ends] + ([self.future] if self.future is not None else [])
        return sum(t.element_size() * t.numel() for t in tensors)

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        view = self.inputs.unfold(0, self.lookback, 1)  # (T-L+1, F, L), a view
        ahead = None if self.future is None else self.future.unfold(0, self.horizon, 1)  # (R-H+1, K, H)
        order = (
            torch.randperm(len(self), generator=generator, device="cpu").to(self.device)
            if shuffle
            else torch.arange(len(self), device=self.device)
        )
        for i in range(0, len(self), batch_size):
            idx = order[i : i + batch_size]
            t = self.ends[idx]
            x = view[t - self.lookback + 1].transpose(1, 2)
            if ahead is not None:
                x = (x, ahead[self.future_starts[idx]].transpose(1, 2))
            yield x, self.targets[t]
