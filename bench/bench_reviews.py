"""Benchmark of the review-sentiment training loop: tokens/s with length bucketing against
naive padding. Figures, not assertions.

    python bench/bench_reviews.py                 # CPU here, or the GPU if present
    python bench/bench_reviews.py --device cuda --epochs 2
    python bench/bench_reviews.py --set model.cell=gru --set model.hidden_size=64 \
        --set model.bidirectional=true --set embed.dim=100 --set embed.path=   # a packed (bidirectional) encoder

Three ways to batch the same 3,400 training reviews for the same model (the default reviews
encoder: LSTM 400, max pooling; without the wide part, which batching does not touch), one
timed training epoch each after a warm-up:

  bucketed   reviews of similar length batched together (the default)
  random     random batches padded to their own longest review
  naive      random batches padded to the longest review of the data set, and a
             bidirectional RNN run over the padding too (no packing)

A one-direction encoder runs each padded batch as it is and masks the padding in the pooling;
a bidirectional one packs it (`rnnpipe.models.RecurrentEncoder.forward`).

tokens/s counts real tokens only (padding excluded), so the three figures compare directly.

    python bench/bench_reviews.py --lm            # the language model instead

`--lm`: the default `rnnpipe train lm` model (word-level LSTM 400, tied embedding) trained for
one epoch on the first `--lm-tokens` tokens of the training stream (tokens/s of truncated
backpropagation through time), then generated tokens/s: `--lm-prompts` prompts continued
for `max_new_tokens` tokens each at the default sampling settings (one token per step,
batch 1, as the served model runs).
    python bench/bench_reviews.py --inference     # text inference: one 512-row batch vs the token budget

`--inference`: the default reviews model (untrained: the memory and the speed of a pass do not
depend on the weights) predicts `--texts` test reviews (repeated) once in 512-row batches and
once in batches of at most `INFERENCE_TOKENS` padded tokens, each in a process of its own
(alternating, `--repeats` times): texts/s and the process's peak RSS.
Results go to stdout and to bench/results/reviews-<time>.json (lm-<time>.json with --lm,
text-inference-<time>.json with --inference).
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

import torch  # noqa: E402

from rnnpipe.config import load_config  # noqa: E402
from rnnpipe.pipelines.lm.prepare import StreamBatches, lm_loss  # noqa: E402
from rnnpipe.pipelines.reviews.artefact import ReviewsPipeline, text_loss  # noqa: E402
from rnnpipe.pipelines.reviews.config import ReviewsConfig  # noqa: E402
from rnnpipe.pipelines.reviews.prepare import load_reviews, prepare_reviews  # noqa: E402
from rnnpipe.text import TextBatches  # noqa: E402
from rnnpipe.training import fit  # noqa: E402

MODES = {"bucketed": dict(bucket=True), "random": dict(bucket=False), "naive": dict(bucket=False, pad_to_longest=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs per mode")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--lm", action="store_true", help="benchmark the language model instead")
    ap.add_argument("--lm-tokens", type=int, default=200_000, help="--lm: training tokens timed")
    ap.add_argument("--lm-prompts", type=int, default=8, help="--lm: prompts generated from")
    ap.add_argument("--inference", action="store_true", help="benchmark text inference batching instead")
    ap.add_argument("--texts", type=int, default=6000, help="--inference: reviews predicted")
    ap.add_argument("--repeats", type=int, default=2, help="--inference: runs of each way")
    ap.add_argument("--one", choices=["rows", "tokens"], help=argparse.SUPPRESS)  # one timed run (a subprocess)
    args = ap.parse_args()
    if args.one:
        return inference_once(args.one, args.texts)
    if args.inference:
        return bench_inference(args)
    if args.lm:
        return bench_lm(args)
    cfg = load_config(ReviewsConfig, overrides=[f"train.device={args.device}", "train.patience=99", *args.overrides])
    p = prepare_reviews(load_reviews(cfg), cfg)
    enc = p.encoded["train"]
    real_tokens = enc.token_count()
    results = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "reviews": len(enc),
        "tokens": real_tokens,
        "longest": int(enc.lengths.max()),
        "batch_size": cfg.train.batch_size,
        "modes": {},
    }
    for mode, kw in MODES.items():
        train = TextBatches(enc, p.y["train"], **kw)
        val = TextBatches(p.encoded["val"], p.y["val"])
        pipe = ReviewsPipeline(cfg, p.preprocessor, p.classes)
        pipe.model.encoder.pack = mode != "naive"
        warm = load_config(ReviewsConfig, overrides=[f"train.device={args.device}", "train.epochs=1"])
        fit(
            pipe.model,
            TextBatches(p.encoded["val"], p.y["val"], **kw),
            val,
            warm.train,
            loss_fn=text_loss(cfg, p),
            progress=False,
        )  # warm-up on the val part
        cells = sum(
            t.numel() for (t, _), _ in train.batches(cfg.train.batch_size, True, torch.Generator().manual_seed(0))
        )
        epochs = load_config(
            ReviewsConfig, overrides=[f"train.device={args.device}", f"train.epochs={args.epochs}", "train.patience=99"]
        )
        t0 = time.perf_counter()
        r = fit(pipe.model, train, val, epochs.train, loss_fn=text_loss(cfg, p), progress=False)
        wall = time.perf_counter() - t0
        train_s = sum(h["epoch_time_s"] for h in r.history)
        results["modes"][mode] = {
            "tokens_per_s": real_tokens * args.epochs / train_s,
            "epoch_s": train_s / args.epochs,
            "padded_cells": cells,
            "padding_share": 1 - real_tokens / cells,
            "wall_s": wall,
            "device": r.device,
            "precision": r.precision,
        }
        m = results["modes"][mode]
        print(
            f"{mode:9} {m['tokens_per_s']:>10,.0f} tokens/s  epoch {m['epoch_s']:6.1f} s  "
            f"padding {m['padding_share']:6.1%} of {cells:,} cells  ({r.device}, {r.precision})",
            flush=True,
        )
    base = results["modes"]["naive"]["tokens_per_s"]
    for m in results["modes"].values():
        m["speedup_vs_naive"] = m["tokens_per_s"] / base
    print(
        f"bucketed vs naive: {results['modes']['bucketed']['speedup_vs_naive']:.1f}x; random vs naive: "
        f"{results['modes']['random']['speedup_vs_naive']:.1f}x"
    )
    write_results("reviews", results)


def bench_lm(args) -> None:
    from rnnpipe.pipelines.lm.artefact import LMConfig, LMPipeline
    from rnnpipe.pipelines.lm.prepare import load_lm_texts, prepare_lm

    cfg = load_config(
        LMConfig, overrides=[f"train.device={args.device}", "train.epochs=1", "train.patience=99", *args.overrides]
    )
    p = prepare_lm(load_lm_texts(cfg), cfg)
    stream = p.streams["train"][: args.lm_tokens + 1]
    pipe = LMPipeline(cfg, p.preprocessor)
    rows, bptt = cfg.train.batch_size, cfg.stream.bptt
    warm = StreamBatches(stream[: rows * bptt * 4 + 1], rows, bptt)
    fit(pipe.model, warm, warm, cfg.train, loss_fn=lm_loss, progress=False)  # warm-up
    train = StreamBatches(stream, rows, bptt)
    val = StreamBatches(p.streams["val"][: rows * bptt * 8 + 1], rows, bptt)
    r = fit(pipe.model, train, val, cfg.train, loss_fn=lm_loss, progress=False)
    train_s = sum(h["epoch_time_s"] for h in r.history)
    gen = torch.Generator().manual_seed(0)
    prompts = (list(cfg.generate.prompts) * args.lm_prompts)[: args.lm_prompts]
    g = cfg.generate
    t0, written = time.perf_counter(), 0
    for prompt in prompts:
        new, _ = pipe.generate(prompt, g.max_new_tokens, g.temperature, g.top_k, g.top_p, gen)
        written += len(new)
    gen_s = time.perf_counter() - t0
    results = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "model": {
            "cell": cfg.model.cell,
            "hidden_size": cfg.model.hidden_size,
            "num_layers": cfg.model.num_layers,
            "vocabulary": len(p.preprocessor.vocab_),
        },
        "train": {
            "tokens": int(train.tokens),
            "seconds": train_s,
            "tokens_per_s": train.tokens / train_s,
            "rows": rows,
            "bptt": bptt,
            "device": r.device,
            "precision": r.precision,
        },
        "generate": {"prompts": len(prompts), "tokens": written, "seconds": gen_s, "tokens_per_s": written / gen_s},
    }
    print(
        f"LM training   {results['train']['tokens_per_s']:>9,.0f} tokens/s ({train.tokens:,} tokens, "
        f"{r.device}, {r.precision})"
    )
    print(
        f"LM generation {results['generate']['tokens_per_s']:>9,.0f} tokens/s ({written} tokens from "
        f"{len(prompts)} prompts)"
    )
    write_results("lm", results)


def inference_once(way: str, n: int) -> None:
    """One timed inference pass of the default reviews model over `n` test reviews; prints a
    JSON line (texts/s, the process's peak RSS, a checksum of the outputs)."""
    import json
    import resource

    import numpy as np
    import pandas as pd

    from rnnpipe.features.windows import INFERENCE_TOKENS
    from rnnpipe.pipelines.reviews.prepare import TextPreprocessor
    from rnnpipe.training import predict_batches

    torch.manual_seed(0)
    cfg = load_config(ReviewsConfig, overrides=["embed.path=''", "model.highway=none"])  # no wide part
    texts = pd.read_parquet(ROOT / cfg.data.test_path)[cfg.data.text_col].tolist()
    texts = (texts * (n // len(texts) + 1))[:n]
    pre = TextPreprocessor(cfg).fit(texts)
    pipe = ReviewsPipeline(cfg, pre, ["neg", "pos"])
    enc = pre.encode(texts)
    data = TextBatches(enc, bucket=True, max_tokens=INFERENCE_TOKENS if way == "tokens" else 0)
    t0 = time.perf_counter()
    out = predict_batches(pipe.model, data, 512)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"texts_per_s": n / wall, "peak_mib": peak, "checksum": float(np.abs(out).sum())}))


def bench_inference(args) -> None:
    import json
    import subprocess

    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "texts": args.texts}
    runs = {"rows": [], "tokens": []}
    for _ in range(args.repeats):
        for way in runs:
            cmd = [sys.executable, __file__, "--one", way, "--texts", str(args.texts)]
            line = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            runs[way].append(json.loads(line))
            r = runs[way][-1]
            print(f"{way:6} {r['texts_per_s']:8,.0f} texts/s  peak RSS {r['peak_mib']:6,.0f} MiB", flush=True)
    results["runs"] = runs
    same = {round(r["checksum"], 3) for rs in runs.values() for r in rs}
    print(f"the same outputs both ways: {len(same) == 1}")
    write_results("text-inference", results)


if __name__ == "__main__":
    main()
