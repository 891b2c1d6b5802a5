"""One recurrent encoder under small heads.

`RecurrentEncoder` runs an RNN, LSTM or GRU (stacked, optionally bidirectional) over a batch
of sequences and pools the outputs into one vector: the last state, the mean, the
element-wise max, or an attention average whose weights are kept for inspection (which time
steps drove the output). Padding never changes the result: a one-direction encoder runs the
padded batch and masks the pooling, a bidirectional one runs packed sequences.

A head may add a **linear part** on the same window (`highway="linear"`), summed with the
recurrent output and trained jointly: the autoregressive "highway" of LSTNet (Lai et al.
2018) for forecasters, and a wide part on window summary statistics (last, mean, min, max,
slope, std of each channel: what the logistic-regression baseline reads) for the sequence
classifier, as in wide-and-deep models. The recurrent head then starts at zero as well.
`rnnpipe.training.fit` first fits the linear part alone on the training windows (closed form
or convex, its penalty chosen on validation) and keeps that model as the candidate to beat,
then trains both parts jointly from zero: the trained model never ends worse on validation
than the best linear model of its own window.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

POOLINGS = ("last", "mean", "max", "attention")

HIGHWAYS = ("none", "linear")

SUMMARY_STATS = ("last", "mean", "min", "max", "slope", "std")


def window_summary(w: torch.Tensor) -> torch.Tensor:
    """(N, L, C) windows -> (N, 6 * C): the last value, mean, min, max, least-squares slope
    per step and (population) std of each channel, in `SUMMARY_STATS` order."""
    L = w.shape[1]
    t = torch.arange(L, dtype=w.dtype, device=w.device) - (L - 1) / 2
    centred = w - w.mean(dim=1, keepdim=True)
    slope = torch.einsum("nlc,l->nc", centred, t) / (t @ t).clamp_min(1e-12)
    return torch.cat(
        [w[:, -1], w.mean(dim=1), w.amin(dim=1), w.amax(dim=1), slope, centred.pow(2).mean(dim=1).sqrt()], dim=1
    )


class LinearPart(nn.Module):
    """A linear map from features of the input window to the head's outputs, zero at first.

    `features="window"`: the flattened window (L x C values: an autoregressive model on every
    input channel), and with `future_size` > 0 the flattened inputs known for the forecast
    steps (B, H, K) as well; `features="summary"`: `window_summary`, standardised with
    statistics of the training windows kept as buffers (set by `fit_standardisation`), so
    they travel with the state dict.

    `keep`: after its warm start (`rnnpipe.training.fit`) the part keeps its fit and the
    recurrent part learns what it leaves (the residual recipe): fixed (`lr_mult` 0) or
    trained on from there at `lr_mult` times the learning rate (the model's
    `param_groups`); otherwise it restarts from zero beside the recurrent part (joint).
    """

    def __init__(
        self,
        lookback: int,
        channels: int,
        outputs: int,
        features: str = "window",
        squeeze: bool = False,
        future_size: int = 0,
        keep: bool = False,
        lr_mult: float = 0.0,
    ):
        super().__init__()
        if features not in ("window", "summary"):
            raise ValueError(f"features {features!r}: expected window or summary")
        self.features, self.squeeze, self.keep, self.lr_mult = features, squeeze, keep, lr_mult
        n = lookback * channels + future_size if features == "window" else len(SUMMARY_STATS) * channels
        self.linear = nn.Linear(n, outputs)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.register_buffer("center", torch.zeros(n))
        self.register_buffer("scale", torch.ones(n))

    @torch.no_grad()
    def reset(self) -> None:
        """Weights back to zero (the standardisation stays)."""
        self.linear.weight.zero_()
        self.linear.bias.zero_()

    def after_warm_start(self, resumed: bool = False) -> None:
        """The residual recipe (`keep`) fixes the part at its fit. Joint training starts it
        from zero, beside the recurrent head: started at the linear optimum and trained with
        it, the recurrent part sees only a small residual and stalls on a plateau (measured:
        bench/bench_forecast.py --only highway)."""
        if self.keep:
            if self.lr_mult <= 0:
                for p in self.parameters():
                    p.requires_grad_(False)
        elif not resumed:
            self.reset()

    def raw_features(self, x: torch.Tensor, future: torch.Tensor | None = None) -> torch.Tensor:
        """Unstandardised features of windows x (B, L, C) and their known future (B, H, K)."""
        if self.features == "summary":
            return window_summary(x.float())
        z = x.flatten(1)
        return z if future is None else torch.cat([z, future.flatten(1)], dim=1)

    def featurize(self, x: torch.Tensor, future: torch.Tensor | None = None) -> torch.Tensor:
        return (self.raw_features(x, future) - self.center) / self.scale

    @torch.no_grad()
    def fit_standardisation(self, z: torch.Tensor) -> None:
        """Centre and scale from raw features `z` of training windows (summary features only:
        the window's values are already scaled by the preprocessor)."""
        if self.features == "summary":
            self.center.copy_(z.mean(0))
            self.scale.copy_(z.std(0, unbiased=False).clamp_min(1e-6))

    def from_features(self, z: torch.Tensor) -> torch.Tensor:
        """The part's output (as the model returns it) from standardised features."""
        out = self.linear(z)
        return out.squeeze(-1) if self.squeeze else out

    def forward(self, x: torch.Tensor, future: torch.Tensor | None = None) -> torch.Tensor:
        return self.from_features(self.featurize(x, future))


class RecurrentEncoder(nn.Module):
    def __init__(
        self,
        input_size: int,
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        pooling: str = "last",
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell {cell!r}: expected one of {', '.join(CELLS)}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r}: expected one of {', '.join(POOLINGS)}")
        self.rnn = CELLS[cell](
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        self.cell, self.pooling = cell, pooling
        self.directions = 2 if bidirectional else 1
        self.out_features = hidden_size * self.directions
        self.attention = (
            nn.Sequential(
                nn.Linear(self.out_features, self.out_features), nn.Tanh(), nn.Linear(self.out_features, 1, bias=False)
            )
            if pooling == "attention"
            else None
        )
        self.last_attention: torch.Tensor | None = None
        # False: a bidirectional encoder runs over the padding too (only to measure what packing
        # saves); one direction never packs (see `forward`)
        self.pack = True

    def steps(self, x: torch.Tensor, state=None):
        """Per-step outputs (B, T, out_features) and the final state, for sequence models that
        carry their state from one call to the next (a language model)."""
        return self.rnn(x, state)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, F), lengths: (B,) valid steps of padded sequences -> (B, out_features).

        With one direction the padded batch runs as it is: steps after a sequence's end cannot
        change the outputs before it, so masking the pooling (and taking `last` at each
        sequence's own last step) gives what packed sequences give, 4.2x faster to train on 2
        CPU cores (LSTM 200, bucketed batches of 32 reviews; `bench/bench_reviews.py`). A
        bidirectional encoder packs, since its backward direction would start in the padding."""
        if lengths is None:
            out, h = self.rnn(x)
            mask = None
        else:
            if self.directions == 1 or not self.pack:
                out, h = self.rnn(x)
            else:  # `lengths` as given (on the CPU, where packing wants them)
                packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
                out, h = self.rnn(packed)
                out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            lengths = lengths.to(x.device)
            if self.pooling == "last" and self.directions == 1:
                return out[torch.arange(x.shape[0], device=x.device), lengths - 1]
            mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        if self.pooling == "last":
            h_n = h[0] if isinstance(h, tuple) else h  # (layers * dirs, B, H)
            return torch.cat([h_n[-d] for d in range(self.directions, 0, -1)], dim=-1)
        if self.pooling == "mean":
            if mask is None:
                return out.mean(dim=1)
            m = mask.unsqueeze(-1).to(out.dtype)
            return (out * m).sum(1) / m.sum(1).clamp_min(1)
        if self.pooling == "max":
            if mask is None:
                return out.max(dim=1).values
            return out.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1).values
        scores = self.attention(out).squeeze(-1).float()  # (B, T)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        self.last_attention = weights.detach()
        return torch.bmm(weights.unsqueeze(1).to(out.dtype), out).squeeze(1)


def check_highway(highway: str, lookback: int) -> None:
    if highway not in HIGHWAYS:
        raise ValueError(f"highway {highway!r}: expected one of {', '.join(HIGHWAYS)}")
    if highway != "none" and lookback < 1:
        raise ValueError("a linear part needs the window length (lookback)")


def pinball_loss(qpred: torch.Tensor, y: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Mean pinball (quantile) loss of forecasts qpred (..., Q) of y (...) at levels q (Q,)."""
    diff = y.unsqueeze(-1) - qpred
    return torch.maximum(q * diff, (q - 1) * diff).mean()
