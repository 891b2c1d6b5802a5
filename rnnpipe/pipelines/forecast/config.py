"""Settings of the forecasting pipeline (`rnnpipe train stocks`, `rnnpipe backtest stocks`).

One name per setting everywhere: see `rnnpipe.config` (the machinery all kinds share).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from rnnpipe.config import (
    DriftConfig,
    ModelConfig,
    TrainConfig,
    check_sections,
    check_series_name,
)
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
    # the default search space of `rnnpipe tune stocks` (docs: tuning); a [tune.space] table replaces it
    TUNE_SPACE: ClassVar[dict[str, str]] = {
        "model.cell": "choice lstm gru",
        "model.hidden_size": "int 16 128 log",
        "model.num_layers": "int 1 3",
        "model.dropout": "float 0.0 0.5",
        "model.highway": "choice linear none",
        "model.recipe": "choice residual joint",
        "window.lookback": "int 20 120",
        "train.lr": "float 0.0001 0.01 log",
        "train.weight_decay": "float 0.000001 0.1 log",
        "train.batch_size": "choice 64 128 256 512",
    }

    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    # lr 3e-3: chosen on validation over every bundled series (docs: decisions/recipe.md)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=3e-3))
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)

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
