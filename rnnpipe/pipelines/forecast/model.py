"""The forecaster: the shared recurrent encoder under a forecasting head, beside its linear
part (`model.highway`), with a quantile band fitted after the point forecast."""

from __future__ import annotations

import torch
from torch import nn

from rnnpipe.models import LinearPart, RecurrentEncoder, check_highway


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

    `stacked=True`: the decoder also reads, for each step h, the linear part's forecast of h
    (gradients stopped) and h's place in the horizon (h / H), so the recurrent part corrects
    the linear forecast where it errs instead of adding a term blind to it, and knows which
    step it forecasts (the gradient-boosting baseline reads the step too). A stacked model
    always has a decoder.

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
        stacked: bool = False,
        **encoder_kwargs,
    ):
        super().__init__()
        check_highway(highway, lookback)
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
        self.stacked = bool(stacked)
        extra = known_size + (1 if self.season else 0) + (1 if self.stacked else 0)
        extra += 1 if self.stacked and highway == "linear" else 0
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
        self,
        z: torch.Tensor,
        future: torch.Tensor | None = None,
        x: torch.Tensor | None = None,
        linear: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The recurrent part's output (B, H) from the encoder's state (and the known future,
        the window for the seasonal lags, the linear part's forecast (B, H) when stacked)."""
        out = self.head(z)
        if self.decoder is not None:
            parts = [z.unsqueeze(1).expand(-1, self.horizon, -1)]
            if self.known_size:
                if future is None:
                    raise ValueError("this model reads inputs known in advance: pass them (B, H, K)")
                parts.append(future.to(z.dtype))
            if self.season:
                parts.append(self.seasonal_lags(x).unsqueeze(-1).to(z.dtype))
            if self.stacked:
                h = torch.arange(1, self.horizon + 1, device=z.device, dtype=z.dtype) / self.horizon
                parts.append(h.view(1, -1, 1).expand(len(z), -1, -1))
                if self.linear_part is not None:
                    if linear is None:
                        linear = self.linear_part(x, future)
                    parts.append(linear.detach().unsqueeze(-1).to(z.dtype))
            out = out + self.decoder(torch.cat(parts, dim=-1)).squeeze(-1)
        return out if self.residual_scale is None else out * self.residual_scale

    def point_and_state(self, x: torch.Tensor, future: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x[:, -self.encoder_lookback :] if self.encoder_lookback else x)
        linear = None if self.linear_part is None else self.linear_part(x, future)
        out = self.recurrent_part(z, future, x, linear)
        return (out if linear is None else out + linear), z

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
