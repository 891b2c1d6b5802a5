"""Benchmarks of operating a model: the batch-prediction job against the bare model forward
on the same rows and batch size, and the served model's latency. Figures, not assertions.

    python bench/bench_serving.py                     # 1,000,000 reviews, then 200 HTTP requests
    python bench/bench_serving.py --rows 100000 --requests 500

It trains a reviews model on the bundled data first (default config but 2 epochs: speed, not
quality, is measured here), registers it in a temporary store, and builds the input by cycling
the bundled test reviews, written as a Parquet dataset of several files.

  batch    rows/s of `batch_predict` (read with pyarrow in chunks, tokenise, encode, forward,
           write Parquet with lineage, rename) against the bare forward pass over the same
           rows, already encoded, with the same batch size (512); target: at least 80%
           (`--no-bare` skips the bare pass, which holds every row in memory)
  dask     the same job with `--runner dask` on a LocalCluster of `--dask-workers` (default 2)
           single-threaded workers, one part per input file (0 workers: skipped)
  memory   peak RSS, sampled every 0.2 s: of the process during the local job, and of each
           Dask worker (and the flow's process) during the Dask job
  serving  `rnnpipe serve` on 127.0.0.1: time to ready, and p50 / p99 latency of requests
           holding one review each, sent one after another

Results go to stdout and to bench/results/serving-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RNNPIPE_HOME", tempfile.mkdtemp(prefix="rnnpipe-bench-"))

from _results import write_results  # noqa: E402
from _serve import start_server  # noqa: E402

from rnnpipe import settings  # noqa: E402

settings.apply_environment()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402


def make_input(rows: int, out: Path, files: int = 8) -> Path:
    texts = pd.read_parquet(ROOT / "data" / "reviews_test.parquet").review.to_numpy()
    out.mkdir(parents=True, exist_ok=True)
    per = -(-rows // files)
    for k in range(files):
        lo, hi = k * per, min(rows, (k + 1) * per)
        if lo >= hi:
            break
        idx = np.arange(lo, hi)
        pd.DataFrame({"review_id": idx.astype(str), "text": texts[idx % len(texts)]}).to_parquet(
            out / f"part-{k:03d}.parquet", row_group_size=50_000
        )
    return out


class PeakRss:
    """Peak resident memory, sampled every 0.2 s while the block runs: this process's, and each
    Dask worker's (child processes started by multiprocessing)."""

    def __init__(self):
        import psutil

        self.me, self.stop = psutil.Process(), threading.Event()
        self.self_mb, self.workers_mb = 0.0, {}

    def _sample(self) -> None:
        import psutil

        while not self.stop.wait(0.2):
            self.self_mb = max(self.self_mb, self.me.memory_info().rss / 2**20)
            for c in self.me.children(recursive=True):
                try:
                    if "spawn_main" in " ".join(c.cmdline()):
                        self.workers_mb[c.pid] = max(self.workers_mb.get(c.pid, 0.0), c.memory_info().rss / 2**20)
                except psutil.Error:
                    pass

    def __enter__(self) -> PeakRss:
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--chunk-rows", type=int, default=50_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--dask-workers", type=int, default=2)
    ap.add_argument("--no-bare", action="store_true", help="skip the bare forward pass (it holds every row)")
    args = ap.parse_args()
    from rnnpipe.config import load_config, to_dict
    from rnnpipe.flows.predict import batch_predict
    from rnnpipe.flows.reviews import train_reviews
    from rnnpipe.pipelines.reviews.config import ReviewsConfig
    from rnnpipe.registry import load_model

    home = Path(os.environ["RNNPIPE_HOME"])
    cfg = load_config(
        ReviewsConfig, overrides=["train.epochs=2", "register.experiment=bench", "register.model_name=bench-reviews"]
    )
    trained = train_reviews(config=to_dict(cfg))
    model = f"bench-reviews/{trained['version']}"
    src = make_input(args.rows, home / "bench-input")
    results = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "rows": args.rows,
        "chunk_rows": args.chunk_rows,
    }

    with PeakRss() as local:
        out = batch_predict(model, str(src), str(home / "bench-output.parquet"), args.chunk_rows)
    job_s = out["seconds"]
    results["batch_job"] = {**out, "peak_rss_mb": local.self_mb}
    print(
        f"batch job      {out['rows_per_s']:>10,.0f} rows/s  ({job_s:.1f} s), peak RSS of the process "
        f"{local.self_mb:,.0f} MB",
        flush=True,
    )

    if not args.no_bare:
        # bare forward: the same rows, encoded beforehand (not timed), batch size 512
        pipe = load_model(f"models:/{model}").unwrap_python_model().pipeline
        texts = pd.read_parquet(src, columns=["text"]).text.tolist()
        t0 = time.perf_counter()
        enc = pipe.preprocessor.encode(texts)
        ngrams = pipe.ngram_features(texts)  # the wide part's features (None without one)
        encode_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pipe.predict_proba(enc, ngrams, batch_size=512)
        bare_s = time.perf_counter() - t0
        del texts, enc, ngrams
        results["bare_forward"] = {"seconds": bare_s, "rows_per_s": args.rows / bare_s, "encode_s": encode_s}
        results["batch_job"]["share_of_bare"] = bare_s / job_s
        print(
            f"bare forward   {args.rows / bare_s:>10,.0f} rows/s  ({bare_s:.1f} s; encoding and n-gram features "
            f"alone took {encode_s:.1f} s); the batch job ran at {bare_s / job_s:.0%} of it (target 80%)",
            flush=True,
        )

    if args.dask_workers:
        from rnnpipe.flows.sweep import task_runner

        w = args.dask_workers
        threads = max(1, (os.cpu_count() or 1) // w)
        t0 = time.perf_counter()
        with PeakRss() as dask:
            out = batch_predict.with_options(task_runner=task_runner("dask", w, ""))(
                model, str(src), str(home / "bench-output-dask"), args.chunk_rows, "auto", "dask", w, threads
            )
        wall = time.perf_counter() - t0
        per_worker = sorted(dask.workers_mb.values(), reverse=True)
        results["dask_job"] = {
            **out,
            "workers": w,
            "threads_per_worker": threads,
            "wall_s": wall,
            "vs_local": out["rows_per_s"] / results["batch_job"]["rows_per_s"],
            "peak_rss_mb_per_worker": per_worker,
            "peak_rss_mb_flow_process": dask.self_mb,
        }
        print(
            f"dask job       {out['rows_per_s']:>10,.0f} rows/s  ({out['seconds']:.1f} s in the job, {wall:.1f} s "
            f"with the cluster's start) on {w} workers = {results['dask_job']['vs_local']:.2f}x the local job; "
            f"peak RSS per worker {', '.join(f'{m:,.0f}' for m in per_worker)} MB, flow process "
            f"{dask.self_mb:,.0f} MB",
            flush=True,
        )

    # serving latency: single-review requests
    proc, port, ready_s = start_server(model)
    try:
        reviews = pd.read_parquet(ROOT / "data" / "reviews_test.parquet").review.tolist()
        lat = []
        for i in range(args.requests + 10):
            body = json.dumps({"dataframe_records": [{"text": reviews[i % len(reviews)]}]}).encode()
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
            )
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
            if i >= 10:  # warm-up
                lat.append(time.perf_counter() - t)
        ms = np.array(lat) * 1000
        results["serving"] = {
            "ready_s": ready_s,
            "requests": len(lat),
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()),
        }
        s = results["serving"]
        print(
            f"serving        ready in {ready_s:.1f} s; single review p50 {s['p50_ms']:.1f} ms, "
            f"p99 {s['p99_ms']:.1f} ms over {len(lat)} requests",
            flush=True,
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    write_results("serving", results)


if __name__ == "__main__":
    main()
