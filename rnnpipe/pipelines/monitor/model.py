"""The early-warning classifier: the shared recurrent encoder under a binary head, beside an
optional linear part."""

from __future__ import annotations

import torch
from torch import nn

from rnnpipe.models import LinearPart, RecurrentEncoder, check_highway


class SequenceClassifier(nn.Module):
    """Encoder + a linear head: one logit per sequence (binary: event or not), plus an
    optional wide part on the window's summary statistics (`highway="linear"`).

    With attention pooling, `attention()` returns the weights over time steps of the last
    batch, so a user can see which readings drove an alert.
    """

    def __init__(self, input_size: int, lookback: int = 0, highway: str = "none", **encoder_kwargs):
        super().__init__()
        check_highway(highway, lookback)
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
