"""Benchmark: generate the synthetic 10,000-patient vitals set and train one epoch on it,
streamed shard by shard. Figures, not assertions.

    python bench/bench_monitor.py                       # 10,000 patients x 24 h, stride 10
    python bench/bench_monitor.py --patients 2000 --stride 1 --device cuda

Reports generation time and size, windows/s of the training epoch, the peak resident memory
of the generator and of the trainer (process peaks, torch included) against what holding the
whole set in memory would take, and wall times. `--stride k` trains on every k-th window of
every patient (windows overlap by lookback - k steps); the default keeps the run to a few
minutes on 2 CPU cores. Results go to stdout and bench/results/monitor-<time>.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RNNPIPE_HOME", tempfile.mkdtemp(prefix="rnnpipe-bench-"))

import torch  # noqa: E402
from _results import write_results  # noqa: E402

from rnnpipe.config import MonitorConfig, load_config  # noqa: E402
from rnnpipe.monitor import MonitorPipeline  # noqa: E402
from rnnpipe.streaming import ShardStream, fit_streaming_preprocessor  # noqa: E402
from rnnpipe.synth import CHANNELS  # noqa: E402
from rnnpipe.training import fit  # noqa: E402


def peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--hours", type=float, default=24)
    ap.add_argument("--stride", type=int, default=10)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--data", help="reuse an existing synthetic dataset instead of generating one")
    args = ap.parse_args()
    res: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                             "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                             "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
                 "args": vars(args)}
    tmp = Path(tempfile.mkdtemp(prefix="vitals-"))
    data = Path(args.data) if args.data else tmp / "vitals"
    if not args.data:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rnnpipe.cli", "data", "synth-vitals", "--patients",
                        str(args.patients), "--hours", str(args.hours), "--out", str(data)], check=True)
        res["generate"] = {"wall_s": time.perf_counter() - t0, "peak_rss_mb": peak_mb(resource.RUSAGE_CHILDREN)}
    files = sorted(data.rglob("*.parquet"))
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    res["data"] = {"rows": rows, "files": len(files), "disk_mb": sum(f.stat().st_size for f in files) / 2**20,
                   "in_memory_float64_mb": rows * (len(CHANNELS) + 1) * 8 / 2**20}

    cfg = load_config(MonitorConfig, overrides=[
        f"data.path={data}", "data.channels=" + ",".join(CHANNELS), 'data.event=""',
        "data.label_col=deterioration", "resample.step=1min", "resample.max_gap=5min",
        "window.lookback=60", "window.horizon=30", "forecast.enabled=false", "train.epochs=1",
        f"train.batch_size={args.batch_size}", f"train.device={args.device}"])
    t0 = time.perf_counter()
    pre = fit_streaming_preprocessor(data, cfg)
    fit_s = time.perf_counter() - t0
    train = ShardStream(data, cfg, pre, "train", stride=args.stride)
    val = ShardStream(data, cfg, pre, "val", stride=args.stride)
    pipe = MonitorPipeline(cfg, pre)
    t0 = time.perf_counter()
    result = fit(pipe.model, train, val, cfg.train, progress=None,
                 loss_fn=lambda p, y: torch.nn.functional.binary_cross_entropy_with_logits(p, y[:, 0]))
    h = result.history[0]
    res["train"] = {"windows_per_s": h["samples_per_s"], "train_epoch_s": h["epoch_time_s"],
                    "epoch_with_val_s": time.perf_counter() - t0, "scaler_fit_s": fit_s,
                    "train_windows_seen": int(h["samples_per_s"] * h["epoch_time_s"]),
                    "val_loss": h["val_loss"], "device": result.device, "precision": result.precision,
                    "peak_rss_mb": peak_mb(resource.RUSAGE_SELF)}
    g, d, t = res.get("generate"), res["data"], res["train"]
    print()
    if g:
        print(f"generate: {args.patients:,} patients x {args.hours:g} h -> {d['rows']:,} readings in "
              f"{d['files']} shards, {d['disk_mb']:.0f} MB on disk, {g['wall_s']:.1f} s, peak RSS {g['peak_rss_mb']:.0f} MB")
    print(f"whole set as float64 in memory would be {d['in_memory_float64_mb']:,.0f} MB (before grid and windows)")
    print(f"train (1 epoch, stride {args.stride}): {t['train_windows_seen']:,} windows at "
          f"{t['windows_per_s']:,.0f} windows/s on {t['device']} ({t['precision']}); epoch {t['train_epoch_s']:.0f} s, "
          f"with validation {t['epoch_with_val_s']:.0f} s; peak RSS {t['peak_rss_mb']:.0f} MB")
    write_results("monitor", res)


if __name__ == "__main__":
    main()
