"""The `rnnpipe` command line. Thin: it parses, then hands over to flows or the library.

Heavy imports (torch, Prefect, MLflow) happen inside the commands, so `--help` is instant.
User mistakes print one line on stderr and exit with code 2; bugs keep their traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import click

from rnnpipe import __version__, kinds, localstore, settings
from rnnpipe.errors import DataError, RnnpipeError, Terminated


def configs() -> dict[str, str]:
    """`rnnpipe config NAME`: every kind's settings, and the schedule's."""
    return {**{k.name: k.config for k in kinds.KINDS.values()}, "schedule": "rnnpipe.schedule_config:ScheduleConfig"}


class Registered(click.Choice):
    """A choice among names read from `rnnpipe.kinds` when the command runs, not when this
    module is imported: a kind added to the registry is offered at once."""

    def __init__(self, names: Callable[[], list[str]]):
        self._names = names
        super().__init__(names())

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self._names())

    @choices.setter
    def choices(self, _value) -> None:  # click.Choice.__init__ assigns it
        pass


class TrainCommand(click.Command):
    """`rnnpipe train`: its help ends with the kinds and what each is, read from the registry."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Pipelines"):
            formatter.write_dl([(k.name, k.summary) for k in kinds.KINDS.values()])


DEFAULT_MODEL = "stocks-forecaster@champion"


def _dask_installed(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """--runner dask needs the Dask extra; without it, say so before anything starts."""
    import importlib.util

    if value == "dask":
        missing = [m for m in ("prefect_dask", "distributed") if importlib.util.find_spec(m) is None]
        if missing:
            raise click.BadParameter(
                f"needs rnnpipe's Dask extra ({', '.join(missing)} not installed): pip install 'rnnpipe[dask]'"
            )
    return value


def user_errors(fn):
    """Turn user errors into `error: ...` on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RnnpipeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:  # Ctrl-C: 130 from every command, SIGTERM 143, as shells expect
            command = click.get_current_context(silent=True)
            hint = (
                "; `rnnpipe train ... --resume` continues from the last epoch"
                if command is not None and command.info_name == "train"
                else ""
            )
            stopped = isinstance(exc, Terminated)
            click.echo(f"{'stopped (SIGTERM)' if stopped else 'interrupted'}{hint}", err=True)
            sys.exit(143 if stopped else 130)

    return wrapper


def config_options(fn):
    fn = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override one setting, e.g. --set model.hidden_size=128 (repeatable; names as in `rnnpipe config`).",
    )(fn)
    fn = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        help="TOML file with settings (see `rnnpipe config stocks`), or a bundled config by name "
        f"(configs/NAME.toml or NAME: {', '.join(settings.bundled_configs())}).",
    )(fn)
    return fn


def _config(pipeline: str, config_path: str | None, overrides: tuple[str, ...], skip: tuple[str, ...] = ()):
    import dataclasses

    from rnnpipe import settings
    from rnnpipe.config import load_config

    cfg = load_config(kinds.get(pipeline).config_class(), config_path, list(overrides), skip)
    # every file the run will read exists, checked before any flow (and its API) starts
    for section in dataclasses.fields(cfg):
        sub = getattr(cfg, section.name)
        for key in ("path", "test_path"):
            value = getattr(sub, key, "")
            if isinstance(value, str) and value and not settings.resolve_data_path(value).exists():
                raise DataError(f"{section.name}.{key}={value}: no such file or folder")
    _check_columns(cfg)
    return cfg


def _preload(pipeline: str, cfg) -> None:
    """Read and validate the run's data now, before any flow (and its API) starts: a bad value,
    date or duplicate fails in seconds and is printed once. The flow's ingest task takes the
    result instead of reading the files again (`rnnpipe.io.preloadable`)."""
    kinds.load(kinds.get(pipeline).ingest).preload(cfg)
    references = getattr(cfg, "model_references", list)()
    # a registered model the run starts from: an unknown name fails now, from the local store
    # when it can tell (`rnnpipe.localstore`), else through MLflow
    unsure = [spec for spec in references if localstore.find(spec) is None]
    if unsure:
        from rnnpipe.registry import configure_tracking, resolve_model

        configure_tracking()
        for spec in unsure:
            resolve_model(spec)


def _check_columns(cfg) -> None:
    """The data files hold the columns the config names (`data.*_col`, `data.features`,
    `data.channels`), read from their schema only: a misspelt column fails before any flow."""
    from rnnpipe import settings
    from rnnpipe.io import open_dataset

    d = getattr(cfg, "data", None)
    if d is None:
        return
    wanted = {
        f"data.{k}": v for k, v in vars(d).items() if k.endswith("_col") and k != "id_col" and isinstance(v, str) and v
    }
    for k in ("features", "channels"):
        for v in getattr(d, k, None) or []:
            wanted[f"data.{k}[{v}]"] = v
    for key in ("path", "test_path"):
        value = getattr(d, key, "")
        if not value:
            continue
        path = settings.resolve_data_path(value)
        dataset, _ = open_dataset(path, getattr(d, "format", "auto"))
        names = set(dataset.schema.names)
        for setting, column in wanted.items():
            if column not in names:
                raise DataError(
                    f"{path}: column {column!r} not found ({setting.split('[')[0]}={column}; "
                    f"columns: {', '.join(dataset.schema.names)})"
                    # a file of one series has no series column: say how to tell rnnpipe so
                    + ("; a file of one series: --set data.series_col=" if setting == "data.series_col" else "")
                )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rnnpipe")
@click.option(
    "-q", "--quiet", is_flag=True, help="Only warnings, errors and the result (Prefect's and MLflow's logs too)."
)
@click.option(
    "-v", "--verbose", count=True, help="More log lines: -v rnnpipe's debug lines, -vv Prefect's and MLflow's too."
)
def cli(quiet, verbose):
    """Train, track and serve recurrent sequence models.

    Every run is a Prefect flow logged to MLflow; `rnnpipe info` shows where things are kept.
    """
    settings.apply_environment()
    settings.apply_verbosity(-1 if quiet else verbose)


UI_HOST, UI_PORT = "127.0.0.1", 5000  # where `rnnpipe ui` serves by default


# MLflow 3's UI opens in its "GenAI" view (no model registry in the sidebar) unless the page's
# address asks for the model-training one
ML_VIEW = "workflowType=machine_learning"


def _echo_registration(summary: dict, said: bool) -> None:
    """What a training flow registered (`TrainedModel.summary`): the version's line (unless the
    gate's log line `said` it), the baseline registered beside it and how to serve it, or how
    to serve the model when no version is champion yet."""
    name = summary["model_name"]
    if not said:
        click.echo(f"{name} v{summary['version']} -> {summary['alias']}: {summary['reason']}")
    if summary.get("baseline_version"):
        alias = summary["baseline_alias"]
        if not said:
            click.echo(f"{name} v{summary['baseline_version']} -> {alias}: {summary['baseline_reason']}")
        click.echo(f"serve it with: rnnpipe serve {name}@{alias}")
    elif summary["alias"] != "champion" and not summary.get("champion_version"):
        version = summary["version"]
        click.echo(f"no version of {name} is champion yet; to serve this one anyway: rnnpipe serve {name}/{version}")


def _run_link(run_id: str) -> str:
    """The run's page in the MLflow UI (as MLflow's own clients print it), and how to open it."""
    from mlflow.tracking import MlflowClient

    exp = MlflowClient().get_run(run_id).info.experiment_id
    running = _running_ui()
    url = running or f"http://{UI_HOST}:{UI_PORT}"
    return f"{url}/#/experiments/{exp}/runs/{run_id}?{ML_VIEW}" + (
        "" if running else "  (start the UI with: rnnpipe ui)"
    )


def _ui_file() -> Path:
    return settings.project_home() / ".rnnpipe" / "ui.json"


def _running_ui() -> str | None:
    """The address of the `rnnpipe ui` running on this project's store, if one is (it says
    where while it runs), so that printed links use its port."""
    try:
        info = json.loads(_ui_file().read_text())
        os.kill(int(info["pid"]), 0)
        return str(info["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_port(host: str, port: int) -> None:
    """A busy port is a user error said in one line, before any server starts."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the servers themselves do: connections of a server just stopped (TIME_WAIT) do
        # not make the port busy; a listening socket still does
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise RnnpipeError(
                f"port {port} on {host} is not free ({exc.strerror}); pick another with --port"
            ) from None


def _mlflow_bin() -> str:
    mlflow_bin = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    if not Path(mlflow_bin).exists():
        raise RnnpipeError("the mlflow command is not installed in this environment")
    return mlflow_bin


def _foreground(argv: list[str], env: dict[str, str]) -> None:
    """Run a server command until it exits (its exit code is ours) or until Ctrl-C / SIGTERM,
    which is passed on to it (to its whole process group: the mlflow command and the web
    server it starts) and waited for; then exit 130 / 143, as every rnnpipe command does."""
    import signal
    import subprocess
    import threading

    proc = subprocess.Popen(argv, env=env, start_new_session=True)
    got: list[int] = []

    def signal_group(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)

    def forward(signum, _frame=None):
        # no waiting in here: the main thread's wait() holds the child's lock
        if got:
            return
        got.append(signum)
        # the servers stop cleanly on SIGTERM; on SIGINT uvicorn prints its traceback
        signal_group(signal.SIGTERM)
        timer = threading.Timer(15, signal_group, [signal.SIGKILL])  # one that does not stop
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, forward)
    # started in the background by a non-interactive shell, a process inherits SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    while True:
        try:
            rc = proc.wait()
            break
        except KeyboardInterrupt:
            forward(signal.SIGINT)
    sys.exit(128 + got[0] if got else rc)


def runner_options(unit: str):
    """--runner, --address and --workers of commands that run one Prefect task per `unit`."""

    def wrap(f):
        for opt in reversed(
            [
                click.option(
                    "--runner",
                    type=click.Choice(["sequential", "local", "dask"]),
                    callback=_dask_installed,
                    default="local",
                    show_default=True,
                    help=f"Where {unit}s run: local (a process pool on this machine), "
                    "dask (a Dask cluster, prefect-dask), sequential.",
                ),
                click.option(
                    "--address",
                    default="",
                    metavar="tcp://HOST:PORT",
                    help="With --runner dask: an existing Dask scheduler; default: a LocalCluster here.",
                ),
                click.option(
                    "--workers",
                    type=click.IntRange(min=0),
                    default=0,
                    help=f"{unit.capitalize()}s at a time (default: one per core, at most one per {unit}).",
                ),
            ]
        ):
            f = opt(f)
        return f

    return wrap


def _plan(runner: str, address: str, n: int, workers: int, threads: int) -> tuple[int, int]:
    """(tasks at a time, torch threads each) for sweeps and backtests on a task runner."""
    from rnnpipe.sweep import plan_resources

    if runner == "sequential":  # one task at a time, with every core
        return plan_resources(1, 1, threads)
    if runner == "dask" and address:  # the remote workers' cores are not ours to count
        return workers or 1, threads or 1
    return plan_resources(n, workers, threads)


def main() -> None:
    cli(prog_name="rnnpipe")


# the commands, each module adding its own to `cli`
from rnnpipe.cli import data, experiments, operate, training  # noqa: E402, F401
