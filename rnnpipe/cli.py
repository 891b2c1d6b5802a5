"""The `rnnpipe` command line. Thin: it parses, then hands over to flows or the library.

Heavy imports (torch, Prefect, MLflow) happen inside the commands, so `--help` is instant.
User mistakes print one line on stderr and exit with code 2; bugs keep their traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import click

from rnnpipe import __version__, kinds, localstore, settings
from rnnpipe.errors import ConfigError, DataError, RnnpipeError, Terminated


def configs() -> dict[str, str]:
    """`rnnpipe config NAME`: every kind's settings, and the schedule's."""
    return {**{k.name: k.config for k in kinds.KINDS.values()}, "schedule": "rnnpipe.config:ScheduleConfig"}


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
        help="TOML file with settings (see `rnnpipe config stocks`).",
    )(fn)
    return fn


def _config(pipeline: str, config_path: str | None, overrides: tuple[str, ...]):
    import dataclasses

    from rnnpipe import settings
    from rnnpipe.config import load_config

    cfg = load_config(kinds.get(pipeline).config_class(), config_path, list(overrides))
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


@cli.command(cls=TrainCommand)
@click.argument("pipeline", type=Registered(kinds.names))
@config_options
@click.option(
    "--resume", is_flag=True, help="Continue an interrupted run of the same config and data from its last checkpoint."
)
@user_errors
def train(pipeline, config_path, overrides, resume):
    """Run the training flow of PIPELINE: ingest, split, scale, window, train, evaluate against
    the baseline, log to MLflow and register the model.

    \b
    Examples:
      rnnpipe train stocks
      rnnpipe train stocks --set train.epochs=5 --set model.cell=gru
      rnnpipe train stocks --set data.path=prices.csv --set data.series_col=symbol
      rnnpipe train stocks --set data.path=one_series.csv --set data.series_col='""' \\
        --set data.timestamp_col=time --set data.target_col=value
      rnnpipe train monitor
      rnnpipe train monitor --set data.path=vitals/ --set data.channels=hr,spo2 --set data.event='spo2 < 90'
      rnnpipe train reviews
      rnnpipe train reviews --set data.path=reviews.jsonl --set data.text_col=body --set data.label_col=stars

    \b
    With your own data.path, the defaults that describe the bundled sample give way: all
    series (not the three bundled tickers), no separate test file for reviews (split.test is
    held out) and no id column. Without a series column the file is one series.
    """
    from rnnpipe.config import to_dict

    cfg = _config(pipeline, config_path, overrides)
    _preload(pipeline, cfg)
    from rnnpipe.flows.api import flow_api  # light: started before the heavy imports

    with flow_api() as ready:
        flow = kinds.get(pipeline).flow_function()
        ready()
        summary = flow(config=to_dict(cfg), resume=resume)
    click.echo("")
    if not settings.logs_info():  # otherwise the gate's log line just said it
        click.echo(f"{summary['model_name']} v{summary['version']} -> {summary['alias']}: {summary['reason']}")
    if summary.get("baseline_version"):
        name, alias = summary["model_name"], summary["baseline_alias"]
        if not settings.logs_info():
            click.echo(f"{name} v{summary['baseline_version']} -> {alias}: {summary['baseline_reason']}")
        click.echo(f"serve it with: rnnpipe serve {name}@{alias}")
    click.echo(f"MLflow run {summary['run_id']} in experiment {summary['experiment']}: {_run_link(summary['run_id'])}")


@cli.command("config")
@click.argument("name", type=Registered(lambda: sorted(configs())))
@config_options
@user_errors
def show_config(name, config_path, overrides):
    """Print the settings of a pipeline, or of `schedule`, (defaults, then --config, then
    --set) as TOML."""
    from rnnpipe.config import load_config, to_toml

    click.echo(to_toml(load_config(kinds.load(configs()[name]), config_path, list(overrides))), nl=False)


@cli.command()
@click.argument("model", required=False, default=DEFAULT_MODEL)
@click.option(
    "-i",
    "--input",
    "input_path",
    required=True,
    type=click.Path(),
    help="CSV, Parquet or JSON Lines file, folder or partitioned dataset.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(),
    help="Parquet file to write (atomically: it appears only when the job is complete); "
    "with --runner dask, a folder of Parquet part files and _SUCCESS.",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    default=50_000,
    show_default=True,
    help="Rows read and predicted at a time; memory follows this, not the input size.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["auto", "csv", "parquet", "jsonl"]), default="auto", show_default=True
)
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists (else the job refuses).")
@click.option(
    "--runner",
    type=click.Choice(["local", "dask"]),
    callback=_dask_installed,
    default="local",
    show_default=True,
    help="local: this process, one output file; dask: the input's files (or, for a series "
    "model whose series span files, buckets of whole series) on Dask workers.",
)
@click.option(
    "--address",
    default="",
    metavar="tcp://HOST:PORT",
    help="With --runner dask: an existing Dask scheduler (input and output on a file system "
    "every worker sees); default: a LocalCluster here.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    help="With --runner dask: workers of the LocalCluster (default: one per core).",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    metavar="auto|cpu|cuda|cuda:N|mps",
    help="Where the model runs: auto takes the GPU when there is one.",
)
@click.option(
    "--split-gpus", is_flag=True, help="With --runner dask: worker k holds its model on GPU k mod (number of GPUs)."
)
@user_errors
def predict(model, input_path, output, chunk_rows, fmt, overwrite, runner, address, workers, device, split_gpus):
    """Batch prediction with MODEL (default: stocks-forecaster@champion), as a Prefect flow.

    MODEL is a registered NAME@ALIAS, NAME/VERSION or NAME (its champion); the version is
    fixed when the job starts. The input holds the raw columns the model reads (price history,
    patient readings, or a `text` column of reviews); the output has the input keys, the
    predictions, and model name, version, alias and MLflow run id on every row.

    \b
    Examples:
      rnnpipe predict -i history.parquet -o forecasts.parquet
      rnnpipe predict reviews-sentiment@champion -i reviews/ -o scored.parquet --chunk-rows 10000
    """
    # what can be checked without the model is checked before any flow starts
    if runner == "local" and Path(output).suffix.lower() not in (".parquet", ".pq"):
        raise DataError(f"{output}: the output of a batch job is Parquet; name it *.parquet")
    if Path(output).exists() and not overwrite:
        raise DataError(f"{output} exists; pass --overwrite to replace it")
    if not Path(input_path).exists():
        raise DataError(f"{input_path}: no such file or folder")
    if split_gpus and runner != "dask":
        raise click.UsageError("--split-gpus places Dask workers; use it with --runner dask")
    _check_device(device)
    from rnnpipe.batch_jobs import check_input

    check_input(model, input_path, fmt)  # the model reference, columns and values, before the flow
    from rnnpipe.flows.api import flow_api  # light: started before the heavy imports

    with flow_api() as ready:
        from rnnpipe.flows.predict import batch_predict

        ready()
        if runner == "dask":
            from rnnpipe.flows.sweep import task_runner
            from rnnpipe.threads import available_cpus

            n = workers or available_cpus()
            threads = 1 if address else max(1, available_cpus() // n)
            out = batch_predict.with_options(task_runner=task_runner("dask", n, address))(
                model, str(input_path), str(output), chunk_rows, fmt, "dask", n, threads, overwrite, device, split_gpus
            )
        else:
            out = batch_predict(model, str(input_path), str(output), chunk_rows, fmt, device=device)
    click.echo(
        f"{out['model']}: {out['rows_in']:,} rows -> {out['rows_out']:,} predictions in "
        f"{out['seconds']:.1f} s ({out['rows_per_s']:,.0f} rows/s); wrote {out['output']}",
        err=True,
    )
    click.echo(f"MLflow run of the job: {_run_link(out['job_run_id'])}", err=True)


def _check_device(device: str) -> None:
    """A device that is misspelt, or a GPU this machine lacks, fails before any flow starts."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        raise click.BadParameter(f"{device!r}: expected auto, cpu, cuda, cuda:N or mps", param_hint="--device")
    if device != "auto" and device != "cpu":
        from rnnpipe.training import select_device

        try:
            select_device(device)
        except ConfigError as exc:
            raise click.BadParameter(str(exc).replace("train.device=", ""), param_hint="--device") from None


UI_HOST, UI_PORT = "127.0.0.1", 5000  # where `rnnpipe ui` serves by default


# MLflow 3's UI opens in its "GenAI" view (no model registry in the sidebar) unless the page's
# address asks for the model-training one
ML_VIEW = "workflowType=machine_learning"


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


@cli.command()
@click.argument("model", required=False, default=DEFAULT_MODEL)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5001, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1))
@user_errors
def serve(model, host, port, workers):
    """Serve MODEL (default: stocks-forecaster@champion) over HTTP with MLflow's model server.

    The served model takes the same raw input as `rnnpipe predict` (price history, readings,
    review text) as JSON (`dataframe_split` or `dataframe_records`) at /invocations; /ping
    and /health answer when it is ready. The version is fixed at start; restart to pick up a
    new champion. Ctrl-C stops it.
    """
    _check_port(host, port)
    localstore.find(model)  # a wrong reference fails now, before MLflow is imported
    from rnnpipe.registry import configure_tracking, resolve_model
    from rnnpipe.serving import example_request

    tracking = configure_tracking()
    ref = resolve_model(model)
    example = example_request(ref)
    url = f"http://{host}:{port}"
    click.echo(f"serving {ref} (MLflow run {ref.run_id}) on {url}", err=True)
    click.echo(f"  curl -s {url}/invocations -H 'Content-Type: application/json' -d @{example}", err=True)
    click.echo("  Ctrl-C stops it", err=True)
    # the server starts `uvicorn` by name: the environment's bin folder must be on PATH
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "PATH": path}
    mlflow_bin = _mlflow_bin()
    _foreground(
        [
            mlflow_bin,
            "models",
            "serve",
            "-m",
            ref.uri,
            "--env-manager",
            "local",
            "-h",
            host,
            "-p",
            str(port),
            "-w",
            str(workers),
        ],
        env,
    )


@cli.command()
@click.option("--host", default=UI_HOST, show_default=True)
@click.option("--port", default=UI_PORT, show_default=True, type=int)
@user_errors
def ui(host, port):
    """Open the MLflow UI on the project's tracking store (runs, curves, plots, registry)."""
    _check_port(host, port)
    uri = settings.tracking_uri()
    mlflow_bin = _mlflow_bin()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    verbose = os.environ.get("RNNPIPE_LOG_LEVEL") == "DEBUG"
    if not verbose:  # a deprecation inside MLflow's server is not the user's to act on (-v shows it)
        env["PYTHONWARNINGS"] = ",".join(
            filter(None, [env.get("PYTHONWARNINGS"), "ignore:starlette.middleware.wsgi is deprecated"])
        )
    click.echo(f"MLflow UI on http://{host}:{port} (store {uri}); Ctrl-C stops it", err=True)
    click.echo(
        f"  open http://{host}:{port}/#/experiments?{ML_VIEW} in a browser (models: /#/models?{ML_VIEW})", err=True
    )
    marker = _ui_file()
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"url": f"http://{host}:{port}", "pid": os.getpid()}))
    try:
        # -v: uvicorn's start and stop lines and a line per request
        quiet = [] if verbose else ["--uvicorn-opts", "--no-access-log --log-level warning"]
        _foreground(
            [
                mlflow_bin,
                "server",
                "--backend-store-uri",
                uri,
                "--registry-store-uri",
                uri,
                "--host",
                host,
                "--port",
                str(port),
                "--workers",
                "1",
                *quiet,
            ],
            env,
        )
    finally:
        marker.unlink(missing_ok=True)


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


@cli.command()
@click.argument("pipeline", type=Registered(kinds.names))
@config_options
@click.option(
    "--grid",
    "grid",
    multiple=True,
    metavar="KEY=V1,V2",
    help="A swept setting and its values, e.g. --grid model.cell=lstm,gru (repeatable).",
)
@click.option(
    "--random",
    "random_n",
    type=click.IntRange(min=0),
    default=0,
    help="Draw N combinations of the grid at random instead of all of them.",
)
@runner_options("trial")
@click.option(
    "--threads-per-trial",
    "threads",
    type=click.IntRange(min=0),
    default=0,
    help="torch threads in each trial (default: cores / workers).",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Retries of a failed trial (not for bad config or data).",
)
@click.option(
    "--per-series",
    is_flag=True,
    help="One model per series (ticker, patient), each with its own sweep, best and registered model.",
)
@click.option("--split-gpus", is_flag=True, help="Put trial i on GPU i mod (number of GPUs).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --random.")
@user_errors
def sweep(
    pipeline,
    config_path,
    overrides,
    grid,
    random_n,
    runner,
    address,
    workers,
    threads,
    retries,
    per_series,
    split_gpus,
    seed,
):
    """Train one model per trial of PIPELINE in parallel; pick the best on validation (never on
    test) and register it through the champion gate.

    MLflow shows one parent run with a nested run per trial, and the summary table and plot
    under the parent's `sweep/` artefacts. A trial that fails is reported as failed; the sweep
    fails only if every trial does.

    \b
    Examples:
      rnnpipe sweep stocks --grid model.cell=lstm,gru --grid model.hidden_size=64,128
      rnnpipe sweep stocks --grid model.cell=lstm,gru --runner dask --address tcp://10.0.0.5:8786
      rnnpipe sweep reviews --grid embed.freeze=true,false --grid model.pooling=max,attention --random 4
      rnnpipe sweep stocks --per-series --grid window.lookback=30,60
    """
    from rnnpipe.config import to_dict
    from rnnpipe.sweep import make_trials, parse_grid, trial_config

    cfg = _config(pipeline, config_path, overrides)
    kinds.load(kinds.get(pipeline).ingest)(cfg)  # a bad file fails here; each trial reads the data itself
    space = parse_grid(list(grid))
    trials = make_trials(space, random_n, seed)
    for params in trials:  # a misspelt key or a bad value fails here, before any trial runs
        trial_config(pipeline, to_dict(cfg), params)
    n = len(trials)
    if per_series:  # times the number of series, known only once the data is read
        n = max(n, os.cpu_count() or 1)
    workers, threads = _plan(runner, address, n, workers, threads)
    from rnnpipe.flows.api import flow_api  # light: started before the heavy imports

    with flow_api() as ready:
        from rnnpipe.flows.sweep import sweep as sweep_flow
        from rnnpipe.flows.sweep import task_runner

        flow = sweep_flow.with_options(task_runner=task_runner(runner, workers, address))
        ready()
        out = flow(
            pipeline, to_dict(cfg), space, random_n, seed, workers, threads, retries, per_series, split_gpus, runner
        )
    click.echo("")
    click.echo(
        f"{out['trials']} trials, {out['failed']} failed; best trial {out['best_trial']} "
        f"{out['best_params']} (val loss {out['best_val_loss']:.5f})"
    )
    for d in out["registered"].values():
        click.echo(f"{d['model_name']} v{d['version']} -> {d['alias']}: {d['reason']}")
    click.echo(f"MLflow parent run {out['parent_run_id']}: {_run_link(out['parent_run_id'])}")


@cli.command()
@click.argument("pipeline", type=Registered(kinds.backtest_names))
@config_options
@click.option("--folds", type=click.IntRange(min=1), default=None, help="Folds (default: backtest.folds, 5).")
@click.option(
    "--step",
    type=click.IntRange(min=1),
    default=None,
    help="Rows of each fold's test block, e.g. trading days (default: backtest.step, 60).",
)
@click.option(
    "--refit",
    type=click.Choice(["every", "once"]),
    default=None,
    help="every: train a model per fold; once: fold 1's model serves every fold (default: backtest.refit).",
)
@runner_options("fold")
@user_errors
def backtest(pipeline, config_path, overrides, folds, step, refit, runner, address, workers):
    """Rolling-origin backtest of PIPELINE: fold k trains on every row before its origin and
    forecasts the next STEP rows with the configured horizon; the model, naive (with empirical
    quantiles), ridge and the statistical baselines are scored per fold and overall.

    MLflow shows one parent run (tag backtest=true; metrics backtest_mae, backtest_mase,
    naive_backtest_mae, ...) with a nested run per fold (tag backtest_fold=K), the table
    backtest/folds.json and the plot backtest/mae_by_fold.png. Nothing is registered.

    \b
    Examples:
      rnnpipe backtest stocks
      rnnpipe backtest stocks --folds 10 --step 20 --refit once
      rnnpipe backtest stocks --runner dask --workers 2
    """
    from rnnpipe.config import to_dict

    extra = [f"backtest.{k}={v}" for k, v in (("folds", folds), ("step", step), ("refit", refit)) if v is not None]
    cfg = _config(pipeline, config_path, [*overrides, *extra])
    _preload(pipeline, cfg)
    n = cfg.backtest.folds if cfg.backtest.refit == "every" else 1
    workers, threads = _plan(runner, address, n, workers, 0)
    from rnnpipe.flows.api import flow_api  # light: started before the heavy imports

    with flow_api() as ready:
        from rnnpipe.flows.sweep import task_runner

        flow = kinds.load(kinds.get(pipeline).backtest)
        ready()
        out = flow.with_options(task_runner=task_runner(runner, workers, address))(
            to_dict(cfg), workers, threads, runner
        )
    click.echo("")
    rows = out["folds"]
    cols = [c for c in rows[0] if c.endswith("_mae") or c in ("fold", "origin", "model_coverage_80")]
    click.echo("  ".join(f"{c:>14}" for c in cols))
    for r in rows:
        click.echo("  ".join(f"{r[c]:>14.4f}" if isinstance(r[c], float) else f"{r[c]!s:>14}" for c in cols))
    click.echo(out["standing"])
    click.echo(
        f"MLflow parent run {out['parent_run_id']} in experiment {out['experiment']}: {_run_link(out['parent_run_id'])}"
    )


@cli.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="TOML file with the schedules (see `rnnpipe config schedule`).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one setting, e.g. --set predict.interval_s=600 (repeatable).",
)
@click.option(
    "--start-server",
    is_flag=True,
    help="Start a Prefect server on server.host:server.port if none answers there (stopped again on exit).",
)
@user_errors
@click.option(
    "--port",
    type=int,
    default=None,
    help="Port of the Prefect server to use or start (sets server.port; default 4200).",
)
def schedule(config_path, overrides, start_server, port):
    """Serve scheduled deployments of the training flows (cron, e.g. a nightly retrain) and of
    batch prediction (interval) from a Prefect server on 127.0.0.1.

    Schedules need a real server (the ephemeral API cannot run them). Retrains go through the
    champion gate, so a worse model never displaces the champion; batch prediction resolves
    the champion at every run. Runs show in the Prefect UI at the server's address, and each
    one in MLflow. Ctrl-C (or SIGTERM) stops the runner, and the server if it started it.

    \b
    Examples:
      rnnpipe schedule --start-server
      rnnpipe schedule --set train.pipelines=stocks,reviews --set train.cron='30 1 * * *'
      rnnpipe config schedule > schedule.toml   # edit, then: rnnpipe schedule --config schedule.toml
    """
    import signal

    from rnnpipe.config import ScheduleConfig, load_config
    from rnnpipe.prefect_server import PrefectServer

    # started in the background by a non-interactive shell (`cmd &`), a process inherits SIGINT
    # ignored, and Python then never raises KeyboardInterrupt: the runner could not be stopped
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cfg = load_config(ScheduleConfig, config_path, [*overrides, *([f"server.port={port}"] if port else [])])
    server = PrefectServer(cfg.server.host, cfg.server.port)
    started = False
    if not server.healthy():
        if not start_server:
            raise RnnpipeError(
                f"no Prefect server answers at {server.api_url}; start one with "
                f"`prefect server start --host {cfg.server.host} --port {cfg.server.port}` "
                "or pass --start-server"
            )
        _check_port(cfg.server.host, cfg.server.port)
        click.echo(f"starting a Prefect server on {server.ui_url} (log: {server.log_path})", err=True)
        server.start()
        started = True
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        from rnnpipe.flows.schedule import serve_deployments

        click.echo(f"Prefect UI: {server.ui_url}  (MLflow UI: rnnpipe ui)", err=True)
        click.echo(
            f"  to run a deployment by hand: export PREFECT_API_URL={server.api_url}, then "
            "`prefect deployment ls` and `prefect deployment run FLOW/DEPLOYMENT`",
            err=True,
        )
        serve_deployments(
            cfg,
            lambda pipeline: kinds.get(pipeline).flow_function(),
            lambda pipeline, extra: _config(pipeline, None, tuple(extra)),
        )
    finally:
        if started:
            click.echo("stopping the Prefect server", err=True)
            server.stop()


@cli.group()
def data():
    """Make data sets: synthetic vitals for tests and scale."""


@data.command("synth-vitals")
@click.option("--patients", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=24, show_default=True)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False),
    default="data/synth-vitals",
    show_default=True,
    help="Folder to create (a hive-partitioned Parquet dataset).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--patients-per-file", type=click.IntRange(min=1), default=250, show_default=True)
@user_errors
def synth_vitals(patients, hours, out, seed, patients_per_file):
    """Write SYNTHETIC multi-patient vitals (heart rate, SpO2, respiratory rate, systolic BP,
    temperature; one reading a minute) with labelled deterioration episodes.

    Generated one shard at a time, so memory stays bounded at any size. Train on it with:

    \b
      rnnpipe train monitor --set data.path=data/synth-vitals \\
        --set data.channels=heart_rate,spo2,resp_rate,sbp,temperature \\
        --set data.event='""' --set data.label_col=deterioration \\
        --set resample.step=1min --set resample.max_gap=5min --set forecast.channel=heart_rate

    Add --set data.streaming=true to train shard by shard, as on a data set larger than
    memory (the default, auto, streams above data.stream_above_rows readings).
    """
    from tqdm.auto import tqdm

    from rnnpipe.synth import write_synthetic_vitals

    shards = (patients + patients_per_file - 1) // patients_per_file
    with tqdm(total=shards, unit="shard", desc="synth-vitals", disable=None) as bar:
        summary = write_synthetic_vitals(
            out, patients, hours, seed, patients_per_file, on_shard=lambda done, total: bar.update(1)
        )
    click.echo(
        f"wrote {summary['rows']:,} readings of {patients:,} patients in {summary['shards']} "
        f"shards to {out} (synthetic, seed {seed})"
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(as_json):
    """Show where rnnpipe keeps its state: tracking URI, Prefect home, checkpoints."""
    data = {
        "version": __version__,
        "home": str(settings.project_home()),
        "tracking_uri": settings.tracking_uri(),
        "prefect_home": str(settings.prefect_home()),
        "prefect_api_url": os.environ.get("PREFECT_API_URL", "(ephemeral, started per run)"),
        "checkpoints": str(settings.checkpoint_dir()),
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for k, v in data.items():
            click.echo(f"{k:15} {v}")


def main() -> None:
    cli(prog_name="rnnpipe")


if __name__ == "__main__":
    main()
