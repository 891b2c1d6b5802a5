"""Benchmark: streamed monitor training on synthetic vitals. Figures, not assertions.

    python bench/bench_monitor.py                         # 1,000 and 10,000 patients x 4 h
    python bench/bench_monitor.py --patients 1000 --hours 24 --device cuda

For each size it generates the data set (`rnnpipe data synth-vitals`, 250 patients a shard)
and measures, each in a fresh process so that its peak resident memory is its own:

- `epoch streamed`: `prepare_streamed` and one training epoch (with its validation pass)
  through the shared fit loop, shard by shard: windows/s and peak RSS. With the same fitting
  sample at every size (`--sample-rows`, `data.stream_sample_rows`), its peak should not grow
  with the number of shards.
- `epoch memory`: the same epoch with the data set in memory (`data.streaming=false`).
- `flow streamed` (largest size only): `rnnpipe train monitor --set data.streaming=true` end to
  end, `--flow-epochs` epochs (default 2): wall time and peak RSS of the flow's process.

Results go to stdout and bench/results/monitor-<time>.json.
"""

from __future__ import annotations

import argparse
import json
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

from _results import write_results  # noqa: E402

from rnnpipe.synth import CHANNELS  # noqa: E402


def settings(data: Path, args) -> list[str]:
    return [
        f"data.path={data}",
        "data.channels=" + ",".join(CHANNELS),
        'data.event=""',
        "data.label_col=deterioration",
        "resample.step=1min",
        "resample.max_gap=5min",
        f"window.lookback={args.lookback}",
        "window.horizon=15",
        "forecast.enabled=false",
        f"train.batch_size={args.batch_size}",
        f"train.device={args.device}",
        f"data.stream_sample_rows={args.sample_rows}",
        f"model.highway={args.highway}",
    ]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_epoch(data: Path, streaming: str, args) -> dict:
    """One prepared data set and one epoch, in this process."""
    import torch

    from rnnpipe.config import load_config
    from rnnpipe.pipelines.monitor.artefact import MonitorPipeline, classification_loss, prepare_monitor
    from rnnpipe.pipelines.monitor.config import MonitorConfig
    from rnnpipe.pipelines.monitor.data import load_monitor_data
    from rnnpipe.training import fit

    cfg = load_config(MonitorConfig, overrides=settings(data, args) + [f"data.streaming={streaming}", "train.epochs=1"])
    t0 = time.perf_counter()
    p = prepare_monitor(load_monitor_data(cfg), cfg)
    prepare_s = time.perf_counter() - t0
    pipe = MonitorPipeline(cfg, p.preprocessor)
    t0 = time.perf_counter()
    result = fit(
        pipe.model, p.windows("train"), p.windows("val"), cfg.train, loss_fn=classification_loss(cfg, p), progress=False
    )
    h = result.history[0]
    return {
        "prepare_s": prepare_s,
        "train_windows": len(p.windows("train")),
        "val_windows": len(p.windows("val")),
        "windows_per_s": h["samples_per_s"],
        "train_epoch_s": h["epoch_time_s"],
        "epoch_with_val_s": time.perf_counter() - t0,
        "device": result.device,
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mb": peak_mb(),
    }


def child_flow(data: Path, args) -> dict:
    """The streamed flow end to end, in this process (its Prefect API server is another)."""
    from click.testing import CliRunner

    from rnnpipe.cli import cli

    sets = [
        a
        for s in settings(data, args)
        + ["data.streaming=true", f"train.epochs={args.flow_epochs}", "register.experiment=bench-monitor"]
        for a in ("--set", s)
    ]
    t0 = time.perf_counter()
    r = CliRunner().invoke(cli, ["train", "monitor", *sets], catch_exceptions=False)
    tail = [line for line in r.output.splitlines() if " -> " in line and "MLflow run" not in line][-1:]
    return {
        "exit_code": r.exit_code,
        "wall_s": time.perf_counter() - t0,
        "peak_rss_mb": peak_mb(),
        "epochs": args.flow_epochs,
        "outcome": tail,
    }


def in_child(*what: str, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        *what,
        "--lookback",
        str(args.lookback),
        "--batch-size",
        str(args.batch_size),
        "--device",
        args.device,
        "--flow-epochs",
        str(args.flow_epochs),
        "--sample-rows",
        str(args.sample_rows),
        "--highway",
        args.highway,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{' '.join(what)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, nargs="+", default=[1_000, 10_000])
    ap.add_argument("--hours", type=float, default=4)
    ap.add_argument("--lookback", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--flow-epochs", type=int, default=2)
    ap.add_argument(
        "--sample-rows",
        type=int,
        default=100_000,
        help="data.stream_sample_rows: the same fitting sample at every size",
    )
    ap.add_argument(
        "--highway",
        default="linear",
        help="model.highway (none: no linear part, and no warm start holding up to 200,000 windows' features)",
    )
    ap.add_argument("--no-memory", action="store_true", help="skip the in-memory epochs")
    ap.add_argument("--no-flow", action="store_true", help="skip the flow")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, data, *rest = args.child
        res = child_flow(Path(data), args) if kind == "flow" else child_epoch(Path(data), rest[0], args)
        print(json.dumps(res))
        return

    import pyarrow.parquet as pq
    import torch

    res: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "args": vars(args),
        "sizes": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="vitals-"))
    for n in args.patients:
        data = tmp / f"vitals-{n}"
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "rnnpipe.cli",
                "data",
                "synth-vitals",
                "--patients",
                str(n),
                "--hours",
                str(args.hours),
                "--out",
                str(data),
            ],
            check=True,
            capture_output=True,
        )
        files = sorted(data.rglob("*.parquet"))
        size = {
            "generate_s": time.perf_counter() - t0,
            "shards": len(files),
            "readings": sum(pq.ParquetFile(f).metadata.num_rows for f in files),
            "disk_mb": sum(f.stat().st_size for f in files) / 2**20,
        }
        print(
            f"{n:,} patients: {size['readings']:,} readings in {size['shards']} shards "
            f"({size['disk_mb']:.0f} MB), generated in {size['generate_s']:.0f} s",
            flush=True,
        )
        for mode in ("true",) + (() if args.no_memory else ("false",)):
            e = size[f"epoch_{'streamed' if mode == 'true' else 'memory'}"] = in_child(
                "epoch", str(data), mode, args=args
            )
            print(
                f"  epoch {'streamed' if mode == 'true' else 'in memory'}: prepare {e['prepare_s']:.0f} s, "
                f"{e['train_windows']:,} windows at {e['windows_per_s']:,.0f}/s ({e['train_epoch_s']:.0f} s, "
                f"{e['epoch_with_val_s']:.0f} s with val), peak RSS {e['peak_rss_mb']:,.0f} MB",
                flush=True,
            )
        if n == max(args.patients) and not args.no_flow:
            f = size["flow_streamed"] = in_child("flow", str(data), args=args)
            print(
                f"  flow streamed ({args.flow_epochs} epochs, exit {f['exit_code']}): {f['wall_s']:.0f} s, "
                f"peak RSS {f['peak_rss_mb']:,.0f} MB; {f['outcome'][0] if f['outcome'] else ''}",
                flush=True,
            )
        res["sizes"][str(n)] = size
    write_results("monitor", res)


if __name__ == "__main__":
    main()
