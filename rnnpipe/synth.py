"""Synthetic multi-patient vital signs with labelled deterioration episodes.

SYNTHETIC DATA, for tests, scale and benchmarks: never report results on it as clinical
findings. No real multi-patient ICU data can be had offline here (see data/SOURCES.md).

Per patient, one reading a minute (with a few seconds of clock jitter) of heart rate, SpO2,
respiratory rate, systolic blood pressure and temperature:
- a baseline drawn per patient (HR ~ N(75, 10), SpO2 ~ N(97, 1.2), RR ~ N(16, 2.5),
  SBP ~ N(122, 12), temperature ~ N(36.9, 0.3));
- a day-night cycle (HR +-5, SBP +-6, temperature +-0.3) and AR(1) noise per channel;
- with probability `episode_rate`, one deterioration episode of 1-4 hours. Its label
  `deterioration` is 1 while it lasts. Signs start building up to 60 minutes before the label
  (HR +25, RR +8, SpO2 -6, SBP -20, temperature +0.8 at full strength), so early warning is
  possible but not trivial;
- missing data: 2% of readings dropped at random, and sensor-off gaps of 10-40 minutes
  (about one every 12 hours).

`write_synthetic_vitals` writes a hive-partitioned Parquet dataset (`shard=NNNN/part-0.parquet`,
`patients_per_file` patients per shard), generating one shard at a time, so memory is bounded
by one shard whatever the size. The folder appears only when complete (temp name, then rename).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rnnpipe.errors import ConfigError

CHANNELS = ("heart_rate", "spo2", "resp_rate", "sbp", "temperature")
BASELINE = {
    "heart_rate": (75, 10),
    "spo2": (97, 1.2),
    "resp_rate": (16, 2.5),
    "sbp": (122, 12),
    "temperature": (36.9, 0.3),
}
NOISE = {"heart_rate": 3.0, "spo2": 0.8, "resp_rate": 1.2, "sbp": 4.0, "temperature": 0.05}
DETERIORATION = {"heart_rate": 25, "spo2": -6, "resp_rate": 8, "sbp": -20, "temperature": 0.8}
CIRCADIAN = {"heart_rate": 5, "spo2": 0, "resp_rate": 1, "sbp": 6, "temperature": 0.3}
START = np.datetime64("2024-01-01T00:00:00", "ns")


def _ar1(rng: np.random.Generator, n: int, steps: int, sd: float, phi: float = 0.9) -> np.ndarray:
    e = rng.normal(0, sd * np.sqrt(1 - phi**2), (n, steps))
    out = np.empty_like(e)
    out[:, 0] = rng.normal(0, sd, n)
    for t in range(1, steps):
        out[:, t] = phi * out[:, t - 1] + e[:, t]
    return out


def synth_shard(
    first_patient: int, n: int, hours: float, rng: np.random.Generator, episode_rate: float = 0.3
) -> pd.DataFrame:
    """Long-format readings of patients first_patient .. first_patient + n - 1."""
    steps = int(round(hours * 60))
    minutes = np.arange(steps)
    start = rng.integers(0, 24 * 60, n)  # admission time of day, minutes
    day = np.sin(2 * np.pi * ((start[:, None] + minutes) / (24 * 60) - 0.25))
    has = rng.random(n) < episode_rate
    onset = rng.integers(min(120, steps - 1), max(steps - 60, 121), n)
    length = rng.integers(60, 241, n)
    t = minutes[None, :]
    label = has[:, None] & (t >= onset[:, None]) & (t < onset[:, None] + length[:, None])
    ramp = np.clip((t - (onset[:, None] - 60)) / 60.0, 0, 1) * (t < onset[:, None] + length[:, None])
    ramp = ramp * has[:, None]
    cols = {}
    for c in CHANNELS:
        mu, sd = BASELINE[c]
        base = rng.normal(mu, sd, n)[:, None]
        x = base + CIRCADIAN[c] * day + _ar1(rng, n, steps, NOISE[c]) + DETERIORATION[c] * ramp
        cols[c] = x
    cols["spo2"] = np.clip(cols["spo2"], 60, 100)
    keep = rng.random((n, steps)) >= 0.02
    for i in range(n):  # sensor-off gaps
        for _ in range(rng.poisson(hours / 12)):
            g0 = rng.integers(0, steps)
            keep[i, g0 : g0 + rng.integers(10, 41)] = False
    jitter = rng.integers(-5, 6, (n, steps)).astype("timedelta64[s]")
    stamps = START + (start[:, None] + t).astype("timedelta64[m]") + jitter
    pid = np.repeat(np.array([f"p{first_patient + i:06d}" for i in range(n)]), steps).reshape(n, steps)
    m = keep.ravel()
    df = pd.DataFrame({"patient_id": pid.ravel()[m], "timestamp": stamps.ravel()[m]})
    df["heart_rate"] = np.round(cols["heart_rate"].ravel()[m])
    df["spo2"] = np.round(cols["spo2"].ravel()[m])
    df["resp_rate"] = np.round(cols["resp_rate"].ravel()[m])
    df["sbp"] = np.round(cols["sbp"].ravel()[m])
    df["temperature"] = np.round(cols["temperature"].ravel()[m], 1)
    df["deterioration"] = label.ravel()[m].astype(np.int8)
    return df


def write_synthetic_vitals(
    out: str | Path,
    patients: int,
    hours: float,
    seed: int = 0,
    patients_per_file: int = 250,
    episode_rate: float = 0.3,
    on_shard: Callable[[int, int], None] | None = None,
) -> dict:
    """Write the dataset; `on_shard(done, total)` is called after each shard (progress)."""
    out = Path(out)
    if patients < 1 or hours <= 0:
        raise ConfigError("--patients and --hours must be positive")
    if out.exists():
        raise ConfigError(f"{out} exists; choose another path or remove it first")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    rows, shards = 0, (patients + patients_per_file - 1) // patients_per_file
    try:
        for k in range(shards):
            first = k * patients_per_file
            n = min(patients_per_file, patients - first)
            rng = np.random.default_rng([seed, k])  # each shard reproducible on its own
            df = synth_shard(first, n, hours, rng, episode_rate)
            d = tmp / f"shard={k:04d}"
            d.mkdir(parents=True)
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), d / "part-0.parquet", compression="zstd")
            rows += len(df)
            if on_shard:
                on_shard(k + 1, shards)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"path": str(out), "patients": patients, "hours": hours, "rows": rows, "shards": shards, "seed": seed}
