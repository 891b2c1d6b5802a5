"""Pipeline configuration: nested dataclasses, a TOML file, and `key=value` overrides.

One name per setting everywhere: the TOML key `[model] hidden_size`, the CLI override
`--set model.hidden_size=128` and the MLflow param `model.hidden_size` are the same string.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rnnpipe.errors import ConfigError


@dataclass
class DataConfig:
    CHOICES: ClassVar = {"format": {"auto", "csv", "parquet"}, "nan_policy": {"error", "ffill", "drop"}}
    # defaults that describe the bundled sample only: with another data.path they take these
    # values unless the config or --set gives them (see `sample_defaults`)
    SAMPLE_ONLY: ClassVar = {"series": []}
    path: str = "data/stocks.parquet"  # file, folder or partitioned dataset (CSV or Parquet)
    format: str = "auto"  # auto | csv | parquet
    timestamp_col: str = "Date"
    series_col: str = "Ticker"  # "" = the whole file is one series, named `series_name`
    series_name: str = ""  # the one series' name without series_col ("" = the file's name)
    target_col: str = "Close"
    features: list[str] = field(default_factory=list)  # extra numeric input columns (past values only)
    # columns whose future values are known in advance (a temperature forecast, a planned
    # promotion, a work-day flag): the model reads them at the forecast steps too, so a
    # prediction's input carries window.horizon future rows of them after the history
    known_features: list[str] = field(default_factory=list)
    # calendar inputs from each step's timestamp, for the window and the forecast steps:
    # auto (by the data's step) | none | a list of time_of_day, day_of_week, day_of_year
    calendar: list[str] = field(default_factory=lambda: ["auto"])
    series: list[str] = field(default_factory=lambda: ["AAPL", "IBM", "MSFT"])  # [] = all
    nan_policy: str = "error"  # error | ffill | drop

    def check(self, section: str) -> None:
        from rnnpipe.features.calendar import parse

        check_series_name(self, section)
        parse(self.calendar)
        both = set(self.known_features) & {*self.features, self.target_col}
        if both:
            raise ConfigError(
                f"{section}.known_features: {sorted(both)[0]!r} is also the target or in "
                f"{section}.features; a column is either known in advance or not"
            )


@dataclass
class SplitConfig:
    train: float = 0.70  # fractions of each series, in time order; test gets the rest
    val: float = 0.15  # the next fraction: validation (early stopping, every choice)
    val_start: str = ""  # cut dates (ISO); when both are set they replace the fractions
    test_start: str = ""  # the first test timestamp (with val_start)


@dataclass
class WindowConfig:
    CHOICES: ClassVar = {"target": {"level", "diff", "log_return"}, "scaler": {"standard", "minmax", "robust"}}
    POSITIVE: ClassVar = ("lookback", "horizon")
    lookback: int = 60  # steps of history in a window
    horizon: int = 1  # steps ahead forecast from each window
    target: str = "log_return"  # level | diff | log_return (relative to the last observed value)
    scaler: str = "standard"  # standard | minmax | robust, fitted per series on train only
    season: int = 0  # steps per season (e.g. 5 trading days); >= 2 adds seasonal naive and a seasonal MASE scale

    def check(self, section: str) -> None:
        if self.season < 0 or self.season == 1:
            raise ConfigError(f"{section}.season={self.season}: 0 (none) or the steps per season (>= 2)")


BUNDLED_VECTORS = "data/word_vectors.parquet"  # the reviews embedding's default start (data/SOURCES.md)
STATISTICAL_BASELINES = ("autoets", "autotheta", "autoarima")


@dataclass
class BaselinesConfig:
    # StatsForecast models fitted per series on the training part, scored on the model's own
    # test points: autoets | autotheta | autoarima (slow on 2,000+ points)
    statistical: list[str] = field(default_factory=lambda: ["autoets", "autotheta"])
    # each model is fitted on at most this many of a series' last training points (0: all)
    history: int = 3000
    # and from each origin reads at most this many past points (0: all): `forward` re-reads
    # its whole input at every origin (AutoTheta re-estimates its trend on it), 7-8 ms at
    # 3,000 points and under 1 ms at 1,000; chosen on validation (bench_forecast.py --only
    # statistical --histories 3000 3000/1000)
    forward_history: int = 1000
    # gradient boosting (scikit-learn's HistGradientBoostingRegressor) on the same window:
    # lags of the target, the last value of every input, calendar and known inputs at the
    # forecast step, the step itself; early stopping on the validation windows
    gbm: bool = True

    def check(self, section: str) -> None:
        for key in ("history", "forward_history"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{section}.{key}={getattr(self, key)}: 0 (all) or a number of points")
        bad = [m for m in self.statistical if m not in STATISTICAL_BASELINES]
        if bad:
            raise ConfigError(
                f"{section}.statistical: unknown model {bad[0]!r} (expected among {', '.join(STATISTICAL_BASELINES)})"
            )


@dataclass
class ModelConfig:
    CHOICES: ClassVar = {
        "cell": {"rnn", "lstm", "gru"},
        "pooling": {"last", "mean", "max", "attention"},
        "highway": {"none", "linear"},
        "recipe": {"residual", "joint"},
    }
    POSITIVE: ClassVar = ("hidden_size", "num_layers")

    cell: str = "lstm"  # rnn | lstm | gru
    hidden_size: int = 64  # units of each recurrent layer
    num_layers: int = 2  # stacked recurrent layers
    dropout: float = 0.2  # between layers and before the output
    bidirectional: bool = False  # also read the window backwards (classifiers)
    pooling: str = "last"  # last | mean | max | attention
    # how the recurrent part learns beside the linear part (forecasters): residual (the linear
    # part keeps its closed-form fit, fixed; the recurrent output, scaled to the spread of the
    # linear part's training residuals, learns what it leaves) | joint (both start from zero
    # and train together, as LSTNet)
    recipe: str = "residual"
    # under the residual recipe, the linear part's learning rate as a multiple of train.lr
    # (0: kept fixed at its closed-form fit)
    linear_lr_mult: float = 0.0

    def encoder(self) -> dict[str, Any]:
        """The recurrent encoder's settings, as every kind's model takes them."""
        keys = ("cell", "hidden_size", "num_layers", "dropout", "bidirectional", "pooling")
        return {k: getattr(self, k) for k in keys}

    # forecasters: the recurrent encoder reads the last N steps of the window (0: all of it;
    # the linear part always reads all): long windows (a week of half-hours) train in minutes
    encoder_lookback: int = 0
    # none | linear: a linear part on the window beside the recurrent output, trained jointly
    # (forecasters: an autoregressive "highway" on the window; window classifiers: a wide part
    # on its summary statistics). The linear part fitted alone is the candidate to beat, so the
    # model never ends worse on validation. Default chosen on validation over every bundled
    # set (docs: decisions/highway.md)
    highway: str = "linear"
    # forecasters only (stocks, the monitor's channel forecaster): also forecast these
    # quantiles of each step, trained with the pinball loss beside the point forecast (which
    # stays the mean head); [] for point forecasts only. The outermost pair gives the
    # interval whose coverage is reported (0.1 and 0.9: test_coverage_80)
    quantiles: list[float] = field(default_factory=lambda: [0.1, 0.5, 0.9])

    def check(self, section: str) -> None:
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{section}.dropout={self.dropout}: must be in [0, 1)")
        q = self.quantiles
        if any(not 0 < v < 1 for v in q) or list(q) != sorted(set(q)):
            raise ConfigError(f"{section}.quantiles={q}: distinct levels in (0, 1), in increasing order")
        if len(q) == 1:
            raise ConfigError(f"{section}.quantiles={q}: give at least two levels (an interval), or []")


@dataclass
class TrainConfig:
    CHOICES: ClassVar = {"lr_schedule": {"cosine", "plateau", "none"}, "precision": {"auto", "bf16", "fp32"}}
    POSITIVE: ClassVar = ("epochs", "batch_size", "patience")
    epochs: int = 30  # at most; early stopping on val (patience) usually ends sooner
    batch_size: int = 256  # windows (texts, stream rows) per step
    lr: float = 1e-3  # AdamW's learning rate at the start of the schedule
    weight_decay: float = 1e-2  # AdamW's decoupled weight decay
    clip_grad_norm: float = 1.0  # gradients rescaled to at most this norm (0: off)
    lr_schedule: str = "cosine"  # cosine | plateau | none
    patience: int = 5  # epochs without val improvement before stopping
    device: str = "auto"  # auto (cuda, mps, cpu) | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto (bf16 on CUDA) | bf16 | fp32
    seed: int = 42  # torch, numpy and the shuffling; logged as the run's tag `seed`
    # reshuffle the training windows every epoch; false keeps them in order (batch for batch
    # comparable runs, e.g. a streamed run against the same data in memory)
    shuffle: bool = True
    # CPU threads of torch: auto (the cores this process may use, its share in a sweep,
    # backtest or batch worker) | a number; the number used is the run's tag `torch_threads`
    threads: str = "auto"

    def check(self, section: str) -> None:
        from rnnpipe.threads import parse

        parse(self.threads)


@dataclass
class RegisterConfig:
    experiment: str = "stocks"  # the MLflow experiment of the runs
    # the registered model the version goes to (a run on your own data.path gets a name of
    # its own, derived from the file, unless this is set)
    model_name: str = "stocks-forecaster"
    metric: str = "test_mae"  # lower is better
    # champion only if metric <= the best of `gate_baselines` x (1 + margin): champion means
    # best of what was scored, so no margin by default
    naive_margin: float = 0.0
    # the baselines the gate compares with (each must be scored in the run: see baselines.*)
    gate_baselines: list[str] = field(default_factory=lambda: ["naive", "autoets", "autotheta", "gbm"])
    # a model that loses to its best gate baseline: register that baseline too, as a servable
    # version (alias `baseline`; champion if it beats the current one)
    register_baseline: bool = True


@dataclass
class BacktestConfig:
    CHOICES: ClassVar = {"refit": {"every", "once"}}
    POSITIVE: ClassVar = ("folds", "step")
    # `rnnpipe backtest stocks`: expanding-window folds at the end of every series; fold k
    # trains on the rows before its origin and forecasts the next `step` rows
    folds: int = 5
    step: int = 60  # rows (trading days for the bundled stocks) of each fold's test block
    refit: str = "every"  # every: a model per fold | once: fold 1's model serves every fold


@dataclass
class ForecastConfig:
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)

    def validate(self) -> ForecastConfig:
        check_sections(self)
        scored = {
            "naive",
            "ridge",
            *self.baselines.statistical,
            *(["seasonalnaive"] if self.window.season else []),
            *(["gbm"] if self.baselines.gbm else []),
        }
        missing = [b for b in self.register.gate_baselines if b not in scored]
        if missing:
            raise ConfigError(
                f"register.gate_baselines: {missing[0]!r} is not scored in this run "
                f"(scored: {', '.join(sorted(scored))}; see baselines.statistical, baselines.gbm, "
                "window.season)"
            )
        if not self.register.gate_baselines:
            raise ConfigError("register.gate_baselines: name at least one baseline (e.g. naive)")
        if bool(self.split.val_start) != bool(self.split.test_start):
            raise ConfigError("split.val_start and split.test_start must be given together")
        if not self.split.val_start:
            if not (0 < self.split.train < 1 and 0 < self.split.val < 1 and self.split.train + self.split.val < 1):
                raise ConfigError(
                    f"split.train={self.split.train}, split.val={self.split.val}: each must be in "
                    "(0, 1) and their sum below 1 (the test part gets the rest)"
                )
        return self


@dataclass
class MonitorDataConfig:
    CHOICES: ClassVar = {"format": {"auto", "csv", "parquet"}, "duplicates": {"error", "mean"}}
    path: str = "data/glucose.parquet"  # long format: one row per patient and timestamp
    format: str = "auto"
    timestamp_col: str = "timestamp"
    series_col: str = "patient_id"  # "" = the whole file is one patient, named `series_name`
    series_name: str = ""  # that patient's name without series_col ("" = the file's name)
    channels: list[str] = field(default_factory=lambda: ["glucose"])
    event: str = "glucose < 70"  # rule on a channel ...
    label_col: str = ""  # ... or a 0/1 column (give exactly one)
    series: list[str] = field(default_factory=list)  # [] = all patients
    # error: a repeated (patient, timestamp) stops the run, naming both rows | mean: readings
    # logged twice are averaged (the bundled sample was cleaned this way when it was built)
    duplicates: str = "error"
    # streamed training for data larger than memory (rnnpipe.streaming): true | false | auto
    # (auto: a Parquet dataset of more than `stream_above_rows` readings, from its metadata)
    streaming: str = "auto"
    stream_above_rows: int = 20_000_000
    # the scaler and the baselines are fitted on a seeded sample of training patients, up to
    # this many readings (all of them when the training part is smaller)
    stream_sample_rows: int = 2_000_000

    def check(self, section: str) -> None:
        check_series_name(self, section)
        words = {
            "true": "true",
            "1": "true",
            "yes": "true",
            "on": "true",
            "false": "false",
            "0": "false",
            "no": "false",
            "off": "false",
            "auto": "auto",
        }
        value = str(self.streaming).strip().lower()
        if value not in words:
            raise ConfigError(f"{section}.streaming={self.streaming!r}: expected true, false or auto")
        self.streaming = words[value]
        for key in ("stream_above_rows", "stream_sample_rows"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{section}.{key}={getattr(self, key)}: must be at least 1")


@dataclass
class ResampleConfig:
    CHOICES: ClassVar = {"fill": {"interpolate", "ffill", "none"}}
    step: str = "5min"  # fixed grid per patient
    max_gap: str = "30min"  # longer gaps are never filled and no window spans them
    fill: str = "interpolate"  # interpolate | ffill | none (for gaps up to max_gap)
    mark: bool = False  # add an `observed` input channel (1 = real reading, 0 = filled)


@dataclass
class MonitorSplitConfig:
    POSITIVE: ClassVar = ("min_events",)
    train: float = 0.70  # by patient when there are 3 or more, else in time order
    val: float = 0.15
    seed: int = 0  # shuffles patients for the grouped split
    val_start: str = ""  # cut dates (ISO): when both are set, every patient is split in time
    test_start: str = ""  # order at these dates instead
    # val and test must each hold at least this many event windows (onset windows where
    # onset metrics decide), or the run stops before training: a model cannot be judged
    # (nor a threshold chosen) on a part without events
    min_events: int = 5


@dataclass
class MonitorWindowConfig:
    CHOICES: ClassVar = {"scaler": {"standard", "minmax", "robust"}}
    POSITIVE: ClassVar = ("lookback", "horizon")
    lookback: int = 24  # steps of history (24 x 5 min = 2 h)
    horizon: int = 6  # warn of an event within the next K steps (6 x 5 min = 30 min)
    scaler: str = "standard"  # fitted on training rows, pooled over patients
    deltas: bool = True  # add each channel's one-step change as an input


@dataclass
class ClassifyConfig:
    CHOICES: ClassVar = {
        "class_weight": {"none", "balanced"},
        "threshold": {"f1", "recall"},
        "threshold_on": {"onset", "all"},
    }
    class_weight: str = "none"  # none | balanced (positive class weighted by its rarity in train)
    threshold: str = "f1"  # f1 (max F1 on val) | recall (highest threshold reaching target_recall)
    target_recall: float = 0.8  # the recall the `recall` rule's threshold must reach on val
    threshold_on: str = "onset"  # onset | all: which val windows choose the threshold


@dataclass
class ChannelForecastConfig:
    CHOICES: ClassVar = {"target": {"level", "diff"}}
    enabled: bool = True  # also train a forecaster of one channel, logged as a child run
    channel: str = ""  # forecast this channel window.horizon steps ahead ("" = the first of data.channels)
    target: str = "diff"  # level | diff (change from the last reading)


@dataclass
class ClassifierRegisterConfig:
    experiment: str = "monitor"
    model_name: str = "monitor-classifier"
    metric: str = "test_f1_onset"  # higher is better
    baseline_margin: float = 0.0  # champion only if metric >= best baseline x (1 - margin)


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
class MonitorConfig:
    data: MonitorDataConfig = field(default_factory=MonitorDataConfig)
    resample: ResampleConfig = field(default_factory=ResampleConfig)
    split: MonitorSplitConfig = field(default_factory=MonitorSplitConfig)
    window: MonitorWindowConfig = field(default_factory=MonitorWindowConfig)
    # the channel forecaster trains its linear part jointly: on the glucose validation part
    # (MAE 7.73 joint, 7.88 residual; docs: decisions/recipe.md)
    model: ModelConfig = field(
        default_factory=lambda: ModelConfig(
            hidden_size=32, num_layers=1, dropout=0.0, bidirectional=True, pooling="attention", recipe="joint"
        )
    )
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=15, batch_size=256, lr=2e-3, weight_decay=1e-4, patience=4)
    )
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    forecast: ChannelForecastConfig = field(default_factory=ChannelForecastConfig)
    register: ClassifierRegisterConfig = field(default_factory=ClassifierRegisterConfig)

    def validate(self) -> MonitorConfig:
        check_sections(self)
        if not self.data.channels:
            raise ConfigError("data.channels: name at least one channel column")
        if bool(self.data.event) == bool(self.data.label_col):
            raise ConfigError("give exactly one of data.event (e.g. 'glucose < 70') and data.label_col")
        if bool(self.split.val_start) != bool(self.split.test_start):
            raise ConfigError("split.val_start and split.test_start must be given together")
        if self.data.streaming == "true" and self.split.val_start:
            raise ConfigError(
                "data.streaming=true splits by patient; split.val_start / split.test_start "
                "(a split in time) needs the whole data set in memory"
            )
        if self.data.streaming == "true" and not self.data.series_col:
            raise ConfigError("data.streaming=true needs data.series_col: shards are groups of patients")
        if not (0 < self.split.train < 1 and 0 < self.split.val < 1 and self.split.train + self.split.val < 1):
            raise ConfigError(
                f"split.train={self.split.train}, split.val={self.split.val}: each must be in "
                "(0, 1) and their sum below 1 (the test part gets the rest)"
            )
        if not self.forecast.channel:
            self.forecast.channel = self.data.channels[0]
        if self.forecast.enabled and self.forecast.channel not in self.data.channels:
            raise ConfigError(
                f"forecast.channel={self.forecast.channel!r} is not among data.channels "
                f"({', '.join(self.data.channels)}); set forecast.enabled=false to skip it"
            )
        if not 0 < self.classify.target_recall <= 1:
            raise ConfigError("classify.target_recall must be in (0, 1]")
        return self


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


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"  # the Prefect server `rnnpipe schedule` uses (or starts)
    port: int = 4200  # its port (`rnnpipe schedule --port` overrides it)


@dataclass
class TrainScheduleConfig:
    pipelines: list[str] = field(default_factory=lambda: ["stocks"])  # any of `rnnpipe train`'s
    cron: str = "0 2 * * *"  # nightly retrain at 02:00 (server time zone) ...
    interval_s: int = 0  # ... or every N seconds instead, when > 0
    overrides: list[str] = field(default_factory=list)  # KEY=VALUE for every retrain, e.g. "train.epochs=10"


@dataclass
class PredictScheduleConfig:
    POSITIVE: ClassVar = ("interval_s", "chunk_rows")
    enabled: bool = True  # also a batch-prediction deployment
    model: str = "stocks-forecaster@champion"  # resolved at every run: always the current champion
    input: str = "data/stocks.parquet"  # the file, folder or dataset each run predicts
    output: str = "predictions/stocks-forecast.parquet"  # replaced atomically by each run
    interval_s: int = 3600  # every N seconds
    chunk_rows: int = 50_000  # rows read and predicted at a time


@dataclass
class ScheduleConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    train: TrainScheduleConfig = field(default_factory=TrainScheduleConfig)
    predict: PredictScheduleConfig = field(default_factory=PredictScheduleConfig)

    def validate(self) -> ScheduleConfig:
        check_sections(self)
        from rnnpipe import kinds

        unknown = [p for p in self.train.pipelines if p not in kinds.KINDS]
        if unknown:
            raise ConfigError(f"train.pipelines: unknown pipeline {unknown[0]!r} ({', '.join(kinds.names())})")
        if not self.train.interval_s and len(self.train.cron.split()) != 5:
            raise ConfigError(f"train.cron={self.train.cron!r}: expected 5 fields, e.g. '0 2 * * *'")
        return self


def check_series_name(d: Any, section: str) -> None:
    """Without a series column the file is one series: it is named `series_name`, or after
    the file (its name without the extension)."""
    if not d.series_col and not d.series_name:
        d.series_name = Path(d.path.rstrip("/")).stem or "series"
    if not d.series_col and d.series:
        raise ConfigError(
            f"{section}.series={d.series}: there is no {section}.series_col, so the file "
            "is one series; leave series empty"
        )


def check_pattern(pattern: str, key: str) -> None:
    """A tokenizer regex must compile."""
    import re

    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{key}={pattern!r}: not a valid regex: {exc}") from None


def check_sections(cfg: Any) -> None:
    """Each section's own rules: values among its CHOICES, POSITIVE fields at least 1, and its
    `check(section_name)` if it has one."""
    for section in dataclasses.fields(cfg):
        sub = getattr(cfg, section.name)
        for key, allowed in getattr(sub, "CHOICES", {}).items():
            value = getattr(sub, key)
            if value not in allowed:
                raise ConfigError(f"{section.name}.{key}={value!r}: expected one of {', '.join(sorted(allowed))}")
        for key in getattr(sub, "POSITIVE", ()):
            if getattr(sub, key) < 1:
                raise ConfigError(f"{section.name}.{key}={getattr(sub, key)}: must be at least 1")
        if hasattr(sub, "check"):
            sub.check(section.name)


# --- generic machinery (works for any dataclass tree) -------------------------------------


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def flatten(cfg: Any) -> dict[str, Any]:
    """{"model.hidden_size": 64, ...}: the MLflow params of a run."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = value

    walk("", to_dict(cfg))
    return out


def from_dict(cls: type, data: dict[str, Any], _prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        key = f"{_prefix}{sorted(unknown)[0]}"
        raise ConfigError(f"unknown config key {key!r} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{_prefix}{name} is a section; give keys like {_prefix}{name}.KEY")
            kwargs[name] = from_dict(hint, value, f"{_prefix}{name}.")
        else:
            kwargs[name] = _coerce(f"{_prefix}{name}", value, hint)
    return cls(**kwargs)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (list, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint) or (str,)
        return [_coerce(key, v, item) for v in value]
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in {"true", "1", "yes", "on"}:
            return True
        if str(value).lower() in {"false", "0", "no", "off"}:
            return False
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}") from None
        if hint is int and isinstance(value, float) and value != int(value):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return number
    if hint is str:
        return str(value)
    return value


def _parse_value(text: str) -> Any:
    """A `--set` value as TOML would read it (numbers, booleans, lists, quoted strings),
    otherwise the bare text; a list of bare words (`[naive, autoets]`) is a list of them."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if text.startswith("[") and text.endswith("]"):
            return [_parse_value(item.strip()) for item in text[1:-1].split(",") if item.strip()]
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. model.hidden_size=128")
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_value(text.strip())
    return data


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | None = None):
    """Defaults, then the TOML file, then the `key=value` overrides; validated."""
    data: dict[str, Any] = to_dict(cls())
    file_data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            file_data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
        _merge(data, file_data)
        try:  # a setting of the file that does not exist is named with the file
            from_dict(cls, data)
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None
    apply_overrides(data, overrides or [])
    given = _keys(file_data) | {o.partition("=")[0].strip() for o in overrides or []}
    sample_defaults(cls, data, given)
    replaced_defaults(cls, data, given)
    own_data_name(cls, data, given)
    bundled_defaults(cls, data, given)
    cfg = from_dict(cls, data)
    return cfg.validate() if hasattr(cfg, "validate") else cfg


def sample_defaults(cls: type, data: dict[str, Any], given: set[str]) -> None:
    """A section whose `path` is not its default (the bundled sample) drops the defaults that
    describe that sample only (its SAMPLE_ONLY keys, e.g. the three tickers of
    data/stocks.parquet), unless the user gave them: a user's own file works with the obvious
    column mapping alone."""
    defaults = cls()
    for f in dataclasses.fields(cls):
        section = getattr(defaults, f.name)
        sample = getattr(section, "SAMPLE_ONLY", {})
        values = data.get(f.name)
        if not sample or not isinstance(values, dict) or values.get("path") == section.path:
            continue
        for key, value in sample.items():
            if f"{f.name}.{key}" not in given:
                values[key] = value


def own_data_name(cls: type, data: dict[str, Any], given: set[str]) -> None:
    """A model trained on data other than the bundled sample gets a name of its own, unless
    the user gave one: `register.model_name` with the sample's part (`stocks` of
    `stocks-forecaster`) replaced by the data file's (`prices-forecaster` for prices.csv).
    Its test metric is not comparable with the bundled model's, so it must not compete for
    that model's champion (the registry's gate refuses that too: rule `other-data`)."""
    defaults = cls()
    register, data_section = getattr(defaults, "register", None), getattr(defaults, "data", None)
    if register is None or not hasattr(data_section, "path") or "register.model_name" in given:
        return
    path = str(data.get("data", {}).get("path") or "")
    if not path or path == data_section.path or data.get("register", {}).get("model_name") != register.model_name:
        return
    stem = Path(path.rstrip("/")).name.split(".")[0]
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "data"
    kind = register.model_name.split("-", 1)[1] if "-" in register.model_name else register.model_name
    data["register"]["model_name"] = f"{slug}-{kind}"


def bundled_defaults(cls: type, data: dict[str, Any], given: set[str]) -> None:
    """A default that names a bundled file (`data/stocks.parquet`) and that the user left
    alone becomes the installed file's absolute path: it never means a file of that name in
    the user's folder (a path the user gives is read from where the user is)."""
    from rnnpipe.settings import bundled_file

    defaults = to_dict(cls())
    for section, values in defaults.items():
        if not isinstance(values, dict) or not isinstance(data.get(section), dict):
            continue
        for key, default in values.items():
            if (
                isinstance(default, str)
                and f"{section}.{key}" not in given
                and data[section].get(key) == default
                and (found := bundled_file(default))
            ):
                data[section][key] = str(found)


def replaced_defaults(cls: type, data: dict[str, Any], given: set[str]) -> None:
    """A setting the user gives that brings what some defaults provide (its class's REPLACES:
    `pretrain.model`, a language model that gives the embedding) turns those defaults off
    (the bundled word vectors), unless the user gave them too: then `validate` names the clash."""
    for key, replaced in getattr(cls, "REPLACES", {}).items():
        section, name = key.split(".")
        if key not in given or not data.get(section, {}).get(name):
            continue
        for other, value in replaced.items():
            if other not in given:
                part, field_name = other.split(".")
                data[part][field_name] = value


def _keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in data.items():
        out |= _keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return out


def _merge(base: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def to_toml(cfg: Any) -> str:
    """The config as a TOML file a user can edit and pass back with --config."""
    lines: list[str] = []
    for section, values in to_dict(cfg).items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
