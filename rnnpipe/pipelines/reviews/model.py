"""The review classifier: embeddings, the shared recurrent encoder and a class head, beside
an n-gram part (the wide part of a wide-and-deep text model)."""

from __future__ import annotations

import torch
from torch import nn

from rnnpipe.models import RecurrentEncoder


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
