"""`rnnpipe train` and `rnnpipe config`."""

from __future__ import annotations

import click

from rnnpipe import kinds, settings
from rnnpipe.cli import (
    Registered,
    TrainCommand,
    _config,
    _echo_registration,
    _preload,
    _run_link,
    cli,
    config_options,
    configs,
    user_errors,
)


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
    _echo_registration(summary, said=settings.logs_info())  # at info level the gate's log line said it
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
