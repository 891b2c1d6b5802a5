"""Benchmark: training samples/s of each pipeline's default model on the CPU and on the GPU,
bf16 autocast on and off, and batch-prediction rows/s of the reviews model on each device.
Figures, not assertions; one short script for a machine with a GPU.

    python bench/bench_devices.py                  # CPU only here; CPU and GPU where CUDA is
    python bench/bench_devices.py --epochs 3 --predict-rows 50000

For each of stocks, monitor (bundled glucose), reviews and lm the data is prepared once, then a
fresh default model (same seed) is trained `--epochs` epochs under each setting: `cpu fp32`,
and where CUDA is available `cuda fp32` and `cuda bf16` (`train.device`, `train.precision`).
The figure is the last epoch's samples/s (the first warms up cuDNN and the allocator).
Prediction: the trained reviews pipeline's `predict` (raw text in, as the batch job runs it)
on `--predict-rows` reviews in chunks of 5,000, with the model on each device.
Results go to stdout and to bench/results/devices-<time>.json.
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

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from rnnpipe.config import load_config  # noqa: E402
from rnnpipe.pipelines.forecast.config import ForecastConfig  # noqa: E402
from rnnpipe.pipelines.lm.artefact import LMConfig  # noqa: E402
from rnnpipe.pipelines.monitor.config import MonitorConfig  # noqa: E402
from rnnpipe.pipelines.reviews.config import ReviewsConfig  # noqa: E402
from rnnpipe.training import fit  # noqa: E402


def stocks(cfg):
    from rnnpipe.features.splits import chronological_split
    from rnnpipe.pipelines.forecast.artefact import ForecastPipeline
    from rnnpipe.pipelines.forecast.data import load_forecast_data
    from rnnpipe.pipelines.forecast.prepare import prepare

    frame, s = load_forecast_data(cfg), cfg.split
    p = prepare(frame, chronological_split(frame, s.train, s.val, s.val_start, s.test_start), cfg)
    return lambda c: (ForecastPipeline(c, p.preprocessor), p.windows("train"), p.windows("val"), None)


def monitor(cfg):
    from rnnpipe.pipelines.monitor.artefact import MonitorPipeline, classification_loss, prepare_monitor
    from rnnpipe.pipelines.monitor.data import load_monitor_data

    p = prepare_monitor(load_monitor_data(cfg), cfg)
    return lambda c: (
        MonitorPipeline(c, p.preprocessor),
        p.windows("train"),
        p.windows("val"),
        classification_loss(c, p),
    )


def reviews(cfg):
    from rnnpipe.pipelines.reviews.artefact import ReviewsPipeline, text_loss
    from rnnpipe.pipelines.reviews.prepare import load_reviews, prepare_reviews

    p = prepare_reviews(load_reviews(cfg), cfg)
    return lambda c: (ReviewsPipeline.from_prepared(c, p, None), p.batches("train"), p.batches("val"), text_loss(c, p))


def lm(cfg):
    from rnnpipe.pipelines.lm.artefact import LMPipeline
    from rnnpipe.pipelines.lm.prepare import lm_loss, load_lm_texts, prepare_lm

    p = prepare_lm(load_lm_texts(cfg), cfg)
    b, t = cfg.train.batch_size, cfg.stream.bptt
    return lambda c: (
        LMPipeline(c, p.preprocessor, seen=p.seen()),
        p.batches("train", b, t),
        p.batches("val", b, t),
        lm_loss,
    )


# name -> (config class, its extra settings here, data prepared once -> a fresh model and its data)
PIPELINES = {
    "stocks": (ForecastConfig, [], stocks),
    "monitor": (MonitorConfig, ["forecast.enabled=false"], monitor),
    "reviews": (ReviewsConfig, [], reviews),
    "lm": (LMConfig, [], lm),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--predict-rows", type=int, default=20_000)
    ap.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=list(PIPELINES))
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    settings_ = [("cpu", "fp32")] + ([("cuda", "fp32"), ("cuda", "bf16")] if cuda else [])
    res: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if cuda else None,
        },
        "args": vars(args),
        "train": {},
        "predict": {},
    }
    if not cuda:
        print("no CUDA device here: CPU figures only")
    trained_reviews = None
    for name in args.pipelines:
        config_class, extra, prepare = PIPELINES[name]
        base = extra + [f"train.epochs={args.epochs}", f"train.patience={args.epochs + 1}"]
        build = prepare(load_config(config_class, overrides=base))
        for device, precision in settings_:
            cfg = load_config(config_class, overrides=base + [f"train.device={device}", f"train.precision={precision}"])
            pipe, train, val, loss = build(cfg)
            t0 = time.perf_counter()
            result = fit(pipe.model, train, val, cfg.train, loss_fn=loss, progress=False)
            h = result.history[-1]
            key = f"{name} {device} {precision}"
            res["train"][key] = {
                "samples_per_s": h["samples_per_s"],
                "epoch_s": h["epoch_time_s"],
                "val_loss": h["val_loss"],
                "wall_s": time.perf_counter() - t0,
            }
            print(
                f"train {key:22} {h['samples_per_s']:>12,.0f} samples/s  (epoch {h['epoch_time_s']:.1f} s, "
                f"val_loss {h['val_loss']:.4f})",
                flush=True,
            )
            if name == "reviews" and device == "cpu":
                trained_reviews = pipe
    if trained_reviews is not None:
        test = pd.read_parquet(ROOT / "data" / "reviews_test.parquet")
        texts = test[trained_reviews.config.data.text_col].tolist() * (args.predict_rows // len(test) + 1)
        texts = texts[: args.predict_rows]
        for device in ["cpu"] + (["cuda"] if cuda else []):
            trained_reviews.model.to(device).eval()
            trained_reviews.predict(pd.DataFrame({"text": texts[:500]}))  # warm-up
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for i in range(0, len(texts), 5000):
                trained_reviews.predict(pd.DataFrame({"text": texts[i : i + 5000]}))
            if device == "cuda":
                torch.cuda.synchronize()
            s = time.perf_counter() - t0
            res["predict"][f"reviews {device}"] = {"rows_per_s": len(texts) / s, "seconds": s}
            print(
                f"predict reviews {device:5} {len(texts) / s:>12,.0f} rows/s  ({s:.1f} s for {len(texts):,} rows)",
                flush=True,
            )
    write_results("devices", res)


if __name__ == "__main__":
    main()
