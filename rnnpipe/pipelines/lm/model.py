"""The recurrent language model: embeddings, the shared recurrent encoder run over a token
stream with its state carried across batches, and tied output weights."""

from __future__ import annotations

import torch
from torch import nn

from rnnpipe.models import RecurrentEncoder


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
