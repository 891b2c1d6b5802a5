"""One recurrent encoder under small heads.

`RecurrentEncoder` runs an RNN, LSTM or GRU (stacked, optionally bidirectional) over a batch
of sequences and pools the outputs into one vector: the last state, the mean, the
element-wise max, or an attention average whose weights are kept for inspection (which time
steps drove the output). Padded batches of sequences of different lengths run as packed
sequences, so padding changes neither the result nor (beyond the gather) the cost.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
POOLINGS = ("last", "mean", "max", "attention")


class RecurrentEncoder(nn.Module):
    def __init__(self, input_size: int, cell: str = "lstm", hidden_size: int = 64,
                 num_layers: int = 1, dropout: float = 0.0, bidirectional: bool = False,
                 pooling: str = "last"):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell {cell!r}: expected one of {', '.join(CELLS)}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r}: expected one of {', '.join(POOLINGS)}")
        self.rnn = CELLS[cell](input_size, hidden_size, num_layers=num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0,
                               bidirectional=bidirectional)
        self.cell, self.pooling = cell, pooling
        self.directions = 2 if bidirectional else 1
        self.out_features = hidden_size * self.directions
        self.attention = (nn.Sequential(nn.Linear(self.out_features, self.out_features), nn.Tanh(),
                                        nn.Linear(self.out_features, 1, bias=False))
                          if pooling == "attention" else None)
        self.last_attention: torch.Tensor | None = None
        self.pack = True  # False: run over the padding too (only to measure what packing saves)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, F), lengths: (B,) valid steps of padded sequences -> (B, out_features)."""
        if lengths is not None and not self.pack:
            out, h = self.rnn(x)
            mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]
        elif lengths is not None:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, h = self.rnn(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]
        else:
            out, h = self.rnn(x)
            mask = None
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


class Forecaster(nn.Module):
    """Encoder + a linear head with one output per step ahead (direct multi-horizon).

    The head starts at zero, so an untrained model predicts "no change" (the naive forecast
    under difference or log-return targets); training moves it only where the data pays.
    """

    def __init__(self, input_size: int, horizon: int, **encoder_kwargs):
        super().__init__()
        self.encoder = RecurrentEncoder(input_size, **encoder_kwargs)
        self.head = nn.Linear(self.encoder.out_features, horizon)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class SequenceClassifier(nn.Module):
    """Encoder + a linear head: one logit per sequence (binary: event or not).

    With attention pooling, `attention()` returns the weights over time steps of the last
    batch, so a user can see which readings drove an alert.
    """

    def __init__(self, input_size: int, **encoder_kwargs):
        super().__init__()
        self.encoder = RecurrentEncoder(input_size, **encoder_kwargs)
        self.head = nn.Linear(self.encoder.out_features, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encoder(x, lengths)).squeeze(-1)

    def attention(self) -> torch.Tensor | None:
        return self.encoder.last_attention


class TextClassifier(nn.Module):
    """Token ids -> embedding -> encoder -> one logit per class.

    `pretrained` (vocab_size, embed_dim) initialises the embedding (row 0 is `<pad>` and stays
    zero); `freeze` keeps it fixed. Input: (B, T) int64 ids padded with 0 and (B,) lengths.
    """

    def __init__(self, vocab_size: int, embed_dim: int, n_classes: int, embed_dropout: float = 0.0,
                 pretrained: torch.Tensor | None = None, freeze: bool = False, **encoder_kwargs):
        super().__init__()
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

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.dropout(self.encoder(self.dropout(self.embedding(tokens)), lengths)))
