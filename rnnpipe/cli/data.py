"""`rnnpipe data`: generated data sets."""

from __future__ import annotations

import click

from rnnpipe.cli import (
    cli,
    user_errors,
)


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
