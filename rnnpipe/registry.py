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
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import warnings
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
    if (db := settings.sqlite_file(uri)) is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
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
    if settings.sqlite_file(settings.tracking_uri()) is not None:
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
        inputs = [DatasetInput(dataset._to_mlflow_entity(), [InputTag("mlflow.data.context", context)])]
        for attempt in range(3):
            try:
                self.client.log_inputs(self.id, inputs)
                return
            except MlflowException as exc:
                # runs started side by side (sweep and tune trials) insert the same new dataset
                # at once; MLflow's store refuses the second row: it exists now, so link to it
                if "UNIQUE constraint failed: datasets" not in str(exc) or attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))

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
        profile = context.artifacts.get("profile")  # the reference of drift reports, when logged with one
        self.profile = json.loads(Path(profile).read_text()) if profile else None
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


def _requirements(extra: tuple[str, ...] = ()) -> list[str]:
    """The pins of a logged model: the runtime packages and those its artefact names
    (`PACKAGES`: a servable baseline's own library)."""
    reqs = []
    for pkg in dict.fromkeys(RUNTIME_PACKAGES + tuple(extra)):
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
    data (megabytes a model does not read), the orchestration (flows and their tasks: Prefect, which a
    served model never imports) or compiled caches."""
    import shutil

    root = Path(__file__).resolve().parent

    def skip(folder: str, names: list[str]) -> list[str]:
        top = Path(folder).resolve() == root
        return [n for n in names if n == "__pycache__" or (top and n in ("data", "flows"))]

    return Path(shutil.copytree(root, into / "rnnpipe", ignore=skip))


def log_pipeline_model(
    run: Run, pipeline: Any, input_example: pd.DataFrame, name: str = "model", profile: dict[str, Any] | None = None
) -> str:
    """Log a fitted pipeline as a pyfunc model of `run` and return its model URI.

    `profile`, the reference of drift reports (`rnnpipe.drift`), travels as the model's
    artifact `profile` (a model logged without one reports no drift).

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
        artifacts = {"pipeline": str(pipe_dir)}
        if profile is not None:
            (Path(tmp) / "profile.json").write_text(json.dumps(profile))
            artifacts["profile"] = str(Path(tmp) / "profile.json")
        code = _package_code(Path(tmp) / "code")
        with mlflow.start_run(run_id=run.id):
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                artifacts=artifacts,
                code_paths=[str(code)],
                signature=signature,
                input_example=input_example,
                pip_requirements=_requirements(getattr(type(pipeline), "PACKAGES", ())),
                model_config={"kind": type(pipeline).KIND},
                metadata={"rnnpipe_input_columns": choices},
            )
        # leaving the block marks the run FINISHED; it is still being written to
        run.client.update_run(run.id, status="RUNNING")
    return info.model_uri


def resolve_model(spec: str) -> ModelRef:
    """`NAME@ALIAS`, `NAME/VERSION`, `NAME` (its champion) or `models:/...` -> the version it
    names now. Resolved once, so a job uses one version throughout even if the alias moves."""
    client = MlflowClient()
    name, alias, version = parse_spec(spec)
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException:
        known = sorted(m.name for m in client.search_registered_models(max_results=100))
        versions = {}
        if name in known:  # (versions found by a search carry no aliases: the model has them)
            versions = {str(v.version): [] for v in client.search_model_versions(f"name = '{name}'")}
            for a, v in (client.get_registered_model(name).aliases or {}).items():
                versions.setdefault(str(v), []).append(a)
        raise not_registered(spec, mlflow.get_tracking_uri(), known, versions) from None
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
    """A registered model as a pyfunc, e.g. `models:/stocks-forecaster@champion`.

    To load it MLflow puts the model's copy of the rnnpipe code (its code_paths) first on
    `sys.path`, and leaves it there. This process's rnnpipe is imported already, but processes
    started later inherit the path (Dask's workers are spawned with it): they would import the
    copy of `rnnpipe`, from the version that logged the model, mixed with this version's
    modules the copy lacks (`rnnpipe.flows`), and a name added since fails to import (a Dask
    job then hung). The path is restored once the model is loaded."""
    before = list(sys.path)
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise ModelError(f"cannot load model {uri!r}: {exc.message.splitlines()[0]}") from None
    finally:
        sys.path[:] = before
