"""A pipeline kind's training, declared once as a sequence of steps.

Each kind subclasses `TrainingSteps` (what its steps do: read, prepare, build, evaluate, what
it registers) and `train_kind` runs the sequence every kind shares:

    ingest -> prepare -> start-run -> [build] -> train -> evaluate -> [side runs] -> register

The Prefect flows (`rnnpipe.flows.tasks.common.train_flow`), a sweep or tune trial (`rnnpipe.sweep`,
`rnnpipe.tune`) and a backtest fold (`rnnpipe.pipelines.forecast.backtest`) run the very
same sequence; they differ only in the `Context` they pass: the flow runs each step as a
Prefect task (`Context.do`) and shows tables as Prefect artifacts (`Context.artifacts`); a
trial calls the steps plainly, nests its run under the sweep's, trains no side models and
logs its model instead of registering it. Both write the same MLflow record (params, tags,
per-epoch curves, the headline metrics and the `metrics/all.json` table, plots, the model).
Nothing here imports Prefect.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rnnpipe.config import flatten, to_toml, with_absolute_paths
from rnnpipe.errors import ModelError, RnnpipeError

log = logging.getLogger(__name__)


def call(name: str, fn: Callable, *args: Any, io: bool = False, **kwargs: Any) -> Any:
    """Run one step: plainly (a sweep trial, a test). `name` is the step's name, `io` whether it
    reads or writes outside the process (the flow retries those)."""
    return fn(*args, **kwargs)


class Artifacts:
    """Where a step shows tables and notes to the people watching a run, beyond MLflow and the
    log: nowhere by default; the Prefect flow shows them as Prefect artifacts."""

    def table(self, key: str, rows: list[dict[str, Any]], description: str = "") -> None:
        return None

    def markdown(self, key: str, text: str) -> None:
        return None

    def progress(self, key: str, description: str) -> Callable[[str, int, int], None] | None:
        """A progress display: the callback `(what, done, total)`, or None."""
        return None


@dataclass
class Context:
    """How a step sequence runs: the flow's context or a trial's."""

    do: Callable[..., Any] = call  # do(name, fn, *args, io=False, **kwargs): one step
    artifacts: Artifacts = field(default_factory=Artifacts)
    resume: bool = False  # pick up the interrupted run from its last checkpoint
    register: bool = True  # False: log the model in the run, register no version (a sweep trial)
    log_model: bool = True  # with register=False: whether the run keeps the model (a backtest fold does not)
    side_runs: bool = True  # models trained beside the main one (the monitor's channel forecaster)
    checkpoints: bool = True  # a checkpoint per epoch (for --resume)
    progress: bool | None = None  # the training's progress bar (None: on a terminal)
    run_name: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)  # extra tags of the run (Prefect ids, trial ids)
    parent_run_id: str | None = None  # nest the run under this one
    on_epoch: Callable[[dict[str, float]], None] | None = None  # called after each epoch (tuning)
    killed: tuple[type[BaseException], ...] = (KeyboardInterrupt,)  # exceptions that mean "stopped"
    run_id: str = ""  # set once the run is open (a failed trial still names its run)


def trial_context(**settings: Any) -> Context:
    """A sweep trial's context: steps called plainly, no side models, no checkpoints, no
    progress bar, and the model logged in the run instead of registered."""
    return Context(register=False, side_runs=False, checkpoints=False, progress=False, **settings)


@dataclass
class Evaluated:
    """What a kind's `evaluate` returns when it has no richer type: the metrics and what its
    registration may need (e.g. the fitted baselines)."""

    metrics: dict[str, float]
    fitted: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """One run of a kind's steps."""

    kind: str
    cfg: Any
    tracking_uri: str
    run_id: str
    pipeline: Any  # the fitted artefact
    result: Any  # the FitResult (None for a kind that does not train with the shared loop)
    evaluation: Any  # the kind's evaluation (has .metrics)
    input_example: Any
    fingerprint: str
    decision: Any = None  # GateDecision, when registered
    baseline: Any = None  # the baseline's GateDecision, when one was registered beside the model
    model_uri: str = ""  # the logged model (a trial's; a registered one is in the registry)
    profile: dict[str, Any] | None = None  # the reference of drift reports, logged with the model
    headline: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        return self.evaluation.metrics

    def summary(self) -> dict[str, Any]:
        """What a training flow returns (and the CLI prints); the registration was logged once,
        by the gate (`register_and_gate`)."""
        r, d, res = self.cfg.register, self.decision, self.result
        out = {
            "tracking_uri": self.tracking_uri,
            "experiment": r.experiment,
            "run_id": self.run_id,
            "model_name": d.model_name,
            "version": d.version,
            "alias": d.alias,
            "reason": d.reason,
            "champion_version": (self.baseline or d).champion,
            "device": getattr(res, "device", "cpu"),
            "best_epoch": getattr(res, "best_epoch", 0),
            "metric": r.metric,
        }
        if self.baseline is not None:
            out.update(
                baseline_version=self.baseline.version,
                baseline_alias=self.baseline.alias,
                baseline_reason=self.baseline.reason,
            )
        return {**out, **self.headline}


class TrainingSteps:
    """What one pipeline kind's steps do. Override `ingest`, `prepare`, `build`, `evaluate`
    and `example`; the rest have defaults that fit a kind trained by the shared fit loop.
    Steps log with `logging` (the flow shows rnnpipe's log lines in its task runs) and show
    tables through `ctx.artifacts`."""

    kind: ClassVar[str]  # the name in `rnnpipe.kinds`

    def ingest(self, cfg: Any, ctx: Context) -> Any:
        """Read and check the data."""
        raise NotImplementedError

    def prepare(self, data: Any, cfg: Any, ctx: Context) -> Any:
        """Split, fit the preprocessing on train, encode: a `rnnpipe.artefact.PreparedData`."""
        raise NotImplementedError

    def data_summary(self, data: Any, prepared: Any) -> dict[str, Any]:
        """The run's `data/split.json`."""
        return prepared.summary() if hasattr(prepared, "summary") else {"counts": prepared.counts()}

    def before_run(self, cfg: Any, prepared: Any, ctx: Context) -> tuple[Any, Any]:
        """Work whose outcome the run's params record (reviews: the registered language model
        to start from): (settings, state for `build`)."""
        return cfg, None

    def build(self, cfg: Any, prepared: Any, state: Any, run_id: str, ctx: Context) -> Any:
        """The untrained artefact (may pretrain, logging to the run)."""
        raise NotImplementedError

    def batches(self, cfg: Any, prepared: Any) -> tuple[Any, Any]:
        """The training and validation batch sources."""
        return prepared.windows("train"), prepared.windows("val")

    def loss(self, cfg: Any, prepared: Any) -> Callable | None:
        """The training loss (None: the model's own)."""
        return None

    def epoch_metrics(self, record: dict[str, float]) -> dict[str, float]:
        """Metrics logged per epoch beside the losses (the LM: perplexities)."""
        return {}

    def fit(self, pipeline: Any, prepared: Any, cfg: Any, run_id: str, checkpoint: str, ctx: Context) -> Any:
        """Train the artefact's model in place: the shared fit loop."""
        train, val = self.batches(cfg, prepared)
        return train_model(
            pipeline.model,
            train,
            val,
            cfg,
            run_id,
            checkpoint,
            ctx,
            loss_fn=self.loss(cfg, prepared),
            epoch_metrics=self.epoch_metrics,
        )

    def evaluate(self, pipeline: Any, prepared: Any, result: Any, run_id: str, ctx: Context) -> Any:
        """Score the model and the baselines on test, log them to the run: an object with
        `.metrics`."""
        raise NotImplementedError

    def profile(self, cfg: Any, data: Any, prepared: Any, pipeline: Any, evaluation: Any) -> dict[str, Any] | None:
        """The reference profile of drift reports (`rnnpipe.drift.profile`), logged with the
        model; None: the kind's batch jobs report no drift."""
        return None

    def side_runs(self, cfg: Any, data: Any, prepared: Any, run_id: str, ctx: Context) -> dict[str, Any]:
        """Models trained beside the main one, as child runs; their headline for the summary."""
        return {}

    def example(self, cfg: Any, data: Any, prepared: Any) -> Any:
        """The pyfunc's input example: raw input as a user sends it."""
        raise NotImplementedError

    def baseline(self, cfg: Any, prepared: Any, evaluation: Any, decision: Any) -> tuple[str, Any, float] | None:
        """When the model lost: (baseline name, its servable artefact, its score) to register as
        a version of the same model, or None."""
        return None

    def headline(self, cfg: Any, pipeline: Any, evaluation: Any, side: dict[str, Any]) -> dict[str, Any]:
        """The kind's figures in the flow's summary."""
        return {}


def train_kind(steps: TrainingSteps, cfg: Any, ctx: Context | None = None) -> Outcome:
    """Run `steps` on the settings `cfg` (validated): the one training sequence of every kind."""
    from rnnpipe.gate import gate_spec
    from rnnpipe.registry import Run, configure_tracking, log_pipeline_model

    ctx = ctx or Context()
    uri = configure_tracking()
    data = ctx.do("ingest", steps.ingest, cfg, ctx, io=True)
    prepared = ctx.do("prepare", steps.prepare, data, cfg, ctx)
    cfg, state = steps.before_run(cfg, prepared, ctx)
    summary = steps.data_summary(data, prepared)
    run_id, checkpoint = ctx.do(
        "start-run", open_run, cfg, steps.kind, prepared.fingerprint, str(prepared.source), summary, ctx, io=True
    )
    ctx.run_id = run_id
    r = cfg.register
    out = None
    with run_status(run_id, ctx.killed):
        pipeline = steps.build(cfg, prepared, state, run_id, ctx)
        result = ctx.do("train", steps.fit, pipeline, prepared, cfg, run_id, checkpoint, ctx)
        if result is not None and not math.isfinite(result.best_val_loss):
            raise ModelError(f"validation loss is {result.best_val_loss} (the training diverged)")
        ev = ctx.do("evaluate", steps.evaluate, pipeline, prepared, result, run_id, ctx)
        side = steps.side_runs(cfg, data, prepared, run_id, ctx) if ctx.side_runs else {}
        example = steps.example(cfg, data, prepared)
        out = Outcome(steps.kind, cfg, uri, run_id, pipeline, result, ev, example, prepared.fingerprint)
        if ctx.register or ctx.log_model:
            out.profile = steps.profile(cfg, data, prepared, pipeline, ev)
        if not ctx.register:
            if ctx.log_model:
                out.model_uri = log_pipeline_model(Run(run_id), pipeline, example, profile=out.profile)
        else:
            gate = gate_spec(steps.kind, cfg)
            args = (example, ev.metrics, run_id, r.model_name, ctx.artifacts)
            out.decision = ctx.do("register", register_model, pipeline, *args, **gate, profile=out.profile, io=True)
            lost = steps.baseline(cfg, prepared, ev, out.decision)
            if lost is not None:  # the model lost: the baseline itself becomes a servable version
                name, served, score = lost
                args = (example, {r.metric: score}, run_id, r.model_name, ctx.artifacts)
                profile = steps.profile(cfg, data, prepared, served, ev)  # its own predictions on validation
                out.baseline = ctx.do(
                    "register", register_model, served, *args, **gate, baseline_of=name, profile=profile, io=True
                )
        out.headline = steps.headline(cfg, pipeline, ev, side)
    return out


def open_run(
    cfg: Any, kind: str, fingerprint: str, source: str, data_summary: dict[str, Any], ctx: Context
) -> tuple[str, str]:
    """Open the MLflow run (or, with `ctx.resume`, reopen the interrupted one) and log params,
    tags and the data summary. Returns the run id and the checkpoint path ("" without
    checkpoints)."""
    from rnnpipe.registry import Run
    from rnnpipe.training import checkpoint_path, read_checkpoint_meta

    ckpt = checkpoint_path(cfg, fingerprint)
    run_id = None
    if ctx.resume:
        meta = read_checkpoint_meta(ckpt)
        if meta is None:
            raise ModelError(f"--resume: no checkpoint for this config and data at {ckpt}")
        run_id = meta.get("mlflow_run_id")
    tags = {"data_fingerprint": fingerprint, "data_source": source, "seed": cfg.train.seed, "pipeline": kind}
    if ctx.checkpoints:
        tags["checkpoint"] = str(ckpt)
    if ctx.parent_run_id:
        tags["mlflow.parentRunId"] = ctx.parent_run_id
    run = Run.start(cfg.register.experiment, run_name=ctx.run_name, tags={**tags, **ctx.tags}, run_id=run_id)
    if not run_id:
        run.log_dataset(source, fingerprint)
    run.log_params(flatten(cfg))
    # `rnnpipe train KIND --config config.toml` repeats the run, from any folder
    run.log_text(to_toml(with_absolute_paths(cfg)), "config.toml")
    run.log_dict(data_summary, "data/split.json")
    log.info("MLflow run %s (%s)", run.id, "resumed" if run_id else "new")
    return run.id, str(ckpt) if ctx.checkpoints else ""


def train_model(
    model: Any,
    train_data: Any,
    val_data: Any,
    cfg: Any,
    run_id: str,
    checkpoint: str,
    ctx: Context,
    loss_fn: Callable | None = None,
    epoch_metrics: Callable[[dict[str, float]], dict[str, float]] | None = None,
) -> Any:
    """The shared fit loop, with per-epoch metrics to MLflow (plus `epoch_metrics(record)`),
    a checkpoint per epoch and the curves."""
    from rnnpipe.evaluation import plot_loss_curves
    from rnnpipe.registry import Run
    from rnnpipe.training import fit

    run = Run(run_id)

    def on_epoch(record: dict[str, float]) -> None:
        metrics = {k: record[k] for k in ("train_loss", "val_loss", "lr", "samples_per_s")}
        run.log_metrics({**metrics, **(epoch_metrics(record) if epoch_metrics else {})}, step=int(record["epoch"]))
        if ctx.on_epoch is not None:
            ctx.on_epoch(record)

    result = fit(
        model,
        train_data,
        val_data,
        cfg.train,
        loss_fn=loss_fn,
        checkpoint_path=checkpoint or None,
        checkpoint_meta={"key": Path(checkpoint).stem, "mlflow_run_id": run_id} if checkpoint else None,
        resume=ctx.resume,
        on_epoch=on_epoch,
        progress=ctx.progress,
    )
    run.log_metrics(
        {
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "epochs_run": len(result.history),
            "train_samples_per_s": result.samples_per_s,
        }
    )
    run.log_metrics({"initial_val_loss": result.initial_val_loss, **result.warm_start, **result.band})
    run.set_tags(
        {
            "device": result.device,
            "precision": result.precision,
            "torch_threads": result.threads,
            "stopped_early": result.stopped_early,
            "resumed_from_epoch": result.resumed_from_epoch,
        }
    )
    if result.best_epoch == 0:
        note = "no epoch improved on the starting model on validation, so the model is that start: " + (
            "the linear part alone" if result.warm_start else "its initial weights (a forecaster: the naive forecast)"
        )
        run.set_tags({"training_note": note})
        log.warning(note)
    run.log_figure(plot_loss_curves(result.history, result.best_epoch), "plots/loss_curves.png")
    return result


def register_model(
    pipeline: Any,
    input_example: Any,
    metrics: dict[str, float],
    run_id: str,
    model_name: str,
    artifacts: Artifacts,
    *,
    metric: str,
    baselines: dict[str, str],
    margin: float,
    greater_is_better: bool,
    degenerate: float | None = None,
    baseline_of: str = "",
    profile: dict[str, Any] | None = None,
) -> Any:
    """Log the pipeline as a pyfunc model, register a version and apply the gate (`baseline_of`:
    the pipeline is that baseline, logged as the run's `baseline` model; `profile`: the
    reference of drift reports, logged with it). The decision is logged once, by the gate; the
    version's description is its model card (`rnnpipe.model_card`), also in the run."""
    import mlflow

    from rnnpipe.gate import register_and_gate
    from rnnpipe.model_card import model_card
    from rnnpipe.registry import Run, log_pipeline_model

    run = Run(run_id)
    model_uri = log_pipeline_model(
        run, pipeline, input_example, name="baseline" if baseline_of else "model", profile=profile
    )
    decision = register_and_gate(
        run, model_uri, model_name, metrics, metric, baselines, margin, greater_is_better, degenerate, baseline_of
    )
    card = model_card(run_id, decision, metrics, metric, baselines, greater_is_better, baseline_of)
    run.log_text(card, f"model_card/{model_name}-v{decision.version}.md")
    run.client.update_model_version(model_name, decision.version, description=card)
    rows = [
        f"| `{k}` | {v:.4g} |"
        for k, v in sorted(metrics.items())
        if "test_" in k and "." not in k and k.split("_")[-1] not in ("tp", "fp", "fn", "tn")
    ]
    artifacts.markdown(
        f"{model_name}-{'baseline-' if baseline_of else ''}registration".lower().replace("_", "-"),
        f"**{decision.model_name} v{decision.version} -> `{decision.alias}`**\n\n{decision.reason}\n\n"
        f"MLflow run `{run_id}` (tracking `{mlflow.get_tracking_uri()}`)\n\n| test metric | value |\n|---|---|\n"
        + "\n".join(rows[:40]),
    )
    return decision


@contextlib.contextmanager
def run_status(run_id: str, killed: tuple[type[BaseException], ...] = (KeyboardInterrupt,)) -> Iterator[None]:
    """Mark the MLflow run FINISHED when the block completes, KILLED when stopped (`killed`:
    Ctrl-C, and in a flow Prefect's TerminationSignal on SIGTERM; `--resume` picks it up from
    the last checkpoint) and FAILED on any error, with the error in the tag `error`."""
    import traceback

    from rnnpipe.registry import Run

    try:
        yield
    except killed:
        Run(run_id).end("KILLED")
        raise
    except BaseException as exc:
        run = Run(run_id)
        with contextlib.suppress(Exception):  # the error being reported matters more than its tag
            user = isinstance(exc, RnnpipeError)
            run.set_tags({"error": (str(exc) if user else f"{type(exc).__name__}: {exc}")[:5000]})
            if not user:
                run.log_text(traceback.format_exc(), "error.txt")
        run.end("FAILED")
        raise
    Run(run_id).end("FINISHED")
