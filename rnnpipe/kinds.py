"""The pipeline kinds rnnpipe knows, declared once.

This is the one place that enumerates pipelines. The CLI (`rnnpipe train NAME`, `rnnpipe
config NAME`, `rnnpipe sweep NAME`), the schedule settings, the sweep trials, the champion
gate and the pyfunc loader all read it. A new kind brings its own modules (config, library,
tasks, flow) and one `PipelineKind` line here.

References are `"module:attribute"` strings resolved on use, so importing this module (and
`rnnpipe --help`) stays free of torch, Prefect and MLflow.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from rnnpipe.errors import ConfigError


def load(ref: str) -> Any:
    """`"package.module:name"` -> the object."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class PipelineKind:
    """What makes a pipeline: its settings, its flow, its fitted artefact, how it is judged and
    what its training steps are."""

    name: str  # `rnnpipe train NAME`
    summary: str  # one line for `rnnpipe train --help`
    config: str  # the settings: a dataclass tree with `validate()`
    flow: str  # the Prefect training flow: flow(config=dict, resume=bool) -> summary dict
    pipeline: str  # the fitted artefact: save/load, predict(DataFrame), batch_spec; class attribute KIND
    artefact: str  # that KIND: what a logged pyfunc model records (`model_config["kind"]`)
    steps: str  # its steps (`rnnpipe.steps.TrainingSteps`): what the flow and a sweep trial run
    gate: str  # cfg -> the gate's keyword arguments (metric, baselines, margin, greater_is_better)
    ingest: str  # cfg -> the validated data, as the flow's ingest task reads it (`rnnpipe.io.preloadable`)
    series: bool = False  # the data has series (tickers, patients): `--per-series` applies
    backtest: str = ""  # the Prefect backtest flow (`rnnpipe backtest NAME`), for forecasters
    # (saved config.json, path, fmt, saved=...) -> None: a batch input's values checked as
    # training reads them, before the job starts; `saved(name)` is the path of another file of
    # the saved pipeline (e.g. "pipeline/preprocessor.json"); torch-free, so that a bad file
    # fails fast ("" = no such check)
    check: str = ""
    # a servable baseline registered when the model loses to it: its artefact kind and class
    baseline_artefact: str = ""
    baseline: str = ""

    def config_class(self) -> type:
        return load(self.config)

    def steps_object(self):
        return load(self.steps)()

    def flow_function(self):
        return load(self.flow)

    def pipeline_class(self) -> type:
        return load(self.pipeline)


KINDS: dict[str, PipelineKind] = {
    k.name: k
    for k in (
        PipelineKind(
            "stocks",
            "daily price forecasting (bundled: AAPL, IBM, MSFT closes)",
            config="rnnpipe.pipelines.forecast.config:ForecastConfig",
            flow="rnnpipe.flows.forecast:train_stocks",
            pipeline="rnnpipe.pipelines.forecast.artefact:ForecastPipeline",
            artefact="forecast",
            steps="rnnpipe.pipelines.forecast.steps:ForecastSteps",
            gate="rnnpipe.pipelines.forecast.artefact:gate_spec",
            ingest="rnnpipe.pipelines.forecast.data:load_forecast_data",
            series=True,
            backtest="rnnpipe.flows.backtest:backtest",
            check="rnnpipe.pipelines.forecast.data:check_history",
            baseline_artefact="forecast-baseline",
            baseline="rnnpipe.pipelines.forecast.baseline_artefact:BaselineForecastPipeline",
        ),
        PipelineKind(
            "monitor",
            "early warning and vital-sign forecasting (bundled: a glucose monitor)",
            config="rnnpipe.pipelines.monitor.config:MonitorConfig",
            flow="rnnpipe.flows.monitor:train_monitor",
            pipeline="rnnpipe.pipelines.monitor.artefact:MonitorPipeline",
            artefact="monitor",
            steps="rnnpipe.pipelines.monitor.steps:MonitorSteps",
            gate="rnnpipe.pipelines.monitor.artefact:gate_spec",
            ingest="rnnpipe.pipelines.monitor.data:load_monitor_data",
            series=True,
            check="rnnpipe.pipelines.monitor.data:check_readings",
        ),
        PipelineKind(
            "reviews",
            "review sentiment, raw text in (bundled: Amazon fine-food reviews)",
            config="rnnpipe.pipelines.reviews.config:ReviewsConfig",
            flow="rnnpipe.flows.reviews:train_reviews",
            pipeline="rnnpipe.pipelines.reviews.artefact:ReviewsPipeline",
            artefact="reviews",
            steps="rnnpipe.pipelines.reviews.steps:ReviewsSteps",
            gate="rnnpipe.pipelines.reviews.artefact:gate_spec",
            ingest="rnnpipe.pipelines.reviews.prepare:load_reviews",
            check="rnnpipe.pipelines.reviews.data:check_reviews_input",
        ),
        PipelineKind(
            "lm",
            "a recurrent language model of texts that continues a prompt (bundled: the reviews)",
            config="rnnpipe.pipelines.lm.config:LMConfig",
            flow="rnnpipe.flows.lm:train_lm",
            pipeline="rnnpipe.pipelines.lm.artefact:LMPipeline",
            artefact="lm",
            steps="rnnpipe.pipelines.lm.steps:LMSteps",
            gate="rnnpipe.pipelines.lm.artefact:gate_spec",
            ingest="rnnpipe.pipelines.lm.prepare:load_lm_texts",
            check="rnnpipe.pipelines.lm.data:check_prompts_input",
        ),
    )
}


def names() -> list[str]:
    return list(KINDS)


def backtest_names() -> list[str]:
    return [k.name for k in KINDS.values() if k.backtest]


def get(name: str) -> PipelineKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown pipeline {name!r} (known: {', '.join(KINDS)})") from None


def of_artefact(kind: str) -> PipelineKind:
    """The pipeline kind whose fitted artefacts record `kind` (a logged pyfunc model's
    `model_config["kind"]`), found without importing any pipeline."""
    for k in KINDS.values():
        if kind in (k.artefact, k.baseline_artefact):
            return k
    raise ConfigError(f"no pipeline kind makes artefacts of kind {kind!r}")


def artefact_class(kind: str) -> type:
    """The fitted-pipeline class whose `KIND` is `kind`."""
    k = of_artefact(kind)
    return load(k.baseline) if kind == k.baseline_artefact else k.pipeline_class()
