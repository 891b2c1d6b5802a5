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


def _check_highway(highway: str, lookback: int) -> None:
    if highway not in HIGHWAYS:
        raise ValueError(f"highway {highway!r}: expected one of {', '.join(HIGHWAYS)}")
    if highway != "none" and lookback < 1:
        raise ValueError("a linear part needs the window length (lookback)")


def pinball_loss(qpred: torch.Tensor, y: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Mean pinball (quantile) loss of forecasts qpred (..., Q) of y (...) at levels q (Q,)."""
    diff = y.unsqueeze(-1) - qpred
    return torch.maximum(q * diff, (q - 1) * diff).mean()


class Forecaster(nn.Module):
    """Encoder + a linear head with one output per step ahead (direct multi-horizon), plus an
    optional linear autoregressive part on the window (`highway="linear"`).

    Both start at zero, so an untrained model predicts "no change" (the naive forecast under
    difference or log-return targets); training moves them only where the data pays.

    Inputs known in advance (`known_size` K > 0: calendar features, planned values) come as
    a second input (B, H, K), their values at the forecast steps. The recurrent part reads
    them through a small decoder shared by the steps: step h's output adds an MLP of the
    encoder's state and step h's known inputs (the MLP decoder of NeuralForecast's RNN), and
    the linear part reads them as further features. Past values of the same inputs are
    channels of the window like any other.

    `recipe="residual"` (with the linear part): the linear part keeps its closed-form fit and
    the recurrent output is scaled by `residual_scale`, the spread of the linear part's
    training residuals per step (set by the warm start), so the recurrent part learns the
    residual at unit scale, as ES-RNN lets a statistical model carry the level and the
    network the rest. `recipe="joint"`: both parts train together from zero.

    With `quantiles` (levels in (0, 1)) the model also forecasts those quantiles of each step
    (output (B, H, 1 + Q): the point forecast, then the quantiles). A quantile is the point
    forecast plus an offset: a linear map of the encoder's state and of the window's summary
    statistics (its std: recent volatility widens the band), with a constant per step and
    level. The point forecast is trained as without quantiles (squared error; the offsets
    read the encoder's state with gradients stopped); the offsets are fitted afterwards on
    the point forecast's residuals (`rnnpipe.band.fit_band`). Quantiles may cross; the
    pipeline sorts them after decoding.
    """

    def __init__(
        self,
        input_size: int,
        horizon: int,
        lookback: int = 0,
        highway: str = "none",
        quantiles=(),
        known_size: int = 0,
        recipe: str = "joint",
        encoder_lookback: int = 0,
        season: int = 0,
        level_input: bool = False,
        linear_lr_mult: float = 0.0,
        **encoder_kwargs,
    ):
        super().__init__()
        _check_highway(highway, lookback)
        if recipe not in ("residual", "joint"):
            raise ValueError(f"recipe {recipe!r}: expected residual or joint")
        self.encoder = RecurrentEncoder(input_size, **encoder_kwargs)
        z = self.encoder.out_features
        self.head = nn.Linear(z, horizon)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.known_size, self.recipe = known_size, recipe
        self.encoder_lookback = encoder_lookback if 0 < encoder_lookback < lookback else 0
        # the seasonal lag of each step (the target's level one season before it, relative to
        # the window's last level), read by the decoder where the window reaches that far back
        self.season = season if 2 <= season < lookback else 0
        self.level_input, self.lookback = level_input, lookback
        self.decoder = None
        extra = known_size + (1 if self.season else 0)
        if extra:
            self.decoder = nn.Sequential(nn.Linear(z + extra, z), nn.ReLU(), nn.Linear(z, 1))
            nn.init.zeros_(self.decoder[-1].weight)
            nn.init.zeros_(self.decoder[-1].bias)
        self.linear_part = (
            LinearPart(
                lookback,
                input_size,
                horizon,
                future_size=horizon * known_size,
                keep=recipe == "residual",
                lr_mult=linear_lr_mult,
            )
            if highway == "linear"
            else None
        )
        if self.linear_part is not None and recipe == "residual":
            self.register_buffer("residual_scale", torch.ones(horizon))
        else:
            self.residual_scale = None
        self.horizon, self.quantiles = horizon, tuple(float(q) for q in quantiles)
        self.band_head = self.band_part = None
        if self.quantiles:
            if any(not 0 < q < 1 for q in self.quantiles):
                raise ValueError(f"quantiles {self.quantiles}: each must be in (0, 1)")
            if lookback < 1:
                raise ValueError("a quantile band needs the window length (lookback)")
            n = horizon * len(self.quantiles)
            self.band_head = nn.Linear(z, n)
            nn.init.zeros_(self.band_head.weight)
            nn.init.zeros_(self.band_head.bias)
            self.band_part = LinearPart(lookback, input_size, n, features="summary")
            for p in (*self.band_head.parameters(), *self.band_part.parameters()):
                p.requires_grad_(False)  # fitted by `fit_band`, not by the training loop

    def seasonal_lags(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H): for step h, the target's level at h - season steps after the window's end
        (h - 2 x season past one season) relative to its last level, from channel 0 of the
        window (levels, or one-step changes summed back)."""
        x0 = x[:, :, 0].float()
        if self.level_input:
            rel = x0.flip(1)[:, 1:] - x0[:, -1:]  # column k-1: k steps back
        else:
            rel = -torch.cumsum(x0.flip(1), dim=1)[:, :-1]  # minus the last k changes
        h = torch.arange(1, self.horizon + 1, device=x.device)
        m = self.season
        back = torch.where(h <= m, m - h, 2 * m - h).clamp(1, self.lookback - 1)
        return rel[:, back - 1]

    def param_groups(self, lr: float) -> list[dict]:
        """Optimiser groups: under the residual recipe the linear part at lr x its `lr_mult`
        (frozen at 0), the rest at lr."""
        part = self.linear_part
        if part is None or not part.keep:
            return [{"params": list(self.parameters()), "lr": lr}]
        slow = list(part.parameters())
        ids = {id(p) for p in slow}
        return [
            {"params": slow, "lr": lr * part.lr_mult},
            {"params": [p for p in self.parameters() if id(p) not in ids], "lr": lr},
        ]

    def recurrent_part(
        self, z: torch.Tensor, future: torch.Tensor | None = None, x: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The recurrent part's output (B, H) from the encoder's state (and the known future)."""
        out = self.head(z)
        if self.decoder is not None:
            parts = [z.unsqueeze(1).expand(-1, self.horizon, -1)]
            if self.known_size:
                if future is None:
                    raise ValueError("this model reads inputs known in advance: pass them (B, H, K)")
                parts.append(future.to(z.dtype))
            if self.season:
                parts.append(self.seasonal_lags(x).unsqueeze(-1).to(z.dtype))
            out = out + self.decoder(torch.cat(parts, dim=-1)).squeeze(-1)
        return out if self.residual_scale is None else out * self.residual_scale

    def point_and_state(self, x: torch.Tensor, future: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x[:, -self.encoder_lookback :] if self.encoder_lookback else x)
        out = self.recurrent_part(z, future, x)
        return (out if self.linear_part is None else out + self.linear_part(x, future)), z

    def band(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Offsets (B, H, Q) of the quantiles from the point forecast."""
        offsets = self.band_head(z.detach()) + self.band_part(x)
        return offsets.view(len(x), self.horizon, len(self.quantiles))

    def forward(self, x: torch.Tensor, future: torch.Tensor | None = None) -> torch.Tensor:
        point, z = self.point_and_state(x, future)
        if not self.quantiles:
            return point
        # the training loss sees the point forecast only (`rnnpipe.training.fit` slices it)
        return torch.cat([point.unsqueeze(-1), point.detach().unsqueeze(-1) + self.band(z, x)], dim=-1)


class SequenceClassifier(nn.Module):
    """Encoder + a linear head: one logit per sequence (binary: event or not), plus an
    optional wide part on the window's summary statistics (`highway="linear"`).

    With attention pooling, `attention()` returns the weights over time steps of the last
    batch, so a user can see which readings drove an alert.
    """

    def __init__(self, input_size: int, lookback: int = 0, highway: str = "none", **encoder_kwargs):
        super().__init__()
        _check_highway(highway, lookback)
        self.encoder = RecurrentEncoder(input_size, **encoder_kwargs)
        self.head = nn.Linear(self.encoder.out_features, 1)
        self.linear_part = None
        if highway == "linear":  # wide and deep: the deep part starts at zero beside it
            self.linear_part = LinearPart(lookback, input_size, 1, features="summary", squeeze=True)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        out = self.head(self.encoder(x, lengths)).squeeze(-1)
        return out if self.linear_part is None else out + self.linear_part(x)

    def attention(self) -> torch.Tensor | None:
        return self.encoder.last_attention


class NgramPart(nn.Module):
    """The wide part of a text classifier: a linear map from sparse n-gram features (B, F)
    (the TF-IDF baseline's) to the class logits. It starts at zero; `set_initial` keeps a
    start (the baseline's own regression) that `warm_start` puts in place, so the model can
    be judged as the baseline alone before training (see `rnnpipe.training.fit`)."""

    def __init__(self, n_features: int, n_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_classes, n_features))
        self.bias = nn.Parameter(torch.zeros(n_classes))
        self.register_buffer("initial_weight", torch.zeros(n_classes, n_features), persistent=False)
        self.register_buffer("initial_bias", torch.zeros(n_classes), persistent=False)

    @torch.no_grad()
    def set_initial(self, weight, bias) -> None:
        self.initial_weight.copy_(torch.as_tensor(weight, dtype=self.weight.dtype))
        self.initial_bias.copy_(torch.as_tensor(bias, dtype=self.bias.dtype))

    @torch.no_grad()
    def warm_start(self) -> dict[str, float]:
        self.weight.copy_(self.initial_weight)
        self.bias.copy_(self.initial_bias)
        return {"warm_start_ngram_features": float(self.weight.shape[1])}

    def after_warm_start(self, resumed: bool = False) -> None:
        """The wide part keeps the baseline's regression and stays fixed; the recurrent part
        learns what it leaves (a residual design). Chosen on validation over training it
        jointly from that start or from zero (docs: decisions/text-models.md)."""
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(features, self.weight.T) + self.bias


class TextClassifier(nn.Module):
    """Token ids -> embedding -> encoder -> one logit per class, plus an optional wide part
    on n-gram features (`ngram_features` > 0: the logits add `NgramPart`'s, and the recurrent
    head starts at zero beside it).

    `pretrained` (vocab_size, embed_dim) initialises the embedding (row 0 is `<pad>` and stays
    zero); `freeze` keeps it fixed. Input: (B, T) int64 ids padded with 0, (B,) lengths and,
    with the wide part, (B, F) sparse features. `pretrained_lr_mult` scales the learning rate
    of the embedding and encoder when they come from a pretrained language model
    (discriminative fine-tuning, `param_groups`).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        n_classes: int,
        embed_dropout: float = 0.0,
        pretrained: torch.Tensor | None = None,
        freeze: bool = False,
        ngram_features: int = 0,
        recurrent: bool = True,
        **encoder_kwargs,
    ):
        super().__init__()
        if not recurrent and not ngram_features:
            raise ValueError("recurrent=False needs the wide part (ngram_features > 0)")
        self.recurrent = recurrent  # False: the wide part alone (the TF-IDF baseline, servable)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        if pretrained is not None:
            if tuple(pretrained.shape) != (vocab_size, embed_dim):
                raise ValueError(f"pretrained embedding {tuple(pretrained.shape)} != ({vocab_size}, {embed_dim})")
            with torch.no_grad():
                self.embedding.weight.copy_(pretrained)
                self.embedding.weight[0].zero_()
        self.embedding.weight.requires_grad_(not freeze)
        self.dropout = nn.Dropout(embed_dropout)
        self.encoder = RecurrentEncoder(embed_dim, **encoder_kwargs)
        self.head = nn.Linear(self.encoder.out_features, n_classes)
        self.linear_part = NgramPart(ngram_features, n_classes) if ngram_features else None
        if self.linear_part is not None:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.pretrained_lr_mult = 1.0

    def param_groups(self, lr: float) -> list[dict]:
        """Optimiser groups: the embedding and encoder at lr x `pretrained_lr_mult`, the rest at lr."""
        slow = [p for m in (self.embedding, self.encoder) for p in m.parameters() if p.requires_grad]
        ids = {id(p) for p in slow}
        fast = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [{"params": slow, "lr": lr * self.pretrained_lr_mult}, {"params": fast, "lr": lr}]

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor | None = None, ngrams: torch.Tensor | None = None
    ) -> torch.Tensor:
        if not self.recurrent:
            return self.linear_part(ngrams)
        out = self.head(self.dropout(self.encoder(self.dropout(self.embedding(tokens)), lengths)))
        return out if self.linear_part is None else out + self.linear_part(ngrams)


class LanguageModel(nn.Module):
    """Token ids -> embedding -> a unidirectional recurrent encoder -> next-token logits.

    `tie_weights` shares the input embedding with the output layer (Press & Wolf 2017,
    Inan et al. 2017), through a projection when the hidden size differs. Dropout on the
    embedded tokens, between layers and before the output layer. For truncated
    backpropagation through time the model carries its recurrent state from one call to the
    next (detached, so gradients stop at the window); `reset=True` starts from zero.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 200,
        cell: str = "lstm",
        hidden_size: int = 200,
        num_layers: int = 2,
        dropout: float = 0.3,
        tie_weights: bool = True,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.encoder = RecurrentEncoder(
            embed_dim, cell=cell, hidden_size=hidden_size, num_layers=num_layers, dropout=dropout
        )
        self.project = nn.Linear(hidden_size, embed_dim) if tie_weights and hidden_size != embed_dim else None
        self.decoder = nn.Linear(embed_dim if tie_weights else hidden_size, vocab_size)
        if tie_weights:
            self.decoder.weight = self.embedding.weight
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        self.state = None

    def _detached(self, state):
        if state is None:
            return None
        return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()

    def forward(self, tokens: torch.Tensor, reset: bool = True) -> torch.Tensor:
        """tokens (B, T) -> logits (B, T, vocab)."""
        state = None if reset else self._detached(self.state)
        if state is not None:
            n = state[0].shape[1] if isinstance(state, tuple) else state.shape[1]
            if n != tokens.shape[0]:
                state = None
        out, self.state = self.encoder.steps(self.dropout(self.embedding(tokens)), state)
        out = self.dropout(out)
        if self.project is not None:
            out = self.project(out)
        return self.decoder(out)
