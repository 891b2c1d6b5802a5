"""A toy pipeline kind, declared outside rnnpipe, to show (and test) that a new kind is one
package plus one `PipelineKind` line in `rnnpipe.kinds` (docs: adding-a-pipeline.md).

It forecasts the next value of one column as the mean of the training part, judged against
a zero forecast: no torch, so the test is about the wiring, not the model. The library part
is here (the settings, the reader, the artefact and its steps); the Prefect flow, three
lines of orchestration, is in `toy_kind.flow`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from rnnpipe import artefact
from rnnpipe.config import TrainConfig, check_sections
from rnnpipe.errors import DataError
from rnnpipe.io import preloadable
from rnnpipe.kinds import PipelineKind
from rnnpipe.registry import Run
from rnnpipe.steps import Context, Evaluated, TrainingSteps

# --- the settings --------------------------------------------------------------------------


@dataclass
class ToyDataConfig:
    path: str = ""  # a CSV file with the column
    value_col: str = "value"  # the column forecast


@dataclass
class ToyRegisterConfig:
    experiment: str = "toy"
    model_name: str = "toy-mean"
    metric: str = "test_mae"  # lower is better


@dataclass
class ToyConfig:
    data: ToyDataConfig = field(default_factory=ToyDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)  # only its seed is read
    register: ToyRegisterConfig = field(default_factory=ToyRegisterConfig)

    def validate(self) -> ToyConfig:
        check_sections(self)
        return self


# --- reading the data (what the CLI runs before the flow starts) ----------------------------


@preloadable
def load_values(cfg: ToyConfig) -> pd.DataFrame:
    frame = pd.read_csv(cfg.data.path)
    bad = frame[cfg.data.value_col].isna().to_numpy().nonzero()[0]
    if len(bad):
        raise DataError(f"{cfg.data.path}, row {bad[0] + 1}: column {cfg.data.value_col!r} is empty")
    return frame


# --- the fitted artefact ---------------------------------------------------------------------


class MeanForecast:
    """The fitted artefact: conforms to `rnnpipe.artefact.Artefact`."""

    KIND: ClassVar[str] = "toy"

    def __init__(self, config: ToyConfig, mean: float):
        self.config, self.mean = config, mean

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        (p / "toy.json").write_text(json.dumps({"value_col": self.config.data.value_col, "mean": self.mean}))
        artefact.mark(p, self.KIND)
        return p

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> MeanForecast:
        p = Path(path)
        artefact.check(p, cls.KIND)
        state = json.loads((p / "toy.json").read_text())
        return cls(ToyConfig(data=ToyDataConfig(value_col=state["value_col"])), state["mean"])

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.config.data.value_col not in frame.columns:
            raise DataError(f"input: column {self.config.data.value_col!r} not found")
        return pd.DataFrame({"forecast": np.full(len(frame), self.mean)})

    def batch_spec(self, available: list[str]) -> tuple[list[str], str | None]:
        return [self.config.data.value_col], None


@dataclass
class ToyPrepared:
    """The prepared data (`rnnpipe.artefact.PreparedData`): the first 80% of the rows train."""

    frame: pd.DataFrame
    source: str
    values: np.ndarray
    cut: int
    preprocessor: Any = None  # nothing to fit before the model

    @property
    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(self.values.tobytes()).hexdigest()

    def counts(self) -> dict[str, int]:
        return {"train": self.cut, "test": len(self.values) - self.cut}


class ToySteps(TrainingSteps):
    """The toy's steps (`rnnpipe.steps`): what its flow and a sweep trial run."""

    kind: ClassVar[str] = "toy"

    def ingest(self, cfg: ToyConfig, ctx: Context) -> pd.DataFrame:
        return load_values(cfg)

    def prepare(self, frame: pd.DataFrame, cfg: ToyConfig, ctx: Context) -> ToyPrepared:
        values = frame[cfg.data.value_col].to_numpy(float)
        return ToyPrepared(frame, cfg.data.path, values, int(0.8 * len(values)))

    def build(self, cfg: ToyConfig, prepared: ToyPrepared, state, run_id: str, ctx: Context) -> MeanForecast:
        return MeanForecast(cfg, float(prepared.values[: prepared.cut].mean()))

    def fit(self, pipeline, prepared, cfg, run_id, checkpoint, ctx) -> None:
        return None  # the mean is fitted when built: no training loop

    def evaluate(self, pipeline: MeanForecast, prepared: ToyPrepared, result, run_id: str, ctx: Context) -> Evaluated:
        """MAE on the last 20% of the rows, the zero forecast's beside it."""
        test = prepared.values[prepared.cut :]
        metrics = {"test_mae": float(np.abs(test - pipeline.mean).mean()), "zero_test_mae": float(np.abs(test).mean())}
        Run(run_id).log_metrics(metrics)
        return Evaluated(metrics)

    def example(self, cfg: ToyConfig, frame: pd.DataFrame, prepared: ToyPrepared) -> pd.DataFrame:
        return frame.head(5)


def gate_spec(cfg: ToyConfig) -> dict[str, Any]:
    return dict(
        metric=cfg.register.metric,
        baselines={"zero": f"zero_{cfg.register.metric}"},
        margin=0.0,
        greater_is_better=False,
    )


# --- the one line a new kind adds to rnnpipe.kinds.KINDS -----------------------------------

KIND = PipelineKind(
    "toy",
    "the mean of a column (a test of the kinds registry)",
    config="toy_kind:ToyConfig",
    flow="toy_kind.flow:train_toy",
    pipeline="toy_kind:MeanForecast",
    artefact="toy",
    steps="toy_kind:ToySteps",
    gate="toy_kind:gate_spec",
    ingest="toy_kind:load_values",
)
