"""Operating registered models: `rnnpipe predict`, `drift`, `serve`, `ui`, `schedule` and `info`."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import click

from rnnpipe import __version__, kinds, localstore, settings
from rnnpipe.cli import (
    DEFAULT_MODEL,
    ML_VIEW,
    UI_HOST,
    UI_PORT,
    _check_port,
    _config,
    _dask_installed,
    _foreground,
    _mlflow_bin,
    _run_link,
    _ui_file,
    cli,
    user_errors,
)
from rnnpipe.errors import ConfigError, DataError, RnnpipeError

# the input of a batch job, as `predict` and `drift` read it
INPUT = click.option(
    "-i",
    "--input",
    "input_path",
    required=True,
    type=click.Path(),
    help="CSV, Parquet or JSON Lines file, folder or partitioned dataset.",
)
FORMAT = click.option(
    "--format", "fmt", type=click.Choice(["auto", "csv", "parquet", "jsonl"]), default="auto", show_default=True
)


@cli.command()
@click.argument("model", required=False, default=DEFAULT_MODEL)
@INPUT
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(),
    help="Parquet or CSV file to write, by its suffix (atomically: it appears only when the job is "
    "complete); with --runner dask, a folder of part files (Parquet, or CSV when named *.csv) and _SUCCESS.",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    default=50_000,
    show_default=True,
    help="Rows read and predicted at a time; memory follows this, not the input size.",
)
@FORMAT
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
@click.option(
    "--drift/--no-drift",
    default=True,
    show_default=True,
    help="Report the input's and the predictions' drift from the model's reference profile (`rnnpipe drift`).",
)
@click.option(
    "--actuals",
    type=click.Path(dir_okay=False),
    default=None,
    help="Realised accuracy: for a forecaster, a file of the target's actual values at the forecast "
    "timestamps (the history's series, timestamp and target columns); for a monitor, the readings that "
    "came after the predictions (the input's columns). Scored against the predictions and the model's "
    "registered test scores. A classifier scores the input's labelled rows by itself.",
)
@user_errors
def predict(
    model, input_path, output, chunk_rows, fmt, overwrite, runner, address, workers, device, split_gpus, drift, actuals
):
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
    if runner == "local":
        from rnnpipe.io import output_kind

        output_kind(output)
    if Path(output).exists() and not overwrite:
        raise DataError(f"{output} exists; pass --overwrite to replace it")
    input_path = _input(input_path)
    if split_gpus and runner != "dask":
        raise click.UsageError("--split-gpus places Dask workers; use it with --runner dask")
    if actuals and not Path(actuals).is_file():
        raise DataError(f"--actuals {actuals}: no such file")
    _check_device(device)
    job = (model, input_path, output, chunk_rows, fmt, overwrite, runner, address, workers, device, split_gpus)
    out = _batch_job(*job, drift, actuals or "")
    click.echo(
        f"{out['model']}: {out['rows_in']:,} rows -> {out['rows_out']:,} predictions in "
        f"{out['seconds']:.1f} s ({out['rows_per_s']:,.0f} rows/s); wrote {out['output']}",
        err=True,
    )
    click.echo(f"MLflow run of the job: {_run_link(out['job_run_id'])}", err=True)
    if drift:
        click.echo(out["drift"] or NO_PROFILE, err=True)
    if out["realised"]:
        click.echo(out["realised"], err=True)


def _input(path: str) -> str:
    """A batch input as given, or the bundled sample it names (`data/stocks.parquet` from a
    folder without data/, as the docs write it); a user error when neither exists."""
    from rnnpipe import settings

    found = settings.resolve_data_path(path)
    if not found.exists():
        raise DataError(f"{path}: no such file or folder")
    return str(found)


NO_PROFILE = "drift: not judged (the model was logged without a reference profile)"


def _batch_job(
    model,
    input_path,
    output,
    chunk_rows,
    fmt,
    overwrite,
    runner,
    address,
    workers,
    device,
    split_gpus,
    drift,
    actuals,
) -> dict:
    """The batch-prediction flow, after what can be checked without it (the model reference,
    the input's columns and values)."""
    from rnnpipe.batch_jobs import check_input

    check_input(model, input_path, fmt)  # the model reference, columns and values, before the flow
    from rnnpipe.flows.api import flow_api  # light: started before the heavy imports

    with flow_api() as ready:
        from rnnpipe.flows.predict import batch_predict

        ready()
        args = dict(overwrite=overwrite, device=device, split_gpus=split_gpus, drift=drift, actuals=actuals)
        if runner == "dask":
            from rnnpipe.flows.sweep import task_runner
            from rnnpipe.threads import available_cpus

            n = workers or available_cpus()
            threads = 1 if address else max(1, available_cpus() // n)
            job = batch_predict.with_options(task_runner=task_runner("dask", n, address))
            return job(model, str(input_path), str(output), chunk_rows, fmt, "dask", n, threads, **args)
        return batch_predict(model, str(input_path), str(output), chunk_rows, fmt, **args)


@cli.command()
@click.argument("model", required=False, default=DEFAULT_MODEL)
@INPUT
@click.option("--chunk-rows", type=click.IntRange(min=1), default=50_000, show_default=True)
@FORMAT
@click.option(
    "--fail-on",
    type=click.Choice(["never", "warn", "drift"]),
    default="never",
    show_default=True,
    help="Exit 1 when the report's status is at least this (for scripts and schedulers).",
)
@user_errors
def drift(model, input_path, chunk_rows, fmt, fail_on):
    """Drift report of INPUT against MODEL's reference profile (default: stocks-forecaster@champion).

    Runs the batch job without keeping its predictions: per input feature and for the
    model's predictions, the population stability index and the Kolmogorov-Smirnov statistic
    against the training data's profile, the share of missing values, and a status ok, warn
    or drift (thresholds: the model's `drift.*` settings). The report is logged to an MLflow
    run (experiment batch-predictions), printed as a table and summed up in one line.

    \b
    Examples:
      rnnpipe drift -i latest-prices.csv
      rnnpipe drift monitor-classifier@champion -i readings/ --fail-on drift
    """
    import tempfile

    input_path = _input(input_path)
    with tempfile.TemporaryDirectory(prefix="rnnpipe-drift-") as tmp:
        job = (model, input_path, Path(tmp) / "predictions.parquet", chunk_rows, fmt, False)
        out = _batch_job(*job, "local", "", 0, "auto", False, True, "")
    if not out["drift"]:
        click.echo(NO_PROFILE, err=True)
        return
    from mlflow.tracking import MlflowClient

    report = json.loads(Path(MlflowClient().download_artifacts(out["job_run_id"], "drift/report.json")).read_text())
    groups = ("group",) if any(r.get("group") for r in report["features"]) else ()  # a series on its own
    _print_table(
        report["features"],
        ("feature", *groups, "role", "status", "psi", "psi_natural", "ks", "n", "missing_ref", "missing"),
    )
    click.echo(f"MLflow run of the report: {_run_link(out['job_run_id'])}", err=True)
    click.echo(out["drift"])
    order = ("ok", "warn", "drift")
    if fail_on != "never" and order.index(report["status"]) >= order.index(fail_on):
        sys.exit(1)


def _print_table(rows: list[dict], columns: tuple[str, ...]) -> None:
    widths = {c: max(len(c), *(len(_cell(r.get(c))) for r in rows)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        click.echo("  ".join(_cell(r.get(c)).ljust(widths[c]) for c in columns))


def _cell(v) -> str:
    return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


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
    if (db := settings.sqlite_file(uri)) is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
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

    from rnnpipe.config import load_config
    from rnnpipe.prefect_server import PrefectServer
    from rnnpipe.schedule_config import ScheduleConfig

    # started in the background by a non-interactive shell (`cmd &`), a process inherits SIGINT
    # ignored, and Python then never raises KeyboardInterrupt: the runner could not be stopped
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cfg = load_config(ScheduleConfig, config_path, [*overrides, *([f"server.port={port}"] if port else [])])
    retrains = {name: _scheduled_config(name, cfg.train.overrides) for name in cfg.train.pipelines}
    if cfg.predict.enabled:
        source = settings.resolve_data_path(cfg.predict.input)
        if not source.exists():
            raise DataError(f"predict.input={cfg.predict.input!r}: {source}: no such file or folder")
        cfg.predict.input = str(source.absolute())
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
            lambda pipeline, extra: retrains[pipeline],
        )
    finally:
        if started:
            click.echo("stopping the Prefect server", err=True)
            server.stop()


def _scheduled_config(pipeline: str, overrides: list[str]):
    """A retrain deployment's settings, checked before any server starts: its data is read and
    validated now (each retrain reads it again), and its files are named absolutely, as the
    user meant them from the folder `rnnpipe schedule` was started in, whichever process runs
    the retrain."""
    from rnnpipe.config import with_absolute_paths

    cfg = with_absolute_paths(_config(pipeline, None, tuple(overrides)))
    kinds.load(kinds.get(pipeline).ingest)(cfg)
    return cfg


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
