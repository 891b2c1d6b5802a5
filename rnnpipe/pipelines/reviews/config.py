"""Settings of the review-sentiment pipeline (`rnnpipe train reviews`).

One name per setting everywhere: see `rnnpipe.config` (the machinery all kinds share).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from rnnpipe.config import (
    ClassifierRegisterConfig,
    DriftConfig,
    ModelConfig,
    TrainConfig,
    check_pattern,
    check_sections,
)
from rnnpipe.errors import ConfigError

BUNDLED_VECTORS = "data/word_vectors.parquet"  # the reviews embedding's default start (data/SOURCES.md)


@dataclass
class ReviewsRegisterConfig(ClassifierRegisterConfig):
    experiment: str = "reviews"
    model_name: str = "reviews-sentiment"
    metric: str = "test_macro_f1"
    # when the recurrent model loses to TF-IDF, register the TF-IDF baseline too, as a version
    # of the same model (alias `baseline`, tag baseline=tfidf; `champion` if it beats the
    # champion), with the same raw-text input and output: there is always a model to serve
    register_baseline: bool = True


@dataclass
class TextDataConfig:
    CHOICES: ClassVar = {"format": {"auto", "csv", "parquet", "jsonl"}, "bad_rows": {"error", "skip"}}
    # with another data.path, these bundled-sample defaults give way (see `sample_defaults`):
    # no separate test file (split.test of `path` is held out) and no id column
    SAMPLE_ONLY: ClassVar = {"test_path": "", "id_col": ""}
    path: str = "data/reviews_train.parquet"  # CSV, Parquet or JSON Lines; file, folder or dataset
    test_path: str = "data/reviews_test.parquet"  # "" = hold out split.test of `path` instead
    format: str = "auto"  # auto | csv | parquet | jsonl
    text_col: str = "review"
    label_col: str = "score"
    id_col: str = "review_id"  # optional: names reviews in the error table ("" = row numbers)
    labels: list[str] = field(default_factory=list)  # [] = the labels of the training file
    bad_rows: str = "error"  # error | skip (empty or non-text text, unknown label, bad bytes)


@dataclass
class TextSplitConfig:
    val: float = 0.15  # stratified by label, out of the training file
    test: float = 0.2  # only without data.test_path
    seed: int = 0


@dataclass
class TextConfig:
    CHOICES: ClassVar = {"urls": {"token", "drop", "keep"}, "truncate": {"head", "tail"}}
    POSITIVE: ClassVar = ("min_freq", "max_size", "max_len")
    lowercase: bool = True
    html: bool = True  # drop tags such as <br />
    urls: str = "token"  # token (each URL becomes <url>) | drop | keep (split like other text)
    pattern: str = r"\w+(?:'\w+)*|[!?]"  # a token is a match of this regex (Unicode words, ! and ?)
    min_freq: int = 2  # vocabulary: words seen at least this often in the training part ...
    max_size: int = 20000  # ... the most frequent ones, besides <pad> and <unk>
    max_len: int = 400  # tokens per review; longer ones are cut
    truncate: str = "head"  # head (keep the first max_len tokens) | tail (keep the last)
    bucketing: bool = True  # batch reviews of similar length together

    def check(self, section: str) -> None:
        check_pattern(self.pattern, f"{section}.pattern")


@dataclass
class EmbedConfig:
    POSITIVE: ClassVar = ("dim",)
    dim: int = 100  # ignored when `path` is given (the file decides)
    path: str = (
        ""  # local vector file to initialise from: GloVe / word2vec text, or Parquet (word, vector); "" = random
    )
    freeze: bool = False  # keep the loaded vectors fixed
    extend_vocab: bool = (
        False  # the file's words join the training vocabulary (a word unseen in training keeps its vector)
    )
    dropout: float = 0.3  # on the embedded tokens and the pooled vector

    def check(self, section: str) -> None:
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{section}.dropout={self.dropout}: must be in [0, 1)")


@dataclass
class TextClassifyConfig:
    CHOICES: ClassVar = {"class_weight": {"none", "balanced"}, "decision": {"argmax", "tuned"}}
    class_weight: str = "none"  # none | balanced (loss weights inverse to class frequency in train)
    decision: str = "tuned"  # tuned (binary: threshold with the best val macro-F1) | argmax


@dataclass
class PretrainConfig:
    POSITIVE: ClassVar = ("epochs", "bptt", "batch_size")
    # start the embedding and encoder from a language model trained on the training texts
    # (plus `path`; never on val or test texts), then fine-tune (Dai & Le 2015; ULMFiT)
    enabled: bool = False
    # ... or start from a registered word-level language model instead (`rnnpipe train lm`):
    # NAME@ALIAS, NAME/VERSION or NAME (its champion); the encoder takes its shape
    model: str = ""
    path: str = ""  # optional unlabelled texts (CSV, Parquet, JSON Lines) to pretrain on as well
    text_col: str = ""  # its text column ("" = data.text_col)
    epochs: int = 4  # of the language model (at most: it stops early on the holdout)
    bptt: int = 50  # steps of truncated backpropagation through time
    batch_size: int = 32  # rows of the token stream
    lr: float = 3e-3  # the language model's learning rate
    dropout: float = 0.3  # the language model's dropout
    holdout: float = 0.1  # share of the training texts kept aside to stop the LM early
    lr_mult: float = 0.5  # fine-tuning: the pretrained parts learn at train.lr x lr_mult

    def check(self, section: str) -> None:
        if not 0 < self.holdout < 0.5:
            raise ConfigError(f"{section}.holdout={self.holdout}: must be in (0, 0.5)")
        if not 0 < self.lr_mult <= 1:
            raise ConfigError(f"{section}.lr_mult={self.lr_mult}: must be in (0, 1]")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{section}.dropout={self.dropout}: must be in [0, 1)")


@dataclass
class ReviewsConfig:
    # the default search space of `rnnpipe tune reviews` (docs: tuning); a [tune.space] table replaces it
    TUNE_SPACE: ClassVar[dict[str, str]] = {
        "model.cell": "choice lstm gru",
        "model.hidden_size": "int 64 512 log",
        "model.dropout": "float 0.0 0.5",
        "embed.dropout": "float 0.0 0.5",
        "model.highway": "choice linear none",
        "train.lr": "float 0.0003 0.01 log",
        "train.weight_decay": "float 0.000001 0.01 log",
        "train.batch_size": "choice 16 32 64",
    }

    data: TextDataConfig = field(default_factory=TextDataConfig)
    split: TextSplitConfig = field(default_factory=TextSplitConfig)
    text: TextConfig = field(default_factory=TextConfig)
    # the bundled word vectors (data/word_vectors.parquet, distilled from a pretrained sentence
    # encoder; data/SOURCES.md), kept fixed; an LSTM 400 with the TF-IDF features as a wide part
    # (highway=linear): chosen on five validation splits within the 4-minute budget (docs:
    # decisions/text-models.md)
    embed: EmbedConfig = field(default_factory=lambda: EmbedConfig(dim=200, path=BUNDLED_VECTORS, freeze=True))
    model: ModelConfig = field(
        default_factory=lambda: ModelConfig(
            cell="lstm",
            hidden_size=400,
            num_layers=1,
            dropout=0.0,
            bidirectional=False,
            pooling="max",
            highway="linear",
        )
    )
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=12, batch_size=32, lr=2e-3, weight_decay=1e-4, patience=3)
    )
    classify: TextClassifyConfig = field(default_factory=TextClassifyConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    register: ReviewsRegisterConfig = field(default_factory=ReviewsRegisterConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    # a language model given as pretrain.model brings its own embedding: the bundled vectors
    # give way unless embed.* is given too (`replaced_defaults`)
    REPLACES: ClassVar = {"pretrain.model": {"embed.path": "", "embed.freeze": False, "embed.extend_vocab": False}}

    def model_references(self) -> list[str]:
        """Registered models the run starts from (resolved before any flow starts)."""
        return [self.pretrain.model] if self.pretrain.model else []

    def validate(self) -> ReviewsConfig:
        check_sections(self)
        if self.pretrain.model and (self.pretrain.enabled or self.embed.path):
            raise ConfigError(
                f"pretrain.model={self.pretrain.model!r} gives the embedding and encoder; "
                f"it does not go with pretrain.enabled or embed.path={self.embed.path!r}"
            )
        if self.pretrain.enabled and self.model.bidirectional and self.model.num_layers > 1:
            raise ConfigError(
                "pretrain.enabled with model.bidirectional: a stacked bidirectional encoder "
                "cannot take a language model's layers; use model.num_layers=1"
            )
        if not self.data.text_col or not self.data.label_col:
            raise ConfigError("data.text_col and data.label_col must name columns")
        test = 0.0 if self.data.test_path else self.split.test
        if not (
            0 < self.split.val < 1 and 0 <= test < 1 and self.split.val + test < 1 and (self.data.test_path or test > 0)
        ):
            raise ConfigError(
                f"split.val={self.split.val}, split.test={self.split.test}: each must be "
                "in (0, 1) and their sum below 1 (training gets the rest)"
            )
        return self
