"""Benchmark: the documented day-ahead config on a year of half-hourly data, timed as the whole
command a user runs. Figures, not assertions.

    python bench/bench_day_ahead.py                 # 17,520 steps (a year of half-hours)
    python bench/bench_day_ahead.py --steps 35040   # two years

The bundled electricity series covers 12 weeks; the bar (issue 29) is a year of half-hourly
data trained in under 10 minutes on 2 cores. The year here is SYNTHETIC, made for timing only
(seeded; never passed off as a result): a demand with a daily and a weekly profile, a
temperature that drives it (a covariate known in advance, as a forecast of it would be) and
a work-day flag (known in advance). It runs

    rnnpipe train stocks --config configs/electricity-day-ahead.toml \\
        --set data.path=<the year> --set data.known_features=[temperature,workday]

in a fresh process on a temporary store, and reports the wall time, the phases from the
run's own metrics (training, the baselines' fit and forecast times), best_epoch and the
test MAE of the model, ridge, gradient boosting and naive. Results go to stdout and to
bench/results/day-ahead-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def synthetic_year(steps: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    time_ = pd.date_range("2023-01-02", periods=steps, freq="30min")
    hour = time_.hour + time_.minute / 60
    day = np.arange(steps) / 48
    workday = (time_.dayofweek < 5).astype(float)
    temperature = (
        12
        + 8 * np.sin(2 * np.pi * (day - 100) / 365)
        + 4 * np.sin(2 * np.pi * (hour - 9) / 24)
        + np.cumsum(rng.normal(0, 0.15, steps)) * 0.2
    )
    profile = 1 + 0.25 * np.sin(2 * np.pi * (hour - 7) / 24) + 0.1 * np.sin(4 * np.pi * (hour - 5) / 24)
    demand = 30_000 * profile * (0.85 + 0.15 * workday) + 400 * np.abs(temperature - 16) + rng.normal(0, 400, steps)
    return pd.DataFrame({"time": time_, "demand_mw": demand, "temperature": temperature, "workday": workday})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=17_520)
    args = ap.parse_args()
    from _results import write_results

    home = Path(tempfile.mkdtemp(prefix="rnnpipe-day-ahead-"))
    path = home / "year.parquet"
    synthetic_year(args.steps).to_parquet(path)
    env = {**os.environ, "RNNPIPE_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PREFECT_API_URL", None)
    cmd = [
        sys.executable,
        "-m",
        "rnnpipe.cli",
        "-q",
        "train",
        "stocks",
        "--config",
        str(ROOT / "configs" / "electricity-day-ahead.toml"),
        "--set",
        f"data.path={path}",
        "--set",
        "data.known_features=[temperature,workday]",
        "--set",
        "register.experiment=day-ahead",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    os.environ["RNNPIPE_HOME"] = str(home)
    import mlflow
    from mlflow.tracking import MlflowClient

    from rnnpipe.registry import configure_tracking

    configure_tracking()
    client = MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("day-ahead").experiment_id])[0]
    t = run.data.tags
    # every score is in the run's table (the metrics tab keeps the headline ones)
    table = json.loads(
        Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="metrics/all.json")).read_text()
    )
    m = {**{row[0]: row[-1] for row in table["data"]}, **run.data.metrics}
    res = {
        "steps": args.steps,
        "wall_s": wall,
        "best_epoch": m.get("best_epoch"),
        "epochs": m.get("epochs_run"),
        "train_samples_per_s": m.get("train_samples_per_s"),
        "torch_threads": t.get("torch_threads"),
        **{
            k: m.get(k)
            for k in (
                "test_mae",
                "ridge_test_mae",
                "gbm_test_mae",
                "naive_test_mae",
                "autoets_test_mae",
                "autotheta_test_mae",
                "gbm_fit_s",
                "autoets_fit_s",
                "autotheta_fit_s",
                "autoets_test_forecast_s",
                "autotheta_test_forecast_s",
            )
        },
        "output": proc.stdout.strip().splitlines(),
    }
    print(
        f"{args.steps:,} half-hourly steps (synthetic): the whole `rnnpipe train` took {wall:.0f} s "
        f"({wall / 60:.1f} min; bar: 10 min); best_epoch {res['best_epoch']:.0f} of {res['epochs']:.0f}; "
        f"test MAE model {res['test_mae']:.1f}, ridge {res['ridge_test_mae']:.1f}, gbm {res['gbm_test_mae']:.1f}, "
        f"naive {res['naive_test_mae']:.1f}"
    )
    for line in res["output"]:
        print("  " + line)
    write_results("day-ahead", res)


if __name__ == "__main__":
    main()
