"""MLflow: tracking set-up, run logging, the pyfunc model and the champion gate.

Runs are logged through `MlflowClient` with an explicit run id rather than MLflow's
thread-local active run, so logging works from any thread or worker (Prefect runs tasks in
threads) and never opens a stray run.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.tracking import MlflowClient
from mlflow.types.schema import AnyType, ColSpec, Schema

from rnnpipe import kinds, settings
from rnnpipe import threads as rnnpipe_threads
from rnnpipe.errors import ModelError, RnnpipeError
from rnnpipe.io import missing_input_column
from rnnpipe.localstore import (  # ModelRef: also imported from here
    CHAMPION,
    ModelRef,
    artefact_kind,
    not_registered,
    parse_spec,
)

log = logging.getLogger(__name__)

CHALLENGER = "challenger"  # CHAMPION: rnnpipe.localstore
BASELINE = "baseline"  # alias of the latest version that is a baseline, registered beside a model that lost to it
RUNTIME_PACKAGES = ("torch", "numpy", "pandas", "pyarrow", "scikit-learn", "mlflow")
TRACKED_PACKAGES = RUNTIME_PACKAGES + ("prefect", "rnnpipe")


def configure_tracking() -> str:
    """Point MLflow at the project's store (or MLFLOW_TRACKING_URI) and return the URI."""
    for key, value in settings.TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = settings.tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    return uri


def ensure_experiment(name: str) -> str:
    """The experiment's id, creating it with its artefacts under the project's mlruns/."""
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = None
    if settings.tracking_uri().startswith("sqlite:///"):
        location = (settings.mlruns_dir() / name).resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in TRACKED_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str:
    try:
        home = settings.project_home()
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=home, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=home,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return f"{sha}{'-dirty' if dirty else ''}" if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Run:
    """One MLflow run, addressed by id."""

    def __init__(self, run_id: str):
        self.id = run_id
        self.client = MlflowClient()

    @classmethod
    def start(
        cls, experiment: str, run_name: str | None = None, tags: dict[str, str] | None = None, run_id: str | None = None
    ) -> Run:
        """A new run in `experiment`, or the existing run `run_id` set back to RUNNING."""
        client = MlflowClient()
        if run_id:
            client.update_run(run_id, status="RUNNING")
            run = cls(run_id)
        else:
            exp_id = ensure_experiment(experiment)
            run = cls(client.create_run(exp_id, run_name=run_name).info.run_id)
        commit = git_commit()
        base = {"git_commit": commit, "mlflow.source.git.commit": commit.removesuffix("-dirty")}
        base.update({f"version.{k}": v for k, v in library_versions().items()})
        run.set_tags({**base, **(tags or {})})
        return run

    def log_params(self, params: dict[str, Any]) -> None:
        """Log params; on a resumed run, keys already logged keep their first value."""
        items = [Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in params.items()]
        existing = self.client.get_run(self.id).data.params
        items = [p for p in items if p.key not in existing]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        for i in range(0, len(items), 500):
            self.client.log_batch(self.id, metrics=items[i : i + 500])

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.client.log_batch(self.id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_figure(self, figure, path: str) -> None:
        self.client.log_figure(self.id, figure, path)

    def log_dict(self, data: Any, path: str) -> None:
        self.client.log_dict(self.id, data, path)

    def log_table(self, rows: list[dict[str, Any]], path: str) -> None:
        """A table artefact (MLflow's `log_table`: shown as a table in the run's artefacts)."""
        self.client.log_table(self.id, pd.DataFrame(rows), path)

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.id, text, path)

    def log_dataset(self, source: str, digest: str, context: str = "training") -> None:
        """The run's input dataset (MLflow's Datasets field): the file or folder it read and the
        sha256 of the data as the model sees it."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are local files
            warnings.simplefilter("ignore", UserWarning)
            origin = resolve_dataset_source(str(source))
        dataset = MetaDataset(origin, name=Path(str(source)).name or str(source), digest=digest[:36])
        self.client.log_inputs(
            self.id, [DatasetInput(dataset._to_mlflow_entity(), [InputTag("mlflow.data.context", context)])]
        )

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.id, status=status)


def mark_killed(prefect_flow_run_ids: list[str]) -> int:
    """MLflow runs still RUNNING whose Prefect flow run was stopped: status KILLED."""
    configure_tracking()
    client, n = MlflowClient(), 0
    exps = [e.experiment_id for e in client.search_experiments()]
    for fid in prefect_flow_run_ids:
        if not exps:
            break
        for r in client.search_runs(
            exps, filter_string=f"tags.prefect_flow_run_id = '{fid}' and attributes.status = 'RUNNING'"
        ):
            client.set_terminated(r.info.run_id, status="KILLED")
            n += 1
    return n


class InputError(MlflowException):
    """A user error in a request: 400 with the reason alone. MLflow's scoring server puts
    "Failed to predict data '<the whole input frame>'" in front of an exception's message; the
    message of this one keeps the reason first and short (the prefix is not taken)."""

    def __init__(self, reason: str):
        self._reason = reason
        super().__init__(reason, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._reason

    @message.setter
    def message(self, _value: str) -> None:
        pass


def input_choices(pipeline: Any) -> list[list[str]]:
    """The input columns a fitted pipeline needs, each as the list of names it accepts."""
    if hasattr(pipeline, "column_choices"):
        return pipeline.column_choices()
    return [[c] for c in pipeline.batch_spec([])[0]]


class _DroppedColumns(logging.Filter):
    """MLflow's schema enforcement hands a model only the columns of its signature and logs the
    others ("Found extra inputs ... `['Text']`. These inputs will be ignored."). Noted per
    thread (enforcement and predict run in the same one), so that a request without a column
    the model needs is answered with the columns the client sent; the warning still shows."""

    noted = threading.local()
    _listed = re.compile(r"`(\[.*\])`")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Found extra inputs") and (m := self._listed.search(message)):
            with contextlib.suppress(ValueError, SyntaxError):
                self.noted.columns = [str(c) for c in ast.literal_eval(m.group(1))]
        return True

    @classmethod
    def take(cls) -> list[str]:
        columns, cls.noted.columns = getattr(cls.noted, "columns", []), []
        return columns


_DROPPED = _DroppedColumns()


class PipelinePyfunc(mlflow.pyfunc.PythonModel):
    """A fitted rnnpipe pipeline as an MLflow model: raw input in, predictions out. The
    preprocessing travels inside it; `model_config["kind"]` says which pipeline it is."""

    def load_context(self, context) -> None:
        kind = (context.model_config or {}).get("kind", "forecast")
        self.pipeline = kinds.artefact_class(kind).load(context.artifacts["pipeline"])
        self.choices = input_choices(self.pipeline)
        enforcement = logging.getLogger("mlflow.models.utils")
        if _DROPPED not in enforcement.filters:
            enforcement.addFilter(_DROPPED)
        if os.environ.get("_MLFLOW_IS_IN_SERVING_ENVIRONMENT") == "true":  # `rnnpipe serve`
            rnnpipe_threads.apply("auto")

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None):
        """User errors become MlflowException(INVALID_PARAMETER_VALUE): the scoring server
        answers them 400 with the message, rather than a generic error. In the server, missing
        values go out as JSON null rather than NaN. A pipeline with `inference_params()`
        (the language model) gets the request's `params` (MLflow fills in the signature's
        defaults)."""
        problem = missing_input_column(self.choices, [*map(str, model_input.columns), *_DroppedColumns.take()])
        if problem:
            raise InputError(f"input: {problem}")
        try:
            if hasattr(self.pipeline, "inference_params"):
                out = self.pipeline.predict(pd.DataFrame(model_input), **(params or {}))
            else:
                out = self.pipeline.predict(pd.DataFrame(model_input))
        except RnnpipeError as exc:
            raise InputError(str(exc)) from None
        if os.environ.get("_MLFLOW_IS_IN_SERVING_ENVIRONMENT") == "true":
            out = out.astype(object).where(out.notna(), None)
        return out


def _requirements() -> list[str]:
    reqs = []
    for pkg in RUNTIME_PACKAGES:
        try:
            reqs.append(f"{pkg}=={metadata.version(pkg).split('+')[0]}")
        except metadata.PackageNotFoundError:
            reqs.append(pkg)
    return reqs


class _ModelConfigParams(logging.Filter):
    """MLflow also logs a model's `model_config` as params of its run; a run that logs a second
    model (a baseline that won: its `kind` differs) gets a warning that the param cannot change.
    The model's own MLmodel holds its kind; the run's param stays the first model's."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Failed to log model config as params" not in record.getMessage()


@contextlib.contextmanager
def _quiet_model_config_params():
    logger, f = logging.getLogger("mlflow.models.model"), _ModelConfigParams()
    logger.addFilter(f)
    try:
        yield
    finally:
        logger.removeFilter(f)


def _package_code(into: Path) -> Path:
    """A copy of the rnnpipe package for a model's code_paths: the library without the bundled
    data (megabytes a model does not read), the orchestration (flows, tasks: Prefect, which a
    served model never imports) or compiled caches."""
    import shutil

    root = Path(__file__).resolve().parent

    def skip(folder: str, names: list[str]) -> list[str]:
        top = Path(folder).resolve() == root
        return [n for n in names if n == "__pycache__" or (top and n in ("data", "flows", "tasks"))]

    return Path(shutil.copytree(root, into / "rnnpipe", ignore=skip))


def log_pipeline_model(run: Run, pipeline: Any, input_example: pd.DataFrame, name: str = "model") -> str:
    """Log a fitted pipeline as a pyfunc model of `run` and return its model URI.

    The model directory holds the pipeline (config, scaler statistics, state dict) and a copy
    of the rnnpipe package (code_paths), so it loads wherever torch, pandas and MLflow are.
    """
    params = pipeline.inference_params() if hasattr(pipeline, "inference_params") else None
    # the input columns a batch job must find (each a list of accepted names), for the check
    # before a job starts (`rnnpipe.batch_jobs.check_input`)
    choices = input_choices(pipeline)
    with warnings.catch_warnings():  # the integer `step` column is never missing
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        signature = infer_signature(input_example, pipeline.predict(input_example), params=params)
    # the input columns are named but neither required nor typed: MLflow's own enforcement
    # answers a missing column or a text in a number column with a dump of the whole frame and
    # schema; the pipeline's validation (the one training uses) says what is wrong first, in
    # one line, and a served 400 carries it
    # one and the same for every name a needed column is accepted under (served, `review` as well
    # as `text`): enforcement passes on only the columns named here
    names = [c.name for c in signature.inputs.inputs]
    names += [n for accepted in choices for n in accepted if n not in names]
    signature.inputs = Schema([ColSpec(AnyType(), n, required=False) for n in names])
    with tempfile.TemporaryDirectory() as tmp, _quiet_model_config_params():
        pipe_dir = pipeline.save(Path(tmp) / "pipeline")
        code = _package_code(Path(tmp) / "code")
        with mlflow.start_run(run_id=run.id):
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                artifacts={"pipeline": str(pipe_dir)},
                code_paths=[str(code)],
                signature=signature,
                input_example=input_example,
                pip_requirements=_requirements(),
                model_config={"kind": type(pipeline).KIND},
                metadata={"rnnpipe_input_columns": choices},
            )
        # leaving the block marks the run FINISHED; it is still being written to
        run.client.update_run(run.id, status="RUNNING")
    return info.model_uri


def degenerate_value(metric: str, greater_is_better: bool) -> float | None:
    """The value of `metric` that a model reaches without learning anything: 0 for F1,
    precision and recall (it never finds an event), 0.5 for ROC-AUC (chance); None for errors
    (MAE, RMSE), which have no such value."""
    if not greater_is_better:
        return None
    return 0.5 if metric.endswith(("roc_auc", "roc_auc_onset")) else 0.0


def gate_spec(pipeline: str, cfg: Any) -> dict[str, Any]:
    """How a model of `pipeline` (`rnnpipe.kinds`) is judged for `champion`: the keyword
    arguments of `register_and_gate` after the metrics (the kind's own gate, plus the
    metric's degenerate value)."""
    spec = kinds.load(kinds.get(pipeline).gate)(cfg)
    return {**spec, "degenerate": degenerate_value(spec["metric"], spec["greater_is_better"])}


def _pct(share: float) -> str:
    """A share as a percentage with the digits that say something (0.007%, 4.2%)."""
    return f"{100 * share:.3f}%" if abs(share) < 0.01 else f"{100 * share:.1f}%"


def _defined(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


@dataclass
class Verdict:
    """What the gate decided and why: `rule` names the rule that decided (one of
    `GATE_RULES`), `reason` says it in a sentence that stays true after the alias moves."""

    promoted: bool
    rule: str
    reason: str


GATE_RULES = (
    "undefined-metric",
    "undefined-baseline",
    "degenerate",
    "other-data",
    "baseline",
    "first",
    "champion-undefined",
    "champion",
)


def judge(
    metric: str,
    value: float | None,
    baselines: dict[str, float | None],
    *,
    margin: float = 0.0,
    greater_is_better: bool = False,
    degenerate: float | None = None,
    champion: tuple[str, float | None] | None = None,
    other_data: str = "",
) -> Verdict:
    """The champion gate as a pure function, its rules in order:

    1. undefined-metric: a missing, NaN or infinite metric never passes;
    2. undefined-baseline: nor does a model judged against a baseline whose metric is
       undefined (the test data cannot judge either);
    3. degenerate: a metric no better than the value a model reaches without learning
       (`degenerate`, e.g. F1 = 0) never passes, even when every baseline ties it;
    4. other-data: a champion trained on other data or taking other input (`other_data` says
       how) is not compared with: the metrics of two data sets say nothing of which model
       is better, so the version does not compete for the alias (nor does a baseline of it);
    5. baseline: the metric must not lose to the best baseline by more than `margin`;
    6. first: with no champion yet, a model that passed 1-5 is promoted;
    7. champion-undefined: a champion without a defined metric is replaced;
    8. champion: otherwise the model must beat the champion (`(version, value)`).
    """
    worse = (lambda a, b: a < b) if greater_is_better else (lambda a, b: a > b)
    if not _defined(value):
        return Verdict(
            False,
            "undefined-metric",
            f"not promoted [undefined-metric]: {metric} is "
            f"{value} (undefined, e.g. no event in the test part), so the run cannot judge the model",
        )
    bad = [n for n, v in baselines.items() if not _defined(v)]
    if bad:
        return Verdict(
            False,
            "undefined-baseline",
            f"not promoted [undefined-baseline]: the {bad[0]} "
            f"baseline's {metric} is {baselines[bad[0]]} (undefined), so the run cannot judge "
            f"{metric}={value:.4f} against it",
        )
    if baselines:
        pick = max if greater_is_better else min
        name = pick(baselines, key=lambda n: baselines[n])
        base = float(baselines[name])
        if base == value:
            vs = f"ties the {name} baseline ({base:.4f})"
        elif not worse(value, base):
            gain = abs(value - base) / abs(base) if base else math.inf
            vs = f"beats the {name} baseline ({base:.4f}) by {_pct(gain)}"
        else:
            gap = abs(value - base) / abs(base) if base else math.inf
            vs = f"within the {100 * margin:.1f}% margin of the {name} baseline ({base:.4f}; {_pct(gap)} worse)"
    else:
        name, base, vs = None, None, "no baseline was scored"
    if degenerate is not None and not worse(degenerate, value):
        tie = f"; {vs}" if baselines else ""
        return Verdict(
            False,
            "degenerate",
            f"not promoted [degenerate]: {metric}={value:.4f} is no better "
            f"than {degenerate:g}, what a model reaches without learning anything{tie}",
        )
    if champion is not None and other_data:
        if base is not None and worse(value, base):
            share = abs(value - base) / abs(base) if base else math.inf
            vs = f"loses to the {name} baseline ({base:.4f}) by {_pct(share)}"
        return Verdict(
            False,
            "other-data",
            f"not promoted [other-data]: champion v{champion[0]} was trained on "
            f"{other_data}, so {metric}={value:.4f} cannot be compared with it; a model of other "
            f"data needs a name of its own (register.model_name; {vs})",
        )
    if base is not None:
        limit = base * (1 - margin) if greater_is_better else base * (1 + margin)
        if base == 0 and not greater_is_better:
            limit = 0.0
        if worse(value, limit):
            gap = abs(value - base) / abs(base) if base else math.inf
            return Verdict(
                False,
                "baseline",
                f"not promoted [baseline]: {metric}={value:.4f} loses to the "
                f"{name} baseline ({base:.4f}) by {_pct(gap)}, more than the allowed "
                f"{100 * margin:.1f}%",
            )
    if champion is None:
        return Verdict(
            True, "first", f"promoted [first]: the first version to pass the gate ({metric}={value:.4f}; {vs})"
        )
    version, champ = champion
    if not _defined(champ):
        return Verdict(
            True,
            "champion-undefined",
            f"promoted [champion-undefined]: champion v{version} has "
            f"no defined {metric} to compare with ({metric}={value:.4f}; {vs})",
        )
    better = value > champ if greater_is_better else value < champ
    if better:
        return Verdict(
            True, "champion", f"promoted [champion]: {metric}={value:.4f} beats champion v{version} ({champ:.4f}); {vs}"
        )
    return Verdict(
        False,
        "champion",
        f"not promoted [champion]: {metric}={value:.4f} does not beat champion v{version} ({champ:.4f}); {vs}",
    )


def _version_metric(client: MlflowClient, mv, metric: str) -> float | None:
    """A version's gate metric: its own tag (a baseline version's differs from its run's
    metric), else its run's."""
    tag = (mv.tags or {}).get(metric)
    if tag is not None:
        try:
            return float(tag)
        except ValueError:
            return None
    return client.get_run(mv.run_id).data.metrics.get(metric) if mv.run_id else None


def data_identity(client: MlflowClient, run_id: str, model_uri: str) -> dict[str, str]:
    """The data a version was trained and tested on (`settings.describe_source`: a bundled
    sample is named the same wherever rnnpipe is installed) and the input columns it reads."""
    from mlflow.models import get_model_info

    from rnnpipe.settings import describe_source, resolve_data_path

    data = client.get_run(run_id).data
    source = data.tags.get("data_source") or (
        resolve_data_path(data.params["data.path"]) if data.params.get("data.path") else ""
    )
    try:
        columns = (get_model_info(model_uri).metadata or {}).get("rnnpipe_input_columns") or []
    except (MlflowException, OSError):  # no logged model there: nothing to compare the input of
        columns = []
    return {
        "data_source": describe_source(source) if source else "",
        "input_columns": ", ".join("/".join(c) for c in columns),
    }


def other_data(new: dict[str, str], champion: dict[str, str]) -> str:
    """How the champion's data or input differs from the new version's ("" when the same,
    or when either is unknown: versions registered before rnnpipe recorded it)."""
    for key, what in (("data_source", "{}, this run on {}"), ("input_columns", "input ({}), this model reads ({})")):
        a, b = champion.get(key), new.get(key)
        if a and b and a != b:
            return what.format(a, b)
    return ""


@dataclass
class GateDecision:
    model_name: str
    version: str
    alias: str
    reason: str
    rule: str = ""

    @property
    def promoted(self) -> bool:
        return self.alias == CHAMPION


def register_and_gate(
    run: Run,
    model_uri: str,
    model_name: str,
    metrics: dict[str, float],
    metric: str,
    baselines: dict[str, str],
    margin: float = 0.0,
    greater_is_better: bool = False,
    degenerate: float | None = None,
    baseline_of: str = "",
) -> GateDecision:
    """Register a new version and give it `champion` or `challenger` by `judge`'s rules
    (baselines: name -> metric key of that baseline on the same data). The reason, naming
    the rule that decided, is written to the run and the model version; the version's tags
    record the decision at registration (`gate_decision`), which stays true when the alias
    later moves.

    `baseline_of`: the version is that baseline itself (the run's model lost to it), with
    `metrics[metric]` the baseline's figure. It is judged against the champion alone (rules
    1, 3, 5-7), gets the `baseline` alias (`champion` too if it wins) and a `baseline` tag;
    the run's own tags keep the recurrent model's decision."""
    client = run.client
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(
            model_name,
            description="rnnpipe model; aliases champion (serving) and challenger (latest that did not pass the gate)",
        )
    mv = client.create_model_version(model_name, source=model_uri, run_id=run.id)
    value = metrics.get(metric)
    try:
        current = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        current = None
    champion, identity, differs = None, data_identity(client, run.id, model_uri), ""
    if current is not None:
        champion = (str(current.version), _version_metric(client, current, metric))
        differs = other_data(identity, current.tags or {})
    judged = {} if baseline_of else {n: metrics.get(k) for n, k in baselines.items()}
    verdict = judge(
        metric,
        value,
        judged,
        margin=margin,
        greater_is_better=greater_is_better,
        degenerate=degenerate,
        champion=champion,
        other_data=differs,
    )
    alias, reason = (CHAMPION if verdict.promoted else CHALLENGER), verdict.reason
    if baseline_of:
        reason = f"the {baseline_of} baseline itself, registered because the run's model lost to it; " + reason.replace(
            "; no baseline was scored", ""
        ).replace(" (no baseline was scored)", "")
        client.set_registered_model_alias(model_name, BASELINE, mv.version)
        alias = CHAMPION if verdict.promoted else BASELINE
    client.set_registered_model_alias(model_name, alias, mv.version)
    client.update_model_version(model_name, mv.version, description=reason)
    tags = {
        "gate_decision": "promoted" if verdict.promoted else "not promoted",
        "gate_rule": verdict.rule,
        "gate_reason": reason,
        metric: repr(float(value)) if _defined(value) else str(value),
        **{k: v for k, v in identity.items() if v},
    }
    if baseline_of:
        tags["baseline"] = baseline_of
    for k, v in tags.items():
        client.set_model_version_tag(model_name, mv.version, k, v)
    if baseline_of:
        run.set_tags({"baseline_version": mv.version, "baseline_gate": alias})
    else:
        run.set_tags(
            {
                "gate": alias,
                "gate_rule": verdict.rule,
                "gate_reason": reason,
                "registered_model": model_name,
                "registered_version": mv.version,
            }
        )
    log.info("%s v%s -> %s: %s", model_name, mv.version, alias, reason)
    return GateDecision(model_name, str(mv.version), alias, reason, verdict.rule)


def resolve_model(spec: str) -> ModelRef:
    """`NAME@ALIAS`, `NAME/VERSION`, `NAME` (its champion) or `models:/...` -> the version it
    names now. Resolved once, so a job uses one version throughout even if the alias moves."""
    client = MlflowClient()
    name, alias, version = parse_spec(spec)
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException:
        known = sorted(m.name for m in client.search_registered_models(max_results=100))
        raise not_registered(spec, mlflow.get_tracking_uri(), known) from None
    return ModelRef(mv.name, str(mv.version), alias, mv.run_id or "")


def load_pipeline(ref: ModelRef, kind: str) -> Any:
    """The fitted pipeline inside a registered version (not its pyfunc wrapper), checked to be
    of `kind` (e.g. a language model that a classifier starts from)."""
    try:
        info = mlflow.models.get_model_info(ref.uri)
    except MlflowException as exc:
        raise ModelError(f"cannot read {ref}: {exc.message.splitlines()[0]}") from None
    found = artefact_kind(info)
    if found != kind:
        raise ModelError(f"{ref} is {'a ' + repr(found) if found else 'not an rnnpipe'} model, not a {kind!r} model")
    path = mlflow.artifacts.download_artifacts(f"{ref.uri}/artifacts/pipeline")
    return kinds.artefact_class(kind).load(path)


def load_model(uri: str):
    """A registered model as a pyfunc, e.g. `models:/stocks-forecaster@champion`."""
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise ModelError(f"cannot load model {uri!r}: {exc.message.splitlines()[0]}") from None
