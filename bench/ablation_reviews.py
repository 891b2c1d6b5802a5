"""Reviews ablation over several validation splits: how the defaults are chosen, reproducibly.

    python bench/ablation_reviews.py                              # the four variants, 5 splits
    python bench/ablation_reviews.py --variant default --splits 3
    python bench/ablation_reviews.py --variant lm400="pretrain.enabled=true model.cell=lstm ..."

One validation split of 600 reviews is too noisy to choose a default on (a paired bootstrap
puts the model-minus-TF-IDF difference at about +-0.016 on 1,000 test reviews). So each
variant is trained once per validation split (`split.seed` 0..N-1, or from `--first-split`: a different stratified 15%
of the training file held out each time; the TF-IDF baseline is refitted on the same split,
its `C` and threshold chosen on it) and the *mean validation* difference from TF-IDF decides.
The test file is the same for every split and is only reported (its mean over splits, the
same figures `rnnpipe train reviews` logs). Each run is the library's own trial function
(`rnnpipe.steps.train_kind` in a sweep trial's context: the flow's steps without the orchestration).

Variants (`--variant NAME` picks built-in ones, `NAME="KEY=VALUE ..."` defines one; without
`--variant`, the first four):
  plain     model.highway=none                           the default's LSTM 400 on the bundled vectors alone
  pretrain  model.highway=none pretrain.enabled=true     + language-model pretraining
  default   (no overrides)                               + the wide TF-IDF part (the default)
  both      pretrain.enabled=true                        pretraining and the wide part
  random, random-plain, random-pretrain, random-both     the same four with an embedding learnt
            from scratch (embed.path="": the default until 2026-12-05)
  bigru, bigru-plain, bigru-pretrain, bigru-both         the same four on the default until
            2026-12-04, a bidirectional GRU 64 with 100-dimensional embeddings learnt from scratch
  lstm200, lstm200-plain, lstm200-pretrain, lstm200-both the same four on an LSTM 200 (from scratch)
  finetune  embed.freeze=false                           the default with its vectors fine-tuned
  extend    embed.extend_vocab=true                      ... with the vector file's words in the vocabulary
  default200 model.hidden_size=200                       ... on an LSTM 200

`--members K` trains K models per split (`train.seed` S..S+K-1 from the configured S, the
data prepared once; the first is the variant's own model) and
scores the average of their probabilities (a seed ensemble; the decision threshold tuned on
the average's validation figures), with the library's own evaluation; the variant is reported
as NAME-xK. It measures what averaging independent runs buys; rnnpipe itself trains one model.

`--max-s 200` chooses only among variants that train in 200 s (the default `rnnpipe train
reviews` must finish in 4 minutes on 2 cores). Results go to stdout and
bench/results/ablation-reviews-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rnnpipe.config import load_config  # noqa: E402
from rnnpipe.pipelines.reviews.artefact import ReviewsPipeline, text_loss  # noqa: E402
from rnnpipe.pipelines.reviews.config import ReviewsConfig  # noqa: E402
from rnnpipe.pipelines.reviews.evaluation import evaluate_reviews  # noqa: E402
from rnnpipe.pipelines.reviews.prepare import load_reviews, prepare_reviews  # noqa: E402
from rnnpipe.pipelines.reviews.steps import ReviewsSteps  # noqa: E402
from rnnpipe.steps import train_kind, trial_context  # noqa: E402
from rnnpipe.training import fit  # noqa: E402

FOUR = {
    "plain": "model.highway=none",
    "pretrain": "model.highway=none pretrain.enabled=true",
    "default": "",
    "both": "pretrain.enabled=true",
}
RANDOM = "embed.path= embed.freeze=false"  # an embedding learnt from scratch (the default until 2026-12-05)
ENCODERS = {
    "random": RANDOM,
    "bigru": f"model.cell=gru model.hidden_size=64 model.bidirectional=true embed.dim=100 {RANDOM}",
    "lstm200": f"model.hidden_size=200 {RANDOM}",
}  # the default until 2026-12-04, and a narrower LSTM
VARIANTS = dict(FOUR) | {
    (enc if name == "default" else f"{enc}-{name}"): f"{sets} {extra}".strip()
    for enc, sets in ENCODERS.items()
    for name, extra in FOUR.items()
}
VARIANTS |= {
    "finetune": "embed.freeze=false",
    "extend": "embed.extend_vocab=true",
    "default200": "model.hidden_size=200",
}  # the default's vectors tuned / its vocabulary extended / an LSTM 200
DEFAULT_VARIANTS = tuple(FOUR)
KEYS = (
    "val_macro_f1",
    "tfidf_val_macro_f1",
    "test_macro_f1",
    "tfidf_test_macro_f1",
    "val_roc_auc",
    "tfidf_val_roc_auc",
    "test_roc_auc",
    "tfidf_test_roc_auc",
)


def variants(specs: list[str]) -> dict[str, list[str]]:
    out = {}
    for spec in specs or DEFAULT_VARIANTS:
        name, sep, sets = spec.partition("=")
        if not sep:
            if name not in VARIANTS:
                raise SystemExit(f'--variant {name!r}: not one of {", ".join(VARIANTS)} (or NAME="KEY=VALUE ...")')
            sets = VARIANTS[name]
        out[name] = shlex.split(sets)
    return out


class SeedEnsemble:
    """Reviews pipelines trained alike but for `train.seed`, answering with their mean
    probabilities: the interface `rnnpipe.pipelines.reviews.evaluation.evaluate_reviews` scores."""

    def __init__(self, members: list[ReviewsPipeline]):
        self.members, self.config, self.threshold = members, members[0].config, None

    def predict_proba(self, encoded, ngrams=None) -> np.ndarray:
        return np.mean([m.predict_proba(encoded, ngrams) for m in self.members], axis=0)


def ensemble_metrics(overrides: list[str], members: int) -> dict[str, float]:
    seed = load_config(ReviewsConfig, overrides=overrides).train.seed
    cfgs = [load_config(ReviewsConfig, overrides=[*overrides, f"train.seed={seed + k}"]) for k in range(members)]
    p = prepare_reviews(load_reviews(cfgs[0]), cfgs[0])
    pipes = []
    for cfg in cfgs:
        pipe = ReviewsPipeline.from_prepared(cfg, p)
        fit(pipe.model, p.batches("train"), p.batches("val"), cfg.train, loss_fn=text_loss(cfg, p), progress=False)
        pipes.append(pipe)
    return evaluate_reviews(SeedEnsemble(pipes), p).metrics


def merge(paths: list[str]) -> dict:
    out = {"merged": paths, "variants": {}}
    for path in paths:
        for name, v in json.loads(Path(path).read_text())["variants"].items():
            slot = out["variants"].setdefault(name, {"settings": v["settings"], "runs": []})
            seen = {r["split_seed"] for r in slot["runs"]}
            slot["runs"] += [r for r in v["runs"] if r["split_seed"] not in seen]
    for v in out["variants"].values():
        v["runs"].sort(key=lambda r: r["split_seed"])
    return out


def report(results: dict, max_s: float = 0.0) -> None:
    """Per variant: mean macro-F1 on val and test, and its difference from TF-IDF on the same
    splits; then the choice: the best mean validation figure, and by the one-standard-error
    rule (Breiman et al. 1984; Hastie et al., ESL 7.10) the cheapest variant whose mean is
    within one standard error of the best's (the error of the per-split differences from it).
    `max_s` > 0: only variants whose mean seconds a run are at most this take part in the choice
    (a time budget); the others are still reported."""
    vs = results["variants"]
    for v in vs.values():
        runs, summary = v["runs"], {}
        for part in ("val", "test"):
            d = np.array([r[f"{part}_macro_f1"] - r[f"tfidf_{part}_macro_f1"] for r in runs])
            summary |= {
                f"{part}_macro_f1_mean": float(np.mean([r[f"{part}_macro_f1"] for r in runs])),
                f"tfidf_{part}_macro_f1_mean": float(np.mean([r[f"tfidf_{part}_macro_f1"] for r in runs])),
                f"{part}_minus_tfidf_mean": float(d.mean()),
                f"{part}_minus_tfidf_sd": float(d.std(ddof=1)) if len(d) > 1 else float("nan"),
                f"{part}_wins": int((d > 0).sum()),
            }
        summary["wall_s_mean"] = float(np.mean([r["wall_s"] for r in runs]))
        v["summary"] = summary
    print(
        f"\n{'variant':10} {'splits':>6} {'val':>7} {'- tfidf':>8} {'wins':>5}   {'test':>7} {'- tfidf':>8} "
        f"{'wins':>5}  {'s/run':>6}"
    )
    for name, v in vs.items():
        s, n = v["summary"], len(v["runs"])
        print(
            f"{name:10} {n:>6} {s['val_macro_f1_mean']:7.4f} {s['val_minus_tfidf_mean']:+8.4f} "
            f"{s['val_wins']:>3}/{n}   {s['test_macro_f1_mean']:7.4f} {s['test_minus_tfidf_mean']:+8.4f} "
            f"{s['test_wins']:>3}/{n}  {s['wall_s_mean']:6.0f}"
        )
    tfidf = {
        r["split_seed"]: (r["tfidf_val_macro_f1"], r["tfidf_test_macro_f1"]) for v in vs.values() for r in v["runs"]
    }
    tv, tt = np.mean(list(tfidf.values()), axis=0)
    print(f"{'TF-IDF':10} {len(tfidf):>6} {tv:7.4f} {'':8} {'':5}   {tt:7.4f}  (the baseline, refitted on each split)")
    eligible = [k for k in vs if not max_s or vs[k]["summary"]["wall_s_mean"] <= max_s]
    if not eligible:
        raise SystemExit(f"--max-s {max_s:g}: no variant trains in that time")
    best = max(eligible, key=lambda k: vs[k]["summary"]["val_macro_f1_mean"])
    by_seed = {r["split_seed"]: r["val_macro_f1"] for r in vs[best]["runs"]}
    within = []
    for name in eligible:
        v = vs[name]
        d = np.array([by_seed[r["split_seed"]] - r["val_macro_f1"] for r in v["runs"] if r["split_seed"] in by_seed])
        se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
        v["summary"]["val_behind_best"], v["summary"]["val_behind_best_se"] = float(d.mean()), float(se)
        if name == best or (len(d) > 1 and d.mean() <= se):
            within.append(name)
    pick = min(within, key=lambda k: vs[k]["summary"]["wall_s_mean"])
    for name in eligible:
        s = vs[name]["summary"]
        if name != best:
            print(
                f"  {name}: {s['val_behind_best']:+.4f} behind {best} on val "
                f"(standard error {s['val_behind_best_se']:.4f})"
            )
    budget = f" among those under {max_s:g} s a run" if max_s else ""
    print(f"best on mean validation macro-F1{budget}: {best}; the cheapest within one standard error of it: {pick}")
    results["best_on_val"], results["one_se_choice"] = best, pick
    if "merged" not in results:
        write_results("ablation-reviews", results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME[=SETTINGS]")
    ap.add_argument("--splits", type=int, default=5, help="validation splits (split.seed K..K+N-1)")
    ap.add_argument("--first-split", type=int, default=0, metavar="K", help="the first split.seed")
    ap.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="applied to every variant"
    )
    ap.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="no training: the summary of earlier results "
        "files together (runs of the same variant and split are taken once)",
    )
    ap.add_argument(
        "--members",
        type=int,
        default=1,
        metavar="K",
        help="average K models per split (train.seed S..S+K-1): a seed ensemble (default 1)",
    )
    ap.add_argument(
        "--max-s",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="choose only among variants whose mean run takes at most this (a time budget)",
    )
    args = ap.parse_args()
    if args.merge:
        return report(merge(args.merge), args.max_s)
    chosen = variants(args.variant)
    if args.members < 1:
        raise SystemExit("--members: at least 1")
    if args.members > 1:
        chosen = {f"{name}-x{args.members}": sets for name, sets in chosen.items()}
    results = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "splits": list(range(args.first_split, args.first_split + args.splits)),
        "overrides": args.overrides,
        "members": args.members,
        "variants": {},
    }
    for name, sets in chosen.items():
        runs = []
        for seed in range(args.first_split, args.first_split + args.splits):
            overrides = [*args.overrides, *sets, f"split.seed={seed}"]
            t0 = time.perf_counter()
            m = (
                ensemble_metrics(overrides, args.members)
                if args.members > 1
                else train_kind(
                    ReviewsSteps(), load_config(ReviewsConfig, overrides=overrides), trial_context()
                ).metrics
            )
            run = {k: m[k] for k in KEYS} | {"split_seed": seed, "wall_s": time.perf_counter() - t0}
            runs.append(run)
            print(
                f"{name:10} split {seed}: val {run['val_macro_f1']:.4f} (tfidf {run['tfidf_val_macro_f1']:.4f})  "
                f"test {run['test_macro_f1']:.4f} (tfidf {run['tfidf_test_macro_f1']:.4f})  "
                f"{run['wall_s']:.0f} s",
                flush=True,
            )
        results["variants"][name] = {"settings": sets, "runs": runs}
    report(results, args.max_s)


if __name__ == "__main__":
    main()
