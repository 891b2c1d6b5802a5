"""Benchmarks of the forecasting pipeline. Figures, not assertions.

    python bench/bench_forecast.py                  # all sections, CPU or the GPU if present
    python bench/bench_forecast.py --device cuda --skip-flow

Sections:
  windowing  zero-copy windows (strided view + per-batch gather) against a Python loop that
             materialises every window, on the bundled stocks and on a synthetic 1M-row set
  training   samples/s of the fit loop on the bundled stocks (default model)
  flow       wall time of the whole Prefect flow (ephemeral API, MLflow logging, registration)
             against the bare training loop on the same data and epochs

Results go to stdout as a table and to bench/results/forecast-<time>.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RNNPIPE_HOME", tempfile.mkdtemp(prefix="rnnpipe-bench-"))

from _results import write_results  # noqa: E402
from rnnpipe import settings  # noqa: E402

settings.apply_environment()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rnnpipe.config import ForecastConfig, load_config, to_dict  # noqa: E402
from rnnpipe.features.splits import chronological_split  # noqa: E402
from rnnpipe.features.windows import WindowSet, make_windows  # noqa: E402
from rnnpipe.pipeline import ForecastPipeline, load_forecast_data, prepare  # noqa: E402
from rnnpipe.training import fit  # noqa: E402


def timed(fn, repeat=3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def peak_bytes(fn):
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def bench_windowing(values: np.ndarray, ends: np.ndarray, lookback: int, label: str) -> dict:
    def loop():
        return np.stack([values[t - lookback + 1:t + 1] for t in ends])

    def view():
        return make_windows(values, lookback)

    def view_epoch():  # what training touches: every window once, gathered batch by batch
        ws = WindowSet(values, np.zeros((len(values), 1), np.float32), ends, lookback)
        n = 0
        for x, _ in ws.batches(256):
            n += x.shape[0]
        return n

    t_loop, windows = timed(loop, 1 if len(ends) > 100_000 else 3)
    t_view, v = timed(view)
    t_epoch, _ = timed(view_epoch, 1)
    assert np.array_equal(v[ends[:100] - lookback + 1], windows[:100])
    return {"data": label, "rows": len(values), "features": values.shape[1], "windows": len(ends),
            "lookback": lookback,
            "loop_s": t_loop, "loop_peak_mb": peak_bytes(loop) / 2**20,
            "view_s": t_view, "view_peak_mb": peak_bytes(view) / 2**20,
            "view_shares_memory": bool(np.shares_memory(v, values)),
            "gather_one_epoch_s": t_epoch, "materialised_mb": windows.nbytes / 2**20}


def stocks_prepared(cfg):
    frame = load_forecast_data(cfg.data)
    return prepare(frame, chronological_split(frame, cfg.split.train, cfg.split.val), cfg)


def bare_training(cfg) -> tuple[float, dict]:
    t0 = time.perf_counter()
    p = stocks_prepared(cfg)
    pipe = ForecastPipeline(cfg, p.preprocessor)
    result = fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, progress=False)
    return time.perf_counter() - t0, {"samples_per_s": result.samples_per_s, "device": result.device,
                                      "precision": result.precision,
                                      "epochs": len(result.history),
                                      "train_windows": len(p.ends["train"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--skip-flow", action="store_true", help="skip the Prefect flow section")
    ap.add_argument("--synthetic-rows", type=int, default=1_000_000)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    results: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                 "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                                 "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}}

    # -- windowing ---------------------------------------------------------------------
    cfg = load_config(ForecastConfig)
    p = stocks_prepared(cfg)
    rows = [bench_windowing(p.inputs, np.concatenate(list(p.ends.values())), cfg.window.lookback,
                            "stocks (3 series)")]
    rng = np.random.default_rng(0)
    synth = rng.normal(size=(args.synthetic_rows, 4)).astype(np.float32)
    ends = np.arange(59, args.synthetic_rows - 1)
    rows.append(bench_windowing(synth, ends, 60, f"synthetic {args.synthetic_rows:,} rows"))
    results["windowing"] = rows

    # -- training and flow ---------------------------------------------------------------
    overrides = [f"train.epochs={args.epochs}", f"train.patience={args.epochs + 1}",
                 f"train.device={args.device}", "register.experiment=bench",
                 "register.model_name=bench-forecaster"]
    cfg = load_config(ForecastConfig, overrides=overrides)
    (s1, _), (s2, train_info) = bare_training(cfg), bare_training(cfg)  # the first one warms up
    bare_s = min(s1, s2)
    results["training"] = {**train_info, "bare_wall_s": bare_s}
    if not args.skip_flow:
        from flows.forecast import train_stocks

        walls = []
        for _ in range(2):  # the first run of a process also starts the ephemeral Prefect API
            t0 = time.perf_counter()
            summary = train_stocks(config=to_dict(cfg))
            walls.append(time.perf_counter() - t0)
        results["flow"] = {"flow_cold_s": walls[0], "flow_warm_s": walls[1], "bare_wall_s": bare_s,
                           "overhead_warm_s": walls[1] - bare_s,
                           "test_mae_vs_naive": summary["test_mae_vs_naive"]}

    # -- report ------------------------------------------------------------------------------
    print("\nwindowing (best of 3; peak = Python heap allocations during the call)")
    print(f"{'data':28} {'windows':>9} {'loop s':>8} {'loop MB':>8} {'view s':>9} {'view MB':>8} "
          f"{'epoch gather s':>14}")
    for r in results["windowing"]:
        print(f"{r['data']:28} {r['windows']:>9,} {r['loop_s']:>8.3f} {r['loop_peak_mb']:>8.1f} "
              f"{r['view_s']:>9.6f} {r['view_peak_mb']:>8.3f} {r['gather_one_epoch_s']:>14.3f}")
    t = results["training"]
    print(f"\ntraining: {t['samples_per_s']:,.0f} samples/s on {t['device']} ({t['precision']}), "
          f"{t['epochs']} epochs of {t['train_windows']:,} windows")
    if "flow" in results:
        f = results["flow"]
        print(f"flow: {f['flow_cold_s']:.1f} s first run (starts the ephemeral Prefect API), "
              f"{f['flow_warm_s']:.1f} s second run, vs {f['bare_wall_s']:.1f} s bare (load + prepare "
              f"+ fit); per-run overhead {f['overhead_warm_s']:.1f} s (tasks, MLflow logging, model "
              f"logging, registration)")
    write_results("forecast", results)


if __name__ == "__main__":
    main()
