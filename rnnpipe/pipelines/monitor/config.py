"""Settings of the monitoring pipeline (`rnnpipe train monitor`): early warning and the channel forecaster.

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
    check_sections,
    check_series_name,
)
from rnnpipe.errors import ConfigError


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
    # streamed training for data larger than memory (rnnpipe.pipelines.monitor.streaming): true | false | auto
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
class MonitorConfig:
    # the default search space of `rnnpipe tune monitor` (docs: tuning); a [tune.space] table replaces it
    TUNE_SPACE: ClassVar[dict[str, str]] = {
        "model.cell": "choice lstm gru",
        "model.hidden_size": "int 16 128 log",
        "model.num_layers": "int 1 2",
        "model.dropout": "float 0.0 0.5",
        "model.highway": "choice linear none",
        "window.lookback": "int 12 48",
        "train.lr": "float 0.0003 0.01 log",
        "train.weight_decay": "float 0.000001 0.01 log",
        "train.batch_size": "choice 64 128 256 512",
    }

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
    drift: DriftConfig = field(default_factory=DriftConfig)

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
