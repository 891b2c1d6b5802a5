"""How long a user error takes to come back: `rnnpipe train` and `rnnpipe predict` on files
of the bad-input corpus (tests/bad_inputs), each a fresh process, as a user runs them. The
target is under 5 s on 2 CPU cores; `rnnpipe --help` is timed beside them as the floor.

    python bench/bench_user_errors.py            # 3 repeats of each, median reported
    python bench/bench_user_errors.py --repeats 1

For `predict` it first trains a tiny stocks model into a temporary store (not timed). Each
row reports the exit code, the number of `error:` lines and whether a traceback appeared.
Results go to stdout and to bench/results/user-errors-<time>.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from _results import write_results  # noqa: E402

CORPUS = ROOT / "tests" / "bad_inputs"
RNNPIPE = [sys.executable, "-m", "rnnpipe.cli"]
TINY = [
    "--set",
    "window.lookback=20",
    "--set",
    "model.hidden_size=8",
    "--set",
    "model.num_layers=1",
    "--set",
    "train.epochs=1",
    "--set",
    "baselines.statistical=[]",
    "--set",
    "register.gate_baselines=[naive]",
    "--set",
    "register.model_name=bench-errors",
    "--set",
    "register.experiment=bench-errors",
]


def timed(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True, cwd=ROOT)
    return time.perf_counter() - t0, proc.returncode, proc.stdout + proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    env = {**os.environ, "RNNPIPE_HOME": tempfile.mkdtemp(prefix="rnnpipe-bench-")}
    env.pop("MLFLOW_TRACKING_URI", None)
    stocks = CORPUS / "stocks"
    print("training a tiny stocks model for the predict cases ...", flush=True)
    _, rc, out = timed([*RNNPIPE, "train", "stocks", "--set", f"data.path={stocks / 'ok_unsorted.csv'}", *TINY], env)
    if rc != 0:
        sys.exit(f"training the model failed:\n{out}")
    tmp = Path(tempfile.mkdtemp(prefix="rnnpipe-bench-out-"))
    cases = {"--help": [*RNNPIPE, "--help"]}
    for name in ("missing_column.csv", "bad_number.csv", "duplicate.csv", "mixed_offsets.csv", "header_only.csv"):
        cases[f"train {name}"] = [*RNNPIPE, "train", "stocks", "--set", f"data.path={stocks / name}", *TINY]
    cases["train no-such-file.csv"] = [*RNNPIPE, "train", "stocks", "--set", "data.path=no-such-file.csv"]
    cases["predict unknown model"] = [
        *RNNPIPE,
        "predict",
        "no-such-model",
        "-i",
        str(stocks / "ok_unsorted.csv"),
        "-o",
        str(tmp / "x.parquet"),
    ]
    for name in ("missing_column.csv", "bad_number.csv", "duplicate.csv", "header_only.csv"):
        cases[f"predict {name}"] = [
            *RNNPIPE,
            "predict",
            "bench-errors",
            "-i",
            str(stocks / name),
            "-o",
            str(tmp / f"{name}.parquet"),
        ]
    rows = []
    for label, argv in cases.items():
        times, rc, out = [], 0, ""
        for _ in range(args.repeats):
            t, rc, out = timed(argv, env)
            times.append(t)
        row = {
            "case": label,
            "median_s": round(statistics.median(times), 2),
            "exit": rc,
            "error_lines": sum(line.startswith("error:") for line in out.splitlines()),
            "traceback": "Traceback" in out,
        }
        rows.append(row)
        print(
            f"{label:34s} {row['median_s']:6.2f} s  exit {rc}  error lines {row['error_lines']}"
            f"{'  TRACEBACK' if row['traceback'] else ''}",
            flush=True,
        )
    slow = [r["case"] for r in rows if r["case"] != "--help" and r["median_s"] >= 5]
    print("all under 5 s" if not slow else f"5 s or more: {', '.join(slow)}")
    write_results("user-errors", {"repeats": args.repeats, "cases": rows, "cpus": os.cpu_count()})


if __name__ == "__main__":
    main()
