"""Settings of the language-model pipeline (`rnnpipe train lm`), apart from the pipeline
itself so that reading them (`rnnpipe config lm`, the docs, the CLI's checks) imports no
torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from rnnpipe.config import DriftConfig, TrainConfig, check_pattern, check_sections
from rnnpipe.errors import ConfigError

# --- settings -------------------------------------------------------------------------------


@dataclass
class LMDataConfig:
    CHOICES: ClassVar = {"format": {"auto", "csv", "parquet", "jsonl"}, "bad_rows": {"error", "skip"}}
    # with another data.path the bundled reviews test file gives way (see `sample_defaults`):
    # split.test of the user's own texts is held out instead
    SAMPLE_ONLY: ClassVar = {"test_path": ""}
    path: str = "data/reviews_train.parquet"  # texts to learn from: train and val come from here
    test_path: str = "data/reviews_test.parquet"  # "" = hold out split.test of `path` instead
    format: str = "auto"
    text_col: str = "review"
    bad_rows: str = "error"  # error | skip (empty, non-text or undecodable rows)


@dataclass
class LMSplitConfig:
    val: float = 0.15  # documents, at random (seeded)
    test: float = 0.15  # only without data.test_path
    seed: int = 0


@dataclass
class LMTextConfig:
    CHOICES: ClassVar = {"level": {"word", "char"}, "urls": {"token", "drop", "keep"}}
    POSITIVE: ClassVar = ("min_freq", "max_size")
    level: str = "word"  # word | char
    lowercase: bool = True
    html: bool = True  # drop tags such as <br />
    urls: str = "token"
    pattern: str = r"\w+(?:'\w+)*|[^\w\s]"  # word level: words and each punctuation mark
    min_freq: int = 2  # vocabulary from the training part: tokens seen this often ...
    max_size: int = 20000  # ... the most frequent ones

    def check(self, section: str) -> None:
        check_pattern(self.pattern, f"{section}.pattern")


@dataclass
class LMModelConfig:
    CHOICES: ClassVar = {"cell": {"rnn", "lstm", "gru"}}
    POSITIVE: ClassVar = ("embed_dim", "hidden_size", "num_layers")
    cell: str = "lstm"
    embed_dim: int = 200
    hidden_size: int = 400  # one wide layer learned faster than two of 200 (bench_reviews --lm)
    num_layers: int = 1
    dropout: float = 0.4  # embedded tokens, between layers, before the output layer
    tie_weights: bool = True  # the output layer shares the embedding

    def check(self, section: str) -> None:
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{section}.dropout={self.dropout}: must be in [0, 1)")


@dataclass
class StreamConfig:
    POSITIVE: ClassVar = ("bptt",)
    bptt: int = 70  # steps of truncated backpropagation through time; train.batch_size = rows


@dataclass
class GenerateConfig:
    POSITIVE: ClassVar = ("max_new_tokens",)
    # the fixed prompts of the run's table of sampled continuations, at each temperature
    prompts: list[str] = field(
        default_factory=lambda: ["this coffee", "i bought this for my dog", "the taste is", "do not buy"]
    )
    temperatures: list[float] = field(default_factory=lambda: [0.7, 1.0])  # of that table
    max_new_tokens: int = 40  # defaults of the served model's inference params too
    temperature: float = 0.8  # ~0: greedy
    top_k: int = 0  # 0: all tokens
    top_p: float = 0.95  # nucleus sampling; 1: off
    seed: int = 0  # one seeded generator per call: the same prompts give the same continuations

    def check(self, section: str) -> None:
        check_generation(self.temperature, self.top_k, self.top_p, self.max_new_tokens, section + ".")
        for t in self.temperatures:
            check_generation(t, self.top_k, self.top_p, self.max_new_tokens, section + ".")


@dataclass
class LMRegisterConfig:
    experiment: str = "lm"
    model_name: str = "reviews-lm"
    metric: str = "test_perplexity"  # lower is better
    baseline_margin: float = 0.0  # champion only if metric <= the n-gram's x (1 + margin)
    # when the recurrent model loses to the n-gram, register the n-gram too, as a version of
    # the same model (alias `baseline`, tag baseline=ngram; `champion` if it beats the
    # champion), with the same prompt input and output: there is always a model to serve
    register_baseline: bool = True


@dataclass
class LMConfig:
    # the default search space of `rnnpipe tune lm` (docs: tuning); a [tune.space] table replaces it
    TUNE_SPACE: ClassVar[dict[str, str]] = {
        "model.cell": "choice lstm gru",
        "model.hidden_size": "int 128 512 log",
        "model.num_layers": "int 1 2",
        "model.dropout": "float 0.0 0.5",
        "stream.bptt": "int 35 100",
        "train.lr": "float 0.0003 0.01 log",
        "train.weight_decay": "float 0.0000001 0.001 log",
        "train.batch_size": "choice 16 32 64",
    }

    data: LMDataConfig = field(default_factory=LMDataConfig)
    split: LMSplitConfig = field(default_factory=LMSplitConfig)
    text: LMTextConfig = field(default_factory=LMTextConfig)
    model: LMModelConfig = field(default_factory=LMModelConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=8, batch_size=32, lr=3e-3, weight_decay=1e-6, clip_grad_norm=0.25, patience=2
        )
    )
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    register: LMRegisterConfig = field(default_factory=LMRegisterConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)

    def validate(self) -> LMConfig:
        check_sections(self)
        test = 0.0 if self.data.test_path else self.split.test
        if not (0 < self.split.val < 1 and 0 <= test < 1 and self.split.val + test < 1):
            raise ConfigError(
                f"split.val={self.split.val}, split.test={self.split.test}: each must be "
                "in (0, 1) and their sum below 1 (training gets the rest)"
            )
        return self


def check_generation(temperature: float, top_k: int, top_p: float, max_new_tokens: int, prefix: str = "") -> None:
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ConfigError(f"{prefix}temperature={temperature}: must be a number >= 0 (0: greedy)")
    if top_k < 0:
        raise ConfigError(f"{prefix}top_k={top_k}: must be >= 0 (0: all tokens)")
    if not 0 < top_p <= 1:
        raise ConfigError(f"{prefix}top_p={top_p}: must be in (0, 1]")
    if not 1 <= max_new_tokens <= 10_000:
        raise ConfigError(f"{prefix}max_new_tokens={max_new_tokens}: must be in [1, 10000]")
