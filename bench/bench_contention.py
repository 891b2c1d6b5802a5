"""Benchmark: training speed when the machine is shared. Figures, not assertions.

    python bench/bench_contention.py                          # every pipeline, alone and in pairs
    python bench/bench_contention.py --pipelines stocks --repeats 3 --no-serve
    python bench/bench_contention.py --threads 1 --env OMP_WAIT_POLICY=ACTIVE   # other settings

For each pipeline's default model (stocks, monitor's early warning on the bundled glucose,
reviews, lm), one worker process prepares the bundled data and trains with the product's own
fit loop (`rnnpipe.training.fit`), each epoch cut to `--batches` batches (a short slice of the
training set; the model and batch size are the defaults). Its figure is the median samples/s
of the epochs after the first.

  alone   one worker at a time, `--repeats` times: the median of the runs
  pair    two workers of the same pipeline started together; both finish preparing, wait
          for each other, then train side by side: each one's samples/s and its share of
          the alone figure (the bar: >= 40%; a fair share of 2 cores is 50%)
  serve   a stocks model trained and registered in a temporary store, served by
          `rnnpipe serve` on 127.0.0.1: p50 / p99 latency of a 2-series history request,
          idle and while a stocks training runs beside it (the bar: p50 within 3x of idle)

Workers get the product's thread settings (`train.threads=auto`, `OMP_WAIT_POLICY` from
`rnnpipe.threads`) unless `--threads` or `--env` say otherwise: to compare the settings the
choice was made on. Results go to stdout and to bench/results/contention-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
PIPELINES = ("stocks", "monitor", "reviews", "lm")


class Slice:
    """The first `n` batches of every epoch of a batch source (shuffled as usual)."""

    def __init__(self, source, n: int, batch_size: int):
        self.source, self.n, self.batch_size = source, n, batch_size

    def __len__(self) -> int:
        return min(len(self.source), self.n * self.batch_size)

    def to(self, device):
        return Slice(self.source.to(device), self.n, self.batch_size)

    def batches(self, batch_size, shuffle=False, generator=None):
        for k, batch in enumerate(self.source.batches(batch_size, shuffle=shuffle, generator=generator)):
            if k >= self.n:
                break
            yield batch

    def __getattr__(self, name):  # e.g. a stream's `rows`
        return getattr(self.source, name)


def _barrier(folder: Path, me: str, peers: int, timeout: float = 600) -> None:
    (folder / me).touch()
    t0 = time.time()
    while len(list(folder.iterdir())) < peers:
        if time.time() - t0 > timeout:
            raise SystemExit("barrier timed out")
        time.sleep(0.05)


def worker(args) -> None:
    """One training, reporting JSON on stdout."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(BENCH))
    from bench_devices import PIPELINES as BUILDERS

    from rnnpipe.config import load_config
    from rnnpipe.training import fit

    config_class, extra, prepare = BUILDERS[args.worker]
    overrides = extra + [
        f"train.epochs={args.epochs}",
        f"train.patience={args.epochs + 1}",
        "train.device=cpu",
        f"train.threads={args.threads}",
    ]
    cfg = load_config(config_class, overrides=overrides)
    pipe, train, val, loss = prepare(cfg)(cfg)
    bs = cfg.train.batch_size
    train, val = Slice(train, args.batches, bs), Slice(val, max(1, args.batches // 4), max(bs, 1024))
    if args.barrier:
        _barrier(Path(args.barrier), f"{os.getpid()}", args.peers)
    t0 = time.perf_counter()
    result = fit(pipe.model, train, val, cfg.train, loss_fn=loss, progress=False)
    rates = [h["samples_per_s"] for h in result.history[1:]] or [result.history[0]["samples_per_s"]]
    import torch

    print(
        json.dumps(
            {
                "pipeline": args.worker,
                "samples_per_s": statistics.median(rates),
                "epochs": rates,
                "wall_s": time.perf_counter() - t0,
                "torch_threads": torch.get_num_threads(),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
                "parameters": sum(p.numel() for p in pipe.model.parameters()),
            }
        ),
        flush=True,
    )


def _env(args) -> dict[str, str]:
    env = dict(os.environ)
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def run_workers(args, name: str, n: int, epochs: int | None = None) -> list[dict]:
    barrier = Path(tempfile.mkdtemp(prefix="rnnpipe-barrier-"))
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--batches",
        str(args.batches),
        "--epochs",
        str(epochs or args.epochs),
        "--threads",
        args.threads,
        "--barrier",
        str(barrier),
        "--peers",
        str(n),
    ]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, env=_env(args), text=True) for _ in range(n)]
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"worker {name} failed ({p.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def serve_latency(args, home: Path) -> dict:
    """p50/p99 of a served stocks model, idle and beside a training."""
    import urllib.request

    import numpy as np
    import pandas as pd

    env = {**_env(args), "RNNPIPE_HOME": str(home)}
    subprocess.run(
        [sys.executable, "-m", "rnnpipe.cli", "-q", "train", "stocks", "--set", "train.epochs=1"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    from _serve import start_server

    server, port, _ = start_server("stocks-forecaster@champion", env)
    history = pd.read_parquet(ROOT / "data" / "stocks.parquet")
    history = history[history.Ticker.isin(["AAPL", "MSFT"])].groupby("Ticker").tail(80)
    body = json.dumps(
        {
            "dataframe_split": json.loads(
                history[["Ticker", "Date", "Close"]]
                .assign(Date=history.Date.astype(str))
                .to_json(orient="split", index=False)
            )
        }
    )

    def measure(k: int) -> dict:
        lat = []
        for i in range(k + 10):
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations", data=body.encode(), headers={"Content-Type": "application/json"}
            )
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=60) as r:
                r.read()
            if i >= 10:
                lat.append(time.perf_counter() - t)
        ms = np.array(lat) * 1000
        return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}

    try:
        idle = measure(args.requests)
        barrier = Path(tempfile.mkdtemp(prefix="rnnpipe-barrier-"))
        trainer = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                "stocks",
                "--batches",
                "1000",
                "--epochs",
                "50",
                "--threads",
                args.threads,
                "--barrier",
                str(barrier),
                "--peers",
                "1",
            ],
            env=_env(args),
            stdout=subprocess.DEVNULL,
        )
        while not any(barrier.iterdir()):
            time.sleep(0.1)
        time.sleep(2)  # into its first epoch
        busy = measure(args.requests)
        trainer.kill()
        trainer.wait()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    return {"idle": idle, "beside_training": busy, "p50_ratio": busy["p50_ms"] / idle["p50_ms"]}


def _rates(runs: list[dict]) -> str:
    return ", ".join(format(r["samples_per_s"], ",.0f") for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipelines", nargs="*", default=list(PIPELINES), choices=PIPELINES)
    ap.add_argument("--repeats", type=int, default=3, help="alone runs per pipeline (the median counts)")
    ap.add_argument("--batches", type=int, default=40, help="batches per epoch")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", default="auto", help="train.threads of the workers")
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment of the workers, e.g. OMP_WAIT_POLICY=ACTIVE; OMP_WAIT_POLICY= (empty) is "
        "OpenMP's own default, as before rnnpipe set it",
    )
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--no-serve", action="store_true")
    ap.add_argument("--no-pairs", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--barrier", help=argparse.SUPPRESS)
    ap.add_argument("--peers", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("RNNPIPE_HOME", tempfile.mkdtemp(prefix="rnnpipe-bench-"))
    if args.worker:
        return worker(args)
    sys.path.insert(0, str(BENCH))
    from _results import write_results

    res = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "args": vars(args),
        "alone": {},
        "pair": {},
    }
    for name in args.pipelines:
        runs = [run_workers(args, name, 1)[0] for _ in range(args.repeats)]
        alone = statistics.median(r["samples_per_s"] for r in runs)
        res["alone"][name] = {"samples_per_s": alone, "runs": runs}
        print(
            f"{name:8} alone  {alone:>10,.0f} samples/s  (runs: "
            f"{_rates(runs)}; {runs[0]['torch_threads']} threads, "
            f"{runs[0]['parameters']:,} parameters)",
            flush=True,
        )
        if args.no_pairs:
            continue
        pair = run_workers(args, name, 2)
        shares = [r["samples_per_s"] / alone for r in pair]
        res["pair"][name] = {"runs": pair, "share_of_alone": shares}
        print(
            f"{name:8} pair   {_rates(pair)} samples/s each = {', '.join(format(s, '.0%') for s in shares)} of alone",
            flush=True,
        )
    if not args.no_serve:
        s = serve_latency(args, Path(os.environ["RNNPIPE_HOME"]))
        res["serve"] = s
        print(
            f"serve    p50 {s['idle']['p50_ms']:.1f} ms idle, {s['beside_training']['p50_ms']:.1f} ms beside a "
            f"training ({s['p50_ratio']:.1f}x); p99 {s['idle']['p99_ms']:.1f} / "
            f"{s['beside_training']['p99_ms']:.1f} ms",
            flush=True,
        )
    write_results("contention", res)


if __name__ == "__main__":
    main()
