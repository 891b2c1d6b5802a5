"""Settings of `rnnpipe schedule`: the Prefect server, the retrain and batch deployments.

One name per setting everywhere: see `rnnpipe.config` (the machinery all kinds share).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from rnnpipe.config import (
    check_sections,
)
from rnnpipe.errors import ConfigError, DataError


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
    input: str = "data/stocks.parquet"  # the file, folder or dataset each run predicts (relative: to where you are)
    output: str = "predictions/stocks-forecast.parquet"  # replaced by each run (relative: in the project folder)
    interval_s: int = 3600  # every N seconds
    chunk_rows: int = 50_000  # rows read and predicted at a time
    # statuses of a run's drift report ("drift", "warn") or realised accuracy ("degraded") that
    # start the retrain deployment at once, with the evidence as its reason; [] = never
    retrain_on: list[str] = field(default_factory=list)
    retrain: str = ""  # the pipeline retrained on evidence ("" = the first of train.pipelines)


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
        bad = [s for s in self.predict.retrain_on if s not in ("drift", "warn", "degraded")]
        if bad:
            raise ConfigError(f"predict.retrain_on: {bad[0]!r} is not a status (drift, warn, degraded)")
        if self.predict.retrain and self.predict.retrain not in self.train.pipelines:
            raise ConfigError(
                f"predict.retrain={self.predict.retrain!r}: not among train.pipelines "
                f"({', '.join(self.train.pipelines)}), so it has no retrain deployment"
            )
        if self.predict.retrain_on and not self.train.pipelines:
            raise ConfigError("predict.retrain_on: there is no retrain deployment (train.pipelines is empty)")
        if self.predict.enabled:
            from rnnpipe.io import output_kind

            try:
                output_kind(self.predict.output, name=f"predict.output={self.predict.output!r}")
            except DataError as exc:
                raise ConfigError(str(exc)) from None
        if not self.train.interval_s and len(self.train.cron.split()) != 5:
            raise ConfigError(f"train.cron={self.train.cron!r}: expected 5 fields, e.g. '0 2 * * *'")
        return self
