"""Benchmark: `rnnpipe tune`, as whole commands. Figures, not assertions.

    python bench/bench_tune.py quality --task glucose --trials 30 --workers 2
    python bench/bench_tune.py quality --task reviews --trials 30 --workers 2 --timeout 2400
    python bench/bench_tune.py quality --task stocks --trials 12 --set train.epochs=12
    python bench/bench_tune.py throughput --trials 8          # trials per hour, 1 and 2 Dask workers
    python bench/bench_tune.py replay --home DIR --study glucose   # pruners on an unpruned study's trials
    python bench/bench_tune.py same --home DIR --task glucose --set train.epochs=12   # ... trained again

quality     studies of the same task and seed, by default with the median pruner and with none
            (`--pruners median halving none` adds successive halving): the
            settings the study starts from (trial 0: the defaults) against the best trial on
            the validation metric the study optimises; the epochs each study trained; and, for
            information only (the test split chooses nothing), the test metric of the default
            trial and of the best settings retrained through the gate. The issue's bar: the
            best beats the default; pruning trains >= 40% fewer epochs with a best validation
            metric within 1% of the unpruned study's.
throughput  the same small study (stocks, one series, 3 epochs) on a Dask LocalCluster of 1
            and of 2 single-threaded workers: trials per hour of wall time, the command's own
            start (a temporary Prefect API, the cluster) included.
replay      the pruners on *the same trials*: a finished study run without a pruner (`quality`
            prints the home of each study it runs; or any `rnnpipe tune --pruner none` study) holds
            every trial's validation loss at every epoch. Its trials are replayed in their order
            through Optuna's own pruners (`rnnpipe.tune.make_pruner`, and the median pruner at
            other warm-ups), on `--workers` simulated workers that each take the next trial
            when free, an epoch taking the time it took in the study (so a trial is judged
            against the trials finished by then, as in a real parallel study). Which trials
            are pruned, the epochs trained and the best finished trial, against the unpruned
            study's. What it cannot show: a pruned study's sampler sees pruned trials and
            proposes other settings after the first one (`quality` measures that, one seed at
            a time).
same        the same trials trained again, for real, with a pruner: a new study (in a fresh
            RNNPIPE_HOME) is given the unpruned study's settings in their order (Optuna's
            `enqueue_trial`), then `rnnpipe tune ... --pruner median` runs it with the
            unpruned study's workers and `--set`s. A trial trains with the same seed and
            thread count as before, so its curve is the same until the pruner stops it: what
            the pruner saves and keeps on exactly those trials, measured.

Each study runs in a fresh RNNPIPE_HOME; results go to stdout and bench/results/tune-<time>.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import write_results  # noqa: E402

TASKS = {
    # the bundled glucose series as a forecasting task (configs/glucose-forecast.toml)
    "glucose": ["stocks", "--config", str(ROOT / "configs" / "glucose-forecast.toml")],
    "reviews": ["reviews"],
    "stocks": ["stocks"],  # the bundled AAPL/IBM/MSFT closes
}
SMALL = ["--set", "data.series=[AAPL]", "--set", "train.epochs=3", "--set", "model.num_layers=1"]
SMALL_SPACE = '[tune.space]\n"model.hidden_size" = "int 8 32 log"\n"train.lr" = "float 0.0003 0.01 log"\n'


def run_study(args: list[str], home: Path) -> tuple[float, str]:
    env = {**os.environ, "RNNPIPE_HOME": str(home)}
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "rnnpipe.cli", "-q", "tune", *args], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"rnnpipe tune failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return wall, out.stdout


def study_figures(home: Path, name: str) -> dict:
    """From the study's storage and the MLflow store: states, epochs, the default and the best."""
    import optuna
    from mlflow.tracking import MlflowClient

    os.environ["RNNPIPE_HOME"] = str(home)
    import mlflow

    from rnnpipe import settings

    mlflow.set_tracking_uri(settings.tracking_uri())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{home / 'mlruns' / 'optuna.db'}")
    metric = study.user_attrs["metric"]
    test = "test_" + metric.removeprefix("val_")
    client = MlflowClient()
    runs = {}
    for exp in client.search_experiments():
        for r in client.search_runs([exp.experiment_id], max_results=1000):
            runs[r.info.run_id] = r
    by_trial = {
        int(r.data.tags["tune_trial"]): r
        for r in runs.values()
        if r.data.tags.get("tune_study") == name and "tune_trial" in r.data.tags
    }
    base = next((t for t in study.trials if t.user_attrs.get("base_settings")), None)
    parent = next(r for r in runs.values() if r.data.tags.get("tune") == "true")
    retrained = runs.get(parent.data.tags.get("best_run_id", ""))
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    best = study.best_trial
    return {
        "metric": metric,
        "direction": study.direction.name.lower(),
        "states": states,
        "epochs": sum(len(t.intermediate_values) for t in study.trials),
        # a pruned trial's value is its last intermediate (a loss), not the metric: none then
        "base_value": base.value if base is not None and base.state.name == "COMPLETE" else None,
        "best_value": best.value,
        "best_trial": best.number,
        "best_params": best.params,
        f"base_{test}": by_trial[base.number].data.metrics.get(test) if base is not None else None,
        f"tuned_{test}": retrained.data.metrics.get(test) if retrained else None,
    }


def quality(args) -> dict:
    out = {}
    for pruner in args.pruners:
        home = Path(tempfile.mkdtemp(prefix=f"rnnpipe-tune-{pruner}-"))
        cmd = [*TASKS[args.task], "--trials", str(args.trials), "--runner", "local", "--workers", str(args.workers)]
        cmd += ["--pruner", pruner, "--study", args.task, "--timeout", str(args.timeout), *args.extra]
        print(f"{args.task} pruner={pruner}: study in RNNPIPE_HOME={home}", flush=True)
        wall, stdout = run_study(cmd, home)
        figures = {"wall_s": wall, **study_figures(home, args.task), "tail": stdout.strip().splitlines()[-5:]}
        out[pruner] = figures
        base, best = figures["base_value"], figures["best_value"]
        if base is None:
            verdict, shown = "the default trial was pruned", "pruned"
        else:
            better = best < base if figures["direction"] == "minimize" else best > base
            verdict, shown = ("beats" if better else "does not beat") + " the default", f"{base:.5g}"
        print(
            f"{args.task} pruner={pruner:6}: {figures['states']}, {figures['epochs']} epochs, {wall / 60:.1f} min; "
            f"{figures['metric']} default {shown} -> best {best:.5g} ({verdict})",
            flush=True,
        )
    n = out.get("none")
    for pruner in (q for q in args.pruners if q != "none" and n is not None):
        p = out[pruner]
        out[f"pruning_{pruner}"] = {
            "epochs_saved": 1 - p["epochs"] / n["epochs"],
            "best_gap": abs(p["best_value"] - n["best_value"]) / abs(n["best_value"]),
        }
        print(
            f"{pruner} pruning trained {100 * out[f'pruning_{pruner}']['epochs_saved']:.0f}% fewer epochs; best "
            f"{p['metric']} {p['best_value']:.5g} vs unpruned {n['best_value']:.5g} "
            f"({100 * out[f'pruning_{pruner}']['best_gap']:.2f}% apart)"
        )
    return out


def throughput(args) -> dict:
    out = {}
    space = Path(tempfile.mkdtemp()) / "space.toml"
    space.write_text(SMALL_SPACE)
    for workers in (1, 2):
        home = Path(tempfile.mkdtemp(prefix=f"rnnpipe-tune-dask{workers}-"))
        cmd = ["stocks", *SMALL, "--space", str(space), "--trials", str(args.trials), "--pruner", "none"]
        cmd += ["--runner", "dask", "--workers", str(workers)]
        wall, _ = run_study(cmd, home)
        rate = 3600 * args.trials / wall
        out[f"dask_{workers}"] = {"wall_s": wall, "trials": args.trials, "trials_per_hour": rate}
        print(f"dask, {workers} worker(s): {args.trials} trials in {wall:.0f} s = {rate:.0f} trials/h")
    return out


def replay_pruner(trials: list, direction: str, pruner, workers: int) -> dict:
    """Replay finished trials (each with its per-epoch intermediate values and epoch time)
    through `pruner` on `workers` simulated workers; what it prunes and what it keeps."""
    import heapq

    import optuna

    study = optuna.create_study(direction=direction, pruner=pruner)
    events: list[tuple[float, int, int]] = []  # (time, order, trial index): its next epoch ends
    live: dict[int, tuple] = {}  # trial index -> (optuna trial, its steps, epoch time)
    queue = iter(range(len(trials)))
    epochs, kept, order = 0, [], 0
    stopped: dict[int, int] = {}  # a pruned trial's number -> the epochs it trained

    def start(now: float) -> None:
        nonlocal order
        i = next(queue, None)
        if i is None:
            return
        t = trials[i]
        steps = sorted(t.intermediate_values)
        live[i] = (study.ask(), steps, (t.datetime_complete - t.datetime_start).total_seconds() / len(steps))
        heapq.heappush(events, (now + live[i][2], order, i))
        order += 1

    for _ in range(workers):
        start(0.0)
    done_at: dict[int, int] = {}
    while events:
        now, _, i = heapq.heappop(events)
        trial, steps, dt = live[i]
        k = done_at.get(i, 0)
        trial.report(trials[i].intermediate_values[steps[k]], steps[k])
        epochs += 1
        done_at[i] = k + 1
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            stopped[trials[i].number] = k + 1
        elif k + 1 == len(steps):
            study.tell(trial, trials[i].value)
            kept.append(trials[i])
        else:
            heapq.heappush(events, (now + dt, order, i))
            order += 1
            continue
        start(now)
    pick = min if direction == "minimize" else max
    best = pick(kept, key=lambda t: t.value)
    return {"epochs": epochs, "pruned": stopped, "best_value": best.value, "best_trial": best.number}


def replay(args) -> dict:
    import optuna

    from rnnpipe.tune import make_pruner

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    db = Path(args.home) / "mlruns" / "optuna.db"
    study = optuna.load_study(study_name=args.study, storage=f"sqlite:///{db}")
    trials = sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.number)
    trials = trials[: args.trials or None]
    direction = study.direction.name.lower()
    pick = min if direction == "minimize" else max
    best = pick(trials, key=lambda t: t.value)
    full = sum(len(t.intermediate_values) for t in trials)
    print(f"{args.study}: {len(trials)} finished trials, {full} epochs, best {best.value:.5g} (trial {best.number})")
    pruners = {"median (default)": make_pruner("median"), "halving": make_pruner("halving")}
    for warmup in (1, 3, 4):
        pruners[f"median, warm-up {warmup}"] = make_pruner("median", warmup)
    out = {"trials": len(trials), "epochs": full, "best_value": best.value, "best_trial": best.number, "pruners": {}}
    for name, pruner in pruners.items():
        r = replay_pruner(trials, direction, pruner, args.workers)
        r["epochs_saved"] = 1 - r["epochs"] / full
        r["best_gap"] = abs(r["best_value"] - best.value) / abs(best.value)
        out["pruners"][name] = r
        fate = f"pruned after {r['pruned'][best.number]}" if best.number in r["pruned"] else "kept"
        print(
            f"  {name:20}: {len(r['pruned']):2} pruned, {r['epochs']:4} epochs ({100 * r['epochs_saved']:.0f}% fewer), "
            f"best {r['best_value']:.5g} (trial {r['best_trial']}, {100 * r['best_gap']:.2f}% from the unpruned best; "
            f"trial {best.number} {fate})"
        )
    return out


def same(args) -> dict:
    """The unpruned study's trials, enqueued in order into a new study, run with a pruner."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    src_db = Path(args.home) / "mlruns" / "optuna.db"
    src = optuna.load_study(study_name=args.task, storage=f"sqlite:///{src_db}")
    trials = sorted((t for t in src.trials if t.state.name == "COMPLETE"), key=lambda t: t.number)
    home = Path(tempfile.mkdtemp(prefix=f"rnnpipe-tune-same-{args.pruner}-"))
    (home / "mlruns").mkdir()
    study = optuna.create_study(
        study_name=args.task, storage=f"sqlite:///{home / 'mlruns' / 'optuna.db'}", direction=src.direction
    )
    for key, value in {**src.user_attrs, "pruner": args.pruner}.items():
        study.set_user_attr(key, value)
    for t in trials:
        study.enqueue_trial(t.params, user_attrs={k: v for k, v in t.user_attrs.items() if k == "base_settings"})
    print(f"{args.task}: {len(trials)} trials of {src_db} enqueued; pruner={args.pruner}, RNNPIPE_HOME={home}")
    cmd = [*TASKS[args.task], "--trials", str(len(trials)), "--runner", "local", "--workers", str(args.workers)]
    cmd += ["--pruner", args.pruner, "--study", args.task, *args.extra]
    wall, stdout = run_study(cmd, home)
    figures = {"wall_s": wall, **study_figures(home, args.task), "tail": stdout.strip().splitlines()[-5:]}
    ran = optuna.load_study(study_name=args.task, storage=f"sqlite:///{home / 'mlruns' / 'optuna.db'}")
    runs = {t.number: t for t in ran.trials}  # the new study's trial k ran the source's k-th trial
    assert all(runs[i].params == t.params for i, t in enumerate(trials)), "a trial ran other settings"
    full = sum(len(t.intermediate_values) for t in trials)
    best = min(t.value for t in trials) if src.direction.name == "MINIMIZE" else max(t.value for t in trials)
    figures["source"] = {"epochs": full, "best_value": best, "home": str(args.home)}
    figures["epochs_saved"] = 1 - figures["epochs"] / full
    figures["best_gap"] = abs(figures["best_value"] - best) / abs(best)
    print(
        f"{args.pruner} on the same {len(trials)} trials: {figures['states']}, {figures['epochs']} epochs against "
        f"{full} ({100 * figures['epochs_saved']:.0f}% fewer) in {wall / 60:.1f} min; best {figures['best_value']:.5g} "
        f"(trial {figures['best_trial']}) against {best:.5g} ({100 * figures['best_gap']:.2f}% apart)"
    )
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--task", choices=sorted(TASKS), default="glucose")
    q.add_argument("--trials", type=int, default=30)
    q.add_argument("--workers", type=int, default=2)
    q.add_argument(
        "--pruners",
        nargs="+",
        choices=["median", "halving", "none"],
        default=["median", "none"],
        help="the studies to run, each against the one without a pruner (when 'none' is among them)",
    )
    q.add_argument("--set", dest="extra", action="append", default=[], type=lambda s: f"--set={s}")
    q.add_argument(
        "--timeout", type=float, default=0, help="each study starts no trial after this many seconds (0: no limit)"
    )
    t = sub.add_parser("throughput")
    t.add_argument("--trials", type=int, default=8)
    r = sub.add_parser("replay")
    r.add_argument("--home", required=True, help="the RNNPIPE_HOME of a finished study run with --pruner none")
    r.add_argument("--study", required=True, help="its --study name")
    r.add_argument("--workers", type=int, default=2, help="simulated workers (the study's own: 2)")
    r.add_argument("--trials", type=int, default=0, help="only its first N finished trials (0: all)")
    m = sub.add_parser("same")
    m.add_argument("--home", required=True, help="the RNNPIPE_HOME of a finished study run with --pruner none")
    m.add_argument("--task", choices=sorted(TASKS), default="glucose", help="its task (and --study name)")
    m.add_argument("--pruner", choices=["median", "halving"], default="median")
    m.add_argument("--workers", type=int, default=2)
    m.add_argument("--set", dest="extra", action="append", default=[], type=lambda s: f"--set={s}")
    args = ap.parse_args()
    res = {"quality": quality, "throughput": throughput, "replay": replay, "same": same}[args.mode](args)
    write_results("tune", {"mode": args.mode, "args": vars(args), "results": res})


if __name__ == "__main__":
    main()
