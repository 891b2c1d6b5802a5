"""Benchmark of sweeps: the same 8 small stocks trials run sequentially, on the local process
pool and on a Dask LocalCluster. Figures, not assertions.

    python bench/bench_sweep.py                      # 8 trials, 3 epochs each
    python bench/bench_sweep.py --epochs 5 --workers 4

  sequential  one trial at a time, with every core's torch threads
  local       `--runner local`: a process pool, one trial per core, one thread each
  dask        `--runner dask`: a LocalCluster of single-threaded worker processes

Each mode runs the whole sweep flow (nested MLflow runs, model logging, registration of the
best trial), after a warm-up flow that starts Prefect's ephemeral API. The dask figure
includes starting the LocalCluster. Results go to stdout and to bench/results/sweep-<time>.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RNNPIPE_HOME", tempfile.mkdtemp(prefix="rnnpipe-bench-"))

from _results import write_results  # noqa: E402

from rnnpipe import settings  # noqa: E402

settings.apply_environment()

GRID = {"model.cell": ["lstm", "gru"], "model.hidden_size": ["32", "64"], "window.lookback": ["30", "60"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0, help="default: one per core")
    args = ap.parse_args()
    from rnnpipe.config import load_config, to_dict
    from rnnpipe.flows.sweep import sweep, task_runner
    from rnnpipe.pipelines.forecast.config import ForecastConfig
    from rnnpipe.sweep import make_trials, plan_resources

    cfg = to_dict(
        load_config(
            ForecastConfig,
            overrides=[
                f"train.epochs={args.epochs}",
                "train.patience=99",
                "register.experiment=bench-sweep",
                "register.model_name=bench-sweep",
            ],
        )
    )
    n = len(make_trials(GRID))
    workers, threads = plan_resources(n, args.workers)
    cpus = os.cpu_count() or 1
    results = {
        "machine": {"platform": platform.platform(), "cpus": cpus},
        "trials": n,
        "epochs": args.epochs,
        "workers": workers,
        "threads_per_trial": threads,
        "modes": {},
    }
    # warm-up: the first flow of a process also starts Prefect's ephemeral API; keep that out
    warm = to_dict(
        load_config(
            ForecastConfig,
            overrides=["train.epochs=1", "register.experiment=bench-sweep", "register.model_name=bench-sweep-warmup"],
        )
    )
    sweep.with_options(task_runner=task_runner("sequential"))("stocks", warm, {"model.cell": ["gru"]})
    for mode, (w, t) in {"sequential": (1, cpus), "local": (workers, threads), "dask": (workers, threads)}.items():
        t0 = time.perf_counter()
        out = sweep.with_options(task_runner=task_runner(mode, w))(
            "stocks", cfg, GRID, workers=w, threads=t, runner=mode
        )
        wall = time.perf_counter() - t0
        trial_s = sum(r["seconds"] for r in out["results"])
        results["modes"][mode] = {
            "wall_s": wall,
            "sum_trial_s": trial_s,
            "workers": w,
            "threads": t,
            "best_trial": out["best_trial"],
            "failed": out["failed"],
        }
        print(
            f"{mode:10} {wall:7.1f} s wall  ({w} at a time x {t} threads; trials summed {trial_s:.1f} s; "
            f"best trial {out['best_trial']})",
            flush=True,
        )
    base = results["modes"]["sequential"]["wall_s"]
    for m in results["modes"].values():
        m["speedup"] = base / m["wall_s"]
    print("speed-up vs sequential: " + ", ".join(f"{k} {m['speedup']:.2f}x" for k, m in results["modes"].items()))
    write_results("sweep", results)


if __name__ == "__main__":
    main()
