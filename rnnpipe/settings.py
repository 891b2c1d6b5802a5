"""Where rnnpipe keeps its state, and the environment the stack needs.

Everything lives under one project folder (`RNNPIPE_HOME`, else the source checkout when
rnnpipe runs from one, else the current directory):

    <home>/mlruns/mlflow.db   MLflow tracking + registry (SQLite); artefacts under <home>/mlruns/
    <home>/.prefect/          PREFECT_HOME: the ephemeral Prefect API's database and results
    <home>/.rnnpipe/          training checkpoints

`apply_environment()` must run before Prefect is imported (PREFECT_HOME is read at import).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TELEMETRY_OFF = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def project_home() -> Path:
    env = os.environ.get("RNNPIPE_HOME")
    if env:
        return Path(env).expanduser().resolve()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "tests").is_dir():
        return checkout
    return Path.cwd().resolve()


def mlruns_dir() -> Path:
    return project_home() / "mlruns"


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else the SQLite store inside the project."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlruns_dir() / 'mlflow.db'}"


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (an MLflow store, an Optuna storage); None for
    any other URI."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def missing_store() -> Path | None:
    """The SQLite file of the tracking URI when it does not exist yet (nothing was ever
    trained or registered with this store), else None: it exists, or the URI is not SQLite."""
    path = sqlite_file(tracking_uri())
    return path if path is not None and not path.exists() else None


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or project_home() / ".prefect")


def checkpoint_dir() -> Path:
    return project_home() / ".rnnpipe" / "checkpoints"


def apply_verbosity(level: int) -> None:
    """-1 quiet (warnings and errors), 0 the default (INFO), 1 rnnpipe DEBUG, 2 Prefect and
    MLflow DEBUG too. Set before Prefect is imported: it reads its logging level then."""
    import logging

    name = {-1: "WARNING", 0: "INFO", 1: "INFO"}.get(level, "DEBUG")
    for key in ("PREFECT_LOGGING_LEVEL", "MLFLOW_LOGGING_LEVEL"):
        # MLflow's INFO lines ("Validating input example ...") are for -v
        own = "WARNING" if key == "MLFLOW_LOGGING_LEVEL" and level == 0 else name
        if level == 0:
            os.environ.setdefault(key, own)  # the user's own setting stands
        else:
            os.environ[key] = name
    for logger in ("prefect", "mlflow"):
        logging.getLogger(logger).setLevel(
            os.environ["PREFECT_LOGGING_LEVEL" if logger == "prefect" else "MLFLOW_LOGGING_LEVEL"]
        )
    os.environ["RNNPIPE_LOG_LEVEL"] = "WARNING" if level < 0 else "DEBUG" if level > 0 else "INFO"
    # a Dask cluster's scheduler and workers (here and in their processes) say only what is wrong
    if level == 0:
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # the user's own setting stands
    else:
        os.environ["DASK_LOGGING__DISTRIBUTED"] = "info" if level > 0 else "warning"
    with contextlib.suppress(ValueError):  # a level Dask reads but logging does not name
        logging.getLogger("distributed").setLevel(os.environ["DASK_LOGGING__DISTRIBUTED"].upper())
    logging.getLogger("rnnpipe").setLevel(os.environ["RNNPIPE_LOG_LEVEL"])


def logs_info() -> bool:
    """Whether rnnpipe's INFO log lines are shown (not -q)."""
    return os.environ.get("RNNPIPE_LOG_LEVEL", "INFO") in ("INFO", "DEBUG")


def apply_environment() -> None:
    """Set telemetry off and point Prefect at the project, unless the user chose otherwise."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", str(prefect_home()))
    try:  # a new RNNPIPE_HOME is created, as Prefect and MLflow create their own folders
        Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # unwritable: Prefect says so itself
    # rnnpipe's own log lines show up in Prefect's run logs.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "rnnpipe")
    # ...and the library used outside a flow (a notebook) does not warn about it
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    # Flows run on an ephemeral local API unless a server is configured; say so explicitly.
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true")
        # it starts in 10-17 s on 2 busy cores; Prefect's default patience is 20 s
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


BUNDLED_PREFIX = "data/"  # how configs and the docs name a bundled file: data/stocks.parquet


def bundled_dir() -> Path:
    """The bundled samples and word vectors: package data of the installed rnnpipe (in a
    checkout, `rnnpipe/data`, which the checkout's `data/` links to)."""
    from importlib.resources import files

    return Path(str(files("rnnpipe") / "data"))


def bundled_file(path: str) -> Path | None:
    """The installed bundled file that `path` names (`data/<name>`), or None."""
    if not path.startswith(BUNDLED_PREFIX):
        return None
    candidate = bundled_dir() / path.removeprefix(BUNDLED_PREFIX)
    return candidate if candidate.exists() else None


def resolve_data_path(path: str) -> Path:
    """Where a data path points. An absolute path, or a relative one that exists from the
    current folder, is the user's own; a relative `data/<name>` that does not exist here is the
    bundled file of that name (the installed package's, wherever rnnpipe runs from; never
    RNNPIPE_HOME's); anything else stays relative to the current folder (and the error that
    follows names it)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return bundled_file(path) or p


BUNDLED_CONFIGS = "configs/"  # how the docs name a bundled config: configs/weather-day-ahead.toml


def bundled_configs() -> dict[str, Path]:
    """The documented configs installed with rnnpipe (`rnnpipe/configs`, which the checkout's
    `configs/` links to), by name: {"weather-day-ahead": .../weather-day-ahead.toml, ...}."""
    from importlib.resources import files

    folder = Path(str(files("rnnpipe") / "configs"))
    return {f.stem: f for f in sorted(folder.glob("*.toml"))}


def resolve_config_path(path: str | Path) -> Path:
    """Where a `--config` points. A file that exists (from the current folder, or absolute) is
    the user's own; otherwise `configs/<name>.toml`, `<name>.toml` or `<name>` of a bundled
    config is that config as installed, wherever rnnpipe runs from; anything else stays as
    given (and the error that follows names it with the bundled ones)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    name = str(path).removeprefix(BUNDLED_CONFIGS).removesuffix(".toml")
    return bundled_configs().get(name, p)


def describe_source(path: str | Path) -> str:
    """A data source as the registry compares it: `bundled:<name>` for a bundled file
    (the same wherever rnnpipe is installed), else the absolute path."""
    p = Path(path).expanduser()
    try:
        resolved = p.resolve()
        inside = resolved.relative_to(bundled_dir().resolve())
        return f"bundled:{inside.as_posix()}"
    except (ValueError, OSError):
        return str(p.absolute())
