"""Hyper-parameter tuning with Optuna: a seeded TPE search over a kind's settings, trials that
stop early when their validation loss is behind, on a study storage that survives a crash.

A trial is a pure function of (kind, base settings, study): it opens the study in the shared
storage (SQLite beside the MLflow store by default; an RDB URL for a cluster), asks it for
settings, runs the kind's own training steps (`rnnpipe.steps`, as `rnnpipe train` and sweep
trials do) in a nested MLflow run, reports each epoch's validation loss to the pruner from the
fit loop's epoch callback (the same for every kind) and tells the study its value: the kind's
gate metric on validation (`val_mae`, `val_f1_onset`, `val_macro_f1`, `val_perplexity`). The
test split chooses nothing. So a trial runs the same in this process, a process pool or a Dask
worker. Nothing here imports Prefect.

The search space is a table of config keys and ranges, written as strings:

    "model.hidden_size" = "int 16 256 log"    # an integer, sampled on a log scale
    "model.dropout"     = "float 0.0 0.5"
    "train.lr"          = "float 1e-4 1e-2 log"
    "model.cell"        = "choice lstm gru"

Each kind's default is its config class's `TUNE_SPACE`; a `[tune.space]` table in the file of
`--config` or `--space` replaces it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnpipe import kinds, settings
from rnnpipe import threads as rnnpipe_threads
from rnnpipe.config import flatten, from_dict
from rnnpipe.errors import ConfigError, RnnpipeError
from rnnpipe.tune_space import parse_space, with_value

PRUNERS = ("median", "halving", "none")


def storage_url(url: str = "") -> str:
    """The study storage: `url` if given (an RDB URL reachable from every worker), else a SQLite
    file beside the MLflow store."""
    if url:
        return url
    return f"sqlite:///{settings.mlruns_dir() / 'optuna.db'}"


def _storage(url: str):
    import optuna

    kwargs = {}
    if (db := settings.sqlite_file(url)) is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"connect_args": {"timeout": 60}}  # trials in other processes write too
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


@contextlib.contextmanager
def asking(url: str):
    """Hold the study's ask lock while asking for a trial. A SQLite storage has no row locks
    (`SELECT ... FOR UPDATE`), so two processes asking at once can pop the same enqueued trial
    (the base settings) and run it twice, one of them lost (optuna issues 4002, 4621): with
    SQLite the processes on this machine take turns, through an OS file lock beside the file
    (`filelock`: flock on POSIX, msvcrt on Windows). Other databases lock the row themselves."""
    db = settings.sqlite_file(url)
    if db is None:
        yield
        return
    from filelock import FileLock

    with FileLock(f"{db}.ask-lock"):
        yield


def _quiet() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_pruner(name: str, warmup: int = 2):
    """The pruner: `median` (a trial whose best validation loss so far is worse than the median
    of the finished trials at that epoch stops, after `warmup` epochs and 5 finished trials;
    pruned trials do not count), `halving` (successive halving) or `none`."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(warmup, 1), reduction_factor=3)
    return optuna.pruners.NopPruner()


@dataclass
class StudySpec:
    """What a study is: its kind, its space, what it optimises. Stored in the study (user
    attributes), so a resumed study refuses a different space."""

    name: str
    kind: str
    space: dict[str, str]
    metric: str  # the objective, a validation metric: val_mae, val_macro_f1, ...
    direction: str  # minimize | maximize
    pruner: str = "median"
    seed: int = 0
    storage: str = ""
    data: dict[str, str] = field(default_factory=dict)  # what the objective is measured on (`data_settings`)

    def attrs(self) -> dict[str, Any]:
        return {"kind": self.kind, "space": self.space, "metric": self.metric, "pruner": self.pruner, "data": self.data}


DATA_SECTIONS = ("data", "split", "window")  # the settings that decide what a validation metric measures


def data_settings(cfg: Any, space: dict[str, str]) -> dict[str, str]:
    """The settings of `cfg` that decide what the objective is measured on (the data, the
    split, the window; those the space varies left out), as text, with each file named as the
    registry names it (`bundled:stocks.parquet` wherever rnnpipe is installed). A study's
    trials compare one validation metric, so they must all be measured on the same."""
    out = {}
    for key, value in flatten(cfg).items():
        if key.split(".")[0] not in DATA_SECTIONS or key in space:
            continue
        if key.endswith("path") and value:
            value = settings.describe_source(settings.resolve_data_path(str(value)))
        out[key] = value if isinstance(value, str) else json.dumps(value)
    return out


def study_spec(kind: str, cfg: Any, name: str, space: dict[str, str], pruner: str, storage: str) -> StudySpec:
    from rnnpipe.gate import gate_spec

    if pruner not in PRUNERS:
        raise ConfigError(f"--pruner {pruner!r}: choose one of {', '.join(PRUNERS)}")
    gate = gate_spec(kind, cfg)
    metric = "val_" + gate["metric"].removeprefix("test_")
    direction = "maximize" if gate["greater_is_better"] else "minimize"
    data = data_settings(cfg, space)
    return StudySpec(name, kind, dict(space), metric, direction, pruner, cfg.train.seed, storage_url(storage), data)


def existing_study(spec: StudySpec):
    """The study of that name in its storage, or None. One made for another kind, space or
    objective is refused (the CLI asks before any worker starts)."""
    import optuna

    _quiet()
    storage = _storage(spec.storage)
    names = {s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)}
    if spec.name not in names:
        return None
    study = optuna.load_study(study_name=spec.name, storage=storage)
    for key, value in spec.attrs().items():
        had = study.user_attrs.get(key)
        if key == "data":
            _same_data(spec.name, had or {}, value)
        elif key != "pruner" and had != value:
            raise ConfigError(
                f"--study {spec.name!r} was made with another {key} ({had!r}, now {value!r}); "
                "give another --study name to start a new one"
            )
    return study


def _same_data(name: str, had: dict[str, str], now: dict[str, str]) -> None:
    """Refuse to resume a study on other data: its best trial would be chosen across data sets
    (a study made before rnnpipe recorded its data, or a spec without it, is not judged)."""
    for key in sorted(set(had) & set(now)):
        if had[key] != now[key]:
            raise ConfigError(
                f"--study {name!r} was measured on other data ({key} = {had[key]!r}, now {now[key]!r}); "
                "give another --study name to start a new one"
            )


def open_study(spec: StudySpec, base: dict[str, Any] | None = None):
    """The study, made if missing (recording its kind, space and objective). A new study's
    first trial is the base settings themselves, where they lie in the space: the study then
    says by how much its best beats the settings it started from."""
    import optuna

    study = existing_study(spec)
    if study is not None:
        return study
    study = optuna.create_study(study_name=spec.name, storage=_storage(spec.storage), direction=spec.direction)
    for key, value in spec.attrs().items():
        study.set_user_attr(key, value)
    start = base_params(spec, base) if base is not None else None
    if start is not None:
        study.enqueue_trial(start, user_attrs={"base_settings": True})
    return study


def base_params(spec: StudySpec, base: dict[str, Any]) -> dict[str, Any] | None:
    """The base settings' value of each key of the space, or None if one lies outside it."""
    flat = flatten(from_dict(kinds.get(spec.kind).config_class(), base))
    out = {}
    for p in parse_space(spec.kind, spec.space, base):
        value = flat[p.key]
        inside = value in p.choices if p.kind == "choice" else p.low <= value <= p.high
        if not inside:
            return None
        out[p.key] = value
    return out


def fail_stale(study, session: str) -> int:
    """Trials left RUNNING by an earlier, killed session: marked FAIL, so that the study can go
    on (their MLflow runs stay as they were). Returns how many."""
    from optuna.trial import TrialState

    stale = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    stale = [t for t in stale if t.user_attrs.get("session") != session]
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
    return len(stale)


def close_stale_runs(name: str) -> int:
    """MLflow runs of the study (its parent runs and trials) still RUNNING from an earlier,
    killed session: status KILLED, as a stopped `rnnpipe train` leaves its run. Returns how many."""
    from mlflow.tracking import MlflowClient

    client, n = MlflowClient(), 0
    experiments = [e.experiment_id for e in client.search_experiments()]
    if experiments:
        running = f"tags.tune_study = '{name}' and attributes.status = 'RUNNING'"
        for r in client.search_runs(experiments, filter_string=running):
            if "tune_trial" in r.data.tags:
                client.set_tag(r.info.run_id, "tune_state", "FAIL")
            client.set_terminated(r.info.run_id, status="KILLED")
            n += 1
    return n


def finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


@dataclass
class TuneTrial:
    """What a trial returns: small, so it travels back from a worker."""

    index: int
    number: int = -1  # the Optuna trial number (-1: never started)
    state: str = "SKIPPED"  # COMPLETE | PRUNED | FAIL | SKIPPED (the time was up)
    value: float = float("nan")
    params: dict[str, Any] = field(default_factory=dict)
    epochs: int = 0
    run_id: str = ""
    error: str = ""
    user_error: bool = False
    seconds: float = 0.0
    worker: str = ""


def run_tune_trial(
    spec: StudySpec,
    base: dict[str, Any],
    index: int,
    *,
    session: str,
    parent_run_id: str,
    experiment: str,
    deadline: float = math.inf,
    threads: int = 1,
    tracking_uri: str = "",
) -> TuneTrial:
    """Ask the study for settings, train and evaluate them with the kind's steps in a nested
    MLflow run, prune on the per-epoch validation loss, tell the study. Never raises for a
    failed trial: its state says FAIL and the error is in the result and the run."""
    with rnnpipe_threads.worker_share(threads):  # the trial's training never takes more than its share
        rnnpipe_threads.apply(threads)
        return _run_tune_trial(spec, base, index, session, parent_run_id, experiment, deadline, threads, tracking_uri)


def _run_tune_trial(spec, base, index, session, parent_run_id, experiment, deadline, threads, tracking_uri):
    import optuna
    from optuna.trial import TrialState

    from rnnpipe.steps import train_kind, trial_context

    out = TuneTrial(index, worker=f"{socket.gethostname()}:{os.getpid()}")
    if time.time() >= deadline:
        return out  # --timeout: no new trial once the time is up
    t0 = time.perf_counter()
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    _quiet()
    sampler = optuna.samplers.TPESampler(seed=spec.seed + index, constant_liar=True)
    study = optuna.load_study(
        study_name=spec.name, storage=_storage(spec.storage), sampler=sampler, pruner=make_pruner(spec.pruner)
    )
    with asking(spec.storage):
        trial = study.ask()
    trial.set_user_attr("session", session)
    out.number = trial.number
    params = {p.key: p.suggest(trial) for p in parse_space(spec.kind, spec.space, base)}
    out.params = params
    sign = 1.0 if spec.direction == "minimize" else -1.0  # the pruner reads losses in the study's direction

    def report(record: dict[str, float]) -> None:
        out.epochs = int(record["epoch"])
        loss = float(record["val_loss"])
        if math.isfinite(loss):
            trial.report(sign * loss, out.epochs)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {out.epochs}: validation loss {loss:.5g} behind")

    ctx = trial_context(
        run_name=f"{spec.name}-trial-{trial.number}",
        parent_run_id=parent_run_id,
        on_epoch=report,
        killed=(KeyboardInterrupt, optuna.TrialPruned),
        tags={
            "tune_study": spec.name,
            "tune_trial": trial.number,
            "worker": out.worker,
            "torch_threads": threads,
            **{f"tune.{k}": v for k, v in params.items()},
        },
    )
    try:
        cfg = with_value(kinds.get(spec.kind).config_class(), base, params)
        cfg.register.experiment = experiment
        result = train_kind(kinds.get(spec.kind).steps_object(), cfg, ctx)
        value = float(result.metrics.get(spec.metric, float("nan")))
        if not math.isfinite(value):
            raise ConfigError(f"the objective {spec.metric} is {value} for these settings (nothing to compare)")
        study.tell(trial, value)
        out.state, out.value = "COMPLETE", value
        _tag(ctx.run_id, {"tune_state": "COMPLETE", "tune_value": value})
    except optuna.TrialPruned as exc:
        study.tell(trial, state=TrialState.PRUNED)
        out.state, out.error = "PRUNED", str(exc)
        _tag(ctx.run_id, {"tune_state": "PRUNED", "tune_pruned": str(exc)})
    except Exception as exc:  # a failed trial is a result, not a crash of the study
        out.user_error = isinstance(exc, RnnpipeError)
        out.error = str(exc) if out.user_error else f"{type(exc).__name__}: {exc}"
        trial.set_user_attr("error", out.error[:2000])
        study.tell(trial, state=TrialState.FAIL)
        out.state = "FAIL"
        _tag(ctx.run_id, {"tune_state": "FAIL"})
    out.run_id, out.seconds = ctx.run_id, time.perf_counter() - t0
    return out


def _tag(run_id: str, tags: dict[str, Any]) -> None:
    if run_id:
        from rnnpipe.registry import Run

        Run(run_id).set_tags(tags)


def new_session() -> str:
    return uuid.uuid4().hex[:12]


def summary_rows(study) -> list[dict[str, Any]]:
    """One row per trial of the study: number, state, value, epochs reported, params."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "value": t.value if t.value is not None else float("nan"),
                "epochs": len(t.intermediate_values),
                **{f"param.{k}": v for k, v in t.params.items()},
            }
        )
    return rows


def state_counts(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def plots(study) -> dict[str, Any]:
    """Optuna's matplotlib views of the study, as figures: the optimisation history, the
    parameter importances (from two finished trials on) and the parallel coordinates."""
    import warnings

    import optuna.visualization.matplotlib as vm
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    views = {"tune/optimization_history.png": vm.plot_optimization_history}
    if len(done) >= 2:
        views["tune/param_importances.png"] = vm.plot_param_importances
        views["tune/parallel_coordinate.png"] = vm.plot_parallel_coordinate
    out = {}
    with warnings.catch_warnings():  # Optuna marks its matplotlib views experimental
        warnings.simplefilter("ignore")
        for path, view in views.items():
            try:
                ax = view(study)
            except (ValueError, RuntimeError):  # e.g. importances of a parameter that never varied
                continue
            ax = ax.flat[0] if hasattr(ax, "flat") else ax
            out[path] = ax.figure
    return out


def trial_threads(base: dict[str, Any], share: int) -> int:
    """The torch threads a trial trained with: the base setting `train.threads`, capped by the
    trial's share of the cores."""
    setting = rnnpipe_threads.parse(base.get("train", {}).get("threads", "auto"))
    return max(1, share if setting == "auto" else min(int(setting), share))


def best_config(kind: str, base: dict[str, Any], params: dict[str, Any]):
    """The settings of the best trial: the base settings with its parameters."""
    return with_value(kinds.get(kind).config_class(), base, params)


def write_best(path: Path, cfg: Any) -> Path:
    """The best trial's settings as a TOML file `rnnpipe train KIND --config FILE` reproduces
    (from any folder: its files are named absolutely)."""
    from rnnpipe.config import to_toml, with_absolute_paths
    from rnnpipe.io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(to_toml(with_absolute_paths(cfg)))
    return path
