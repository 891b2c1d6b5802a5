"""Benchmark: a whole `rnnpipe train stocks` beside a peer library doing the same task, as
whole processes. Figures, not assertions.

    python -m venv .bench-darts && .bench-darts/bin/pip install torch==2.13.0 'darts[torch]==0.48.1' pyarrow psutil
    python bench/bench_peer.py --darts-python .bench-darts/bin/python          # 3 runs each
    python bench/bench_peer.py --darts-python .bench-darts/bin/python --runs 5

The task: the bundled AAPL/IBM/MSFT closes, split 70/15/15 per series in time order, a
2-layer LSTM of 64 units on 60-step windows forecasting one step, batch 256, up to 30
epochs with early stopping on validation loss (patience 5), scaled on the training part;
then every one-step forecast over the test part, and its MAE in prices.

  rnnpipe  `rnnpipe train stocks` (defaults: the above, plus the linear part, quantiles, five
           baselines, plots, the MLflow run and the registry), on a store warmed by one
           untimed run first (its Prefect database and MLflow tables exist, as for a user's
           second run)
  darts    Darts' BlockRNNModel (PyTorch Lightning) on the same series: fit with the
           validation series and Lightning's EarlyStopping, then `historical_forecasts`
           over the test part (retrain=False), in its own virtual environment (Darts is not
           a dependency of rnnpipe; `--darts-python` names its interpreter)

The two run alternately, `--runs` times each. Each run's wall time and its peak resident
memory: of the whole process tree (the sum over the process and its children, sampled
every 0.1 s: rnnpipe's temporary Prefect server is a child process) and of the largest
single process. The bar (issue 28): rnnpipe's median wall <= 0.8x Darts', its peak <= Darts'.
Results go to stdout and to bench/results/peer-<time>.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent

DARTS = r"""
import sys, time
import numpy as np, pandas as pd
from darts import TimeSeries
from darts.dataprocessing.transformers import Scaler
from darts.models import BlockRNNModel
from pytorch_lightning.callbacks import EarlyStopping

# the same target as rnnpipe's default: the log return, forecasts decoded back to prices
df = pd.read_parquet(sys.argv[1])
df = df[df.Ticker.isin(["AAPL", "IBM", "MSFT"])]
L, trains, vals, full, prices, cuts = 60, [], [], [], [], []
for _, g in df.groupby("Ticker"):
    close = g.sort_values("Date").Close.to_numpy(np.float64)
    n = len(close); a, b = int(n * 0.70), int(n * 0.85)
    r = TimeSeries.from_values(np.diff(np.log(close)).astype(np.float32))  # r[i]: close[i] -> close[i+1]
    trains.append(r[:a - 1]); vals.append(r[a - 1 - L:b - 1]); full.append(r); prices.append(close); cuts.append(b)
scaler = Scaler().fit(trains)  # one scaler per series, fitted on the training part
model = BlockRNNModel(input_chunk_length=L, output_chunk_length=1, model="LSTM", hidden_dim=64,
                      n_rnn_layers=2, dropout=0.2, batch_size=256, n_epochs=30, random_state=42,
                      pl_trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": False,
                                         "callbacks": [EarlyStopping("val_loss", patience=5)]})
model.fit(scaler.transform(trains), val_series=scaler.transform(vals), verbose=False)
errors = []
for i, r in enumerate(full):
    b = cuts[i]
    fc = model.historical_forecasts(scaler.transform(r, series_idx=i), start=b - 1, forecast_horizon=1,
                                    retrain=False, last_points_only=True, verbose=False)
    ret = scaler.inverse_transform(fc, series_idx=i).values()[:, 0]
    last = prices[i][b - 1:b - 1 + len(ret)]  # the price each forecast starts from
    errors.append(np.abs(last * np.exp(ret) - prices[i][b:b + len(ret)]))
print("darts test MAE", float(np.mean(np.concatenate(errors))), "epochs", model.epochs_trained)
"""


def measure(cmd: list[str], env: dict[str, str]) -> dict:
    """Wall time and peak RSS (tree sum, largest process) of one command, sampled every 0.1 s."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root, peak_tree, peak_one = psutil.Process(proc.pid), 0, 0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            rss = []
            for p in procs:
                try:
                    rss.append(p.memory_info().rss)
                except psutil.Error:
                    pass
            peak_tree, peak_one = max(peak_tree, sum(rss)), max(peak_one, max(rss, default=0))
        except psutil.Error:
            pass
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    out = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
    mib = 1024 * 1024
    return {
        "wall_s": wall,
        "peak_tree_mib": peak_tree / mib,
        "peak_process_mib": peak_one / mib,
        "tail": out.strip().splitlines()[-3:],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--darts-python", default=str(ROOT / ".bench-darts" / "bin" / "python"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=["rnnpipe", "darts"])
    args = ap.parse_args()
    sys.path.insert(0, str(BENCH))
    from _results import write_results

    home = Path(tempfile.mkdtemp(prefix="rnnpipe-peer-"))
    env = {**os.environ, "RNNPIPE_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PREFECT_API_URL", None)
    rnnpipe = [sys.executable, "-m", "rnnpipe.cli", "train", "stocks"]
    script = home / "darts_task.py"
    script.write_text(DARTS)
    darts = [args.darts_python, str(script), str(ROOT / "data" / "stocks.parquet")]
    commands = {"rnnpipe": rnnpipe, "darts": darts}
    if args.only:
        commands = {args.only: commands[args.only]}
    if "rnnpipe" in commands:
        print("warming the store with one untimed rnnpipe run", flush=True)
        measure(rnnpipe, env)
    runs: dict[str, list[dict]] = {name: [] for name in commands}
    for k in range(args.runs):
        for name, cmd in commands.items():
            r = measure(cmd, env)
            runs[name].append(r)
            print(
                f"run {k + 1} {name:8} {r['wall_s']:6.1f} s  peak {r['peak_tree_mib']:6.0f} MiB (tree), "
                f"{r['peak_process_mib']:6.0f} MiB (largest process)  | {r['tail'][-1][:90]}",
                flush=True,
            )
    res = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "runs": runs, "median": {}}
    for name, rs in runs.items():
        res["median"][name] = {
            k: statistics.median(r[k] for r in rs) for k in ("wall_s", "peak_tree_mib", "peak_process_mib")
        }
        m = res["median"][name]
        print(
            f"{name:8} median {m['wall_s']:6.1f} s  peak {m['peak_tree_mib']:6.0f} MiB (tree), "
            f"{m['peak_process_mib']:6.0f} MiB (largest process)",
            flush=True,
        )
    if len(runs) == 2:
        r, d = res["median"]["rnnpipe"], res["median"]["darts"]
        res["ratio"] = {k: r[k] / d[k] for k in r}
        print(
            f"rnnpipe / darts: wall {res['ratio']['wall_s']:.2f}x (bar 0.8x), "
            f"peak {res['ratio']['peak_tree_mib']:.2f}x "
            f"tree / {res['ratio']['peak_process_mib']:.2f}x largest process (bar 1.0x)",
            flush=True,
        )
    write_results("peer", res)


if __name__ == "__main__":
    main()
