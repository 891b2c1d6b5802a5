"""The `rnnpipe` command line. Thin: it parses, then hands over to flows or the library.

Heavy imports (torch, Prefect, MLflow) happen inside the commands, so `--help` is instant.
User mistakes print one line on stderr and exit with code 2; bugs keep their traceback.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
from pathlib import Path

import click

from rnnpipe import __version__, settings
from rnnpipe.errors import RnnpipeError

PIPELINES = {
    "stocks": ("rnnpipe.config:ForecastConfig", "flows.forecast:train_stocks"),
    "monitor": ("rnnpipe.config:MonitorConfig", "flows.monitor:train_monitor"),
    "reviews": ("rnnpipe.config:ReviewsConfig", "flows.reviews:train_reviews"),
}
DEFAULT_MODEL = "stocks-forecaster@champion"


def _load(ref: str):
    module, _, name = ref.partition(":")
    return getattr(__import__(module, fromlist=[name]), name)


def user_errors(fn):
    """Turn user errors into `error: ...` on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RnnpipeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted; `rnnpipe train ... --resume` continues from the last epoch", err=True)
            sys.exit(130)

    return wrapper


def config_options(fn):
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                      help="Override one setting, e.g. --set model.hidden_size=128 "
                           "(repeatable; names as in `rnnpipe config`).")(fn)
    fn = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                      help="TOML file with settings (see `rnnpipe config stocks`).")(fn)
    return fn


def _config(pipeline: str, config_path: str | None, overrides: tuple[str, ...]):
    from rnnpipe.config import load_config

    return load_config(_load(PIPELINES[pipeline][0]), config_path, list(overrides))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rnnpipe")
def cli():
    """Train, track and serve recurrent sequence models.

    Every run is a Prefect flow logged to MLflow; `rnnpipe info` shows where things are kept.
    """
    settings.apply_environment()


@cli.command()
@click.argument("pipeline", type=click.Choice(sorted(PIPELINES)))
@config_options
@click.option("--resume", is_flag=True, help="Continue an interrupted run of the same config and "
                                             "data from its last checkpoint.")
@user_errors
def train(pipeline, config_path, overrides, resume):
    """Run the training flow of PIPELINE: ingest, split, scale, window, train, evaluate against
    the baseline, log to MLflow and register the model.

    \b
    Examples:
      rnnpipe train stocks
      rnnpipe train stocks --set train.epochs=5 --set model.cell=gru
      rnnpipe train stocks --set data.path=prices.csv --set data.series='[]'
      rnnpipe train monitor
      rnnpipe train monitor --set data.path=vitals/ --set data.channels=hr,spo2 --set data.event='spo2 < 90'
      rnnpipe train reviews
      rnnpipe train reviews --set data.path=reviews.jsonl --set data.test_path='""' --set data.label_col=stars
    """
    from rnnpipe.config import to_dict

    cfg = _config(pipeline, config_path, overrides)
    flow = _load(PIPELINES[pipeline][1])
    summary = flow(config=to_dict(cfg), resume=resume)
    click.echo("")
    click.echo(f"{summary['model_name']} v{summary['version']} -> {summary['alias']}: {summary['reason']}")
    click.echo(f"MLflow run {summary['run_id']} in experiment {summary['experiment']}; see it with: rnnpipe ui")


@cli.command("config")
@click.argument("pipeline", type=click.Choice(sorted(PIPELINES)))
@config_options
@user_errors
def show_config(pipeline, config_path, overrides):
    """Print the settings of PIPELINE (defaults, then --config, then --set) as TOML."""
    from rnnpipe.config import to_toml

    click.echo(to_toml(_config(pipeline, config_path, overrides)), nl=False)


def _model_uri(model: str) -> str:
    if model.startswith(("models:/", "runs:/")) or "://" in model or os.path.isdir(model):
        return model
    return f"models:/{model}"


@cli.command()
@click.argument("model", required=False, default=DEFAULT_MODEL)
@click.option("-i", "--input", "input_path", required=True, type=click.Path(),
              help="Raw history: CSV or Parquet file, folder or partitioned dataset.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write forecasts here (.csv or .parquet, written atomically); default: CSV to stdout.")
@user_errors
def predict(model, input_path, output):
    """Forecast from raw history with MODEL (default: stocks-forecaster@champion).

    MODEL is a registered NAME@ALIAS or NAME/VERSION, a models:/ or runs:/ URI, or a model
    directory. The input holds the columns the model was trained on (series id, timestamp, target and any
    extra features); the output has one row per series and step ahead.
    """
    from rnnpipe.io import read_table, write_table
    from rnnpipe.registry import configure_tracking, load_model

    configure_tracking()
    table, _ = read_table(input_path, columns=None)
    result = load_model(_model_uri(model)).predict(table.to_pandas())
    if output:
        write_table(result, output)
        click.echo(f"wrote {len(result)} forecasts to {output}", err=True)
    else:
        click.echo(result.to_csv(index=False), nl=False)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@user_errors
def ui(host, port):
    """Open the MLflow UI on the project's tracking store (runs, curves, plots, registry)."""
    uri = settings.tracking_uri()
    mlflow_bin = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    if not Path(mlflow_bin).exists():
        raise RnnpipeError("the mlflow command is not installed in this environment")
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    click.echo(f"MLflow UI on http://{host}:{port} (store {uri}); Ctrl-C stops it", err=True)
    os.execve(mlflow_bin, [mlflow_bin, "server", "--backend-store-uri", uri, "--host", host,
                           "--port", str(port), "--workers", "1"], env)


@cli.group()
def data():
    """Make data sets: synthetic vitals for tests and scale."""


@data.command("synth-vitals")
@click.option("--patients", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=24, show_default=True)
@click.option("--out", "out", type=click.Path(file_okay=False), default="data/synth-vitals",
              show_default=True, help="Folder to create (a hive-partitioned Parquet dataset).")
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
    """
    from tqdm.auto import tqdm

    from rnnpipe.synth import write_synthetic_vitals

    shards = (patients + patients_per_file - 1) // patients_per_file
    with tqdm(total=shards, unit="shard", desc="synth-vitals", disable=None) as bar:
        summary = write_synthetic_vitals(out, patients, hours, seed, patients_per_file,
                                         on_shard=lambda done, total: bar.update(1))
    click.echo(f"wrote {summary['rows']:,} readings of {patients:,} patients in {summary['shards']} "
               f"shards to {out} (synthetic, seed {seed})")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(as_json):
    """Show where rnnpipe keeps its state: tracking URI, Prefect home, checkpoints."""
    data = {"version": __version__, "home": str(settings.project_home()),
            "tracking_uri": settings.tracking_uri(), "prefect_home": str(settings.prefect_home()),
            "prefect_api_url": os.environ.get("PREFECT_API_URL", "(ephemeral, started per run)"),
            "checkpoints": str(settings.checkpoint_dir())}
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for k, v in data.items():
            click.echo(f"{k:15} {v}")


def main() -> None:
    cli(prog_name="rnnpipe")


if __name__ == "__main__":
    main()
