"""Benchmarks of the forecasting pipeline. Figures, not assertions.

    python bench/bench_forecast.py                  # all sections, CPU or the GPU if present
    python bench/bench_forecast.py --device cuda --skip-flow
    python bench/bench_forecast.py --only highway   # one section

Sections:
  windowing  zero-copy windows (strided view + per-batch gather) against a Python loop that
             materialises every window, on the bundled stocks and on a synthetic 1M-row set
  training   samples/s of the fit loop on the bundled stocks (default model)
  flow       wall time of the whole Prefect flow (ephemeral API, MLflow logging, registration)
             against the bare training loop on the same data and epochs
  highway    model.highway=none vs linear with the defaults on every bundled set: the stocks,
             glucose (30 min) and ECG (6 steps) forecasters against ridge and naive, and the
             early-warning classifiers (glucose, synthetic vitals) against logreg; validation
             figures choose the default (test figures are reported, never used), plus the
             training samples/s with and without the linear part
  statistical  the StatsForecast baselines (AutoETS, AutoTheta) on every bundled forecasting
             set: fit time per series, forecast time per origin, val MAE (what may choose the
             cap) and test MAE, for each per-origin history cap of --histories (baselines.history;
             default 3000) and, with --all-history, the whole history
  intervals  the quantile band (model.quantiles=[0.1, 0.5, 0.9]) on every bundled forecasting
             set: val and test coverage_80 and pinball of the model, of naive with empirical
             quantiles and of the StatsForecast intervals (AutoETS, AutoTheta)
  recipes    (only with --only recipes) every bundled series at one step and one day ahead
             (configs/*-day-ahead.toml): the model trained jointly (before), with the residual
             recipe (the default), and without calendar inputs, against ridge, gradient
             boosting, AutoETS and naive, val and test MAE, best_epoch and training time; the
             variant with the lowest mean val MAE relative to ridge is the default
  backtest   `rnnpipe backtest stocks` (5 folds of 60 days, refit every fold) through the
             Prefect flow with --runner local (2 processes) and sequential: wall time, and the
             overall MAE of the model and every baseline

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

from rnnpipe.config import load_config, to_dict  # noqa: E402
from rnnpipe.features.splits import chronological_split  # noqa: E402
from rnnpipe.features.windows import WindowSet, make_windows  # noqa: E402
from rnnpipe.pipelines.forecast.artefact import ForecastPipeline, baseline_settings  # noqa: E402
from rnnpipe.pipelines.forecast.config import ForecastConfig  # noqa: E402
from rnnpipe.pipelines.forecast.data import load_forecast_data  # noqa: E402
from rnnpipe.pipelines.forecast.evaluation import evaluate_forecasts  # noqa: E402
from rnnpipe.pipelines.forecast.prepare import prepare  # noqa: E402
from rnnpipe.pipelines.monitor.config import MonitorConfig  # noqa: E402
from rnnpipe.pipelines.monitor.data import load_monitor_data  # noqa: E402
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
        return np.stack([values[t - lookback + 1 : t + 1] for t in ends])

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
    return {
        "data": label,
        "rows": len(values),
        "features": values.shape[1],
        "windows": len(ends),
        "lookback": lookback,
        "loop_s": t_loop,
        "loop_peak_mb": peak_bytes(loop) / 2**20,
        "view_s": t_view,
        "view_peak_mb": peak_bytes(view) / 2**20,
        "view_shares_memory": bool(np.shares_memory(v, values)),
        "gather_one_epoch_s": t_epoch,
        "materialised_mb": windows.nbytes / 2**20,
    }


def stocks_prepared(cfg):
    frame = load_forecast_data(cfg)
    return prepare(frame, chronological_split(frame, cfg.split.train, cfg.split.val), cfg)


def bare_training(cfg) -> tuple[float, dict]:
    t0 = time.perf_counter()
    p = stocks_prepared(cfg)
    pipe = ForecastPipeline(cfg, p.preprocessor)
    result = fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, progress=False)
    return time.perf_counter() - t0, {
        "samples_per_s": result.samples_per_s,
        "device": result.device,
        "precision": result.precision,
        "epochs": len(result.history),
        "train_windows": len(p.ends["train"]),
    }


# -- highway: the linear part, with and without -------------------------------------------

# the bundled ECG excerpt through the stocks pipeline, with a column mapping only
ECG = [
    "data.path=data/ecg.parquet",
    "data.series_col=record",
    "data.timestamp_col=timestamp",
    "data.target_col=ecg_mv",
    "data.series=[]",
    "window.target=diff",
    "window.horizon=6",
]
SYNTH = [
    "data.channels=heart_rate,spo2,resp_rate,sbp,temperature",
    'data.event=""',
    "data.label_col=deterioration",
    "resample.step=1min",
    "resample.max_gap=5min",
    "forecast.channel=heart_rate",
]


def forecast_sets(device: str) -> dict:
    """name -> (ForecastConfig, ForecastPrepared) of each bundled forecasting set, with the defaults."""
    from rnnpipe.pipelines.monitor.artefact import prepare_monitor
    from rnnpipe.pipelines.monitor.channel_forecast import prepare_channel_forecast

    out = {}
    for name, overrides in (("stocks", []), ("ecg", ECG)):
        cfg = load_config(ForecastConfig, overrides=overrides + [f"train.device={device}"])
        out[name] = (cfg, stocks_prepared(cfg))
    mc = load_config(MonitorConfig, overrides=[f"train.device={device}"])
    out["glucose"] = prepare_channel_forecast(prepare_monitor(load_monitor_data(mc), mc), mc)
    return out


def with_highway(cfg, highway: str):
    import dataclasses

    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, highway=highway))


def bench_highway_forecasters(device: str) -> list[dict]:
    rows = []
    for name, (base, p) in forecast_sets(device).items():
        for hw in ("none", "linear"):
            cfg = with_highway(base, hw)
            pipe = ForecastPipeline(cfg, p.preprocessor)
            t0 = time.perf_counter()
            r = fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, progress=False)
            wall = time.perf_counter() - t0
            ev = evaluate_forecasts(pipe, p)
            v, t = ev["val"].metrics, ev["test"].metrics
            rows.append(
                {
                    "set": name,
                    "highway": hw,
                    "best_epoch": r.best_epoch,
                    "epochs": len(r.history),
                    "samples_per_s": r.samples_per_s,
                    "fit_s": wall,
                    "warm_start_s": r.warm_start.get("warm_start_s", 0.0),
                    **{k: v[k] for k in ("val_mae", "ridge_val_mae", "naive_val_mae")},
                    **{
                        k: t[k]
                        for k in (
                            "test_mae",
                            "ridge_test_mae",
                            "naive_test_mae",
                            "test_mae_vs_naive",
                            "test_mae_vs_ridge",
                        )
                    },
                }
            )
            print(
                f"  {name:8} highway={hw:6} val MAE {v['val_mae']:.4f}  test MAE {t['test_mae']:.4f} "
                f"(ridge {t['ridge_test_mae']:.4f}, naive {t['naive_test_mae']:.4f})  "
                f"{r.samples_per_s:,.0f} samples/s",
                flush=True,
            )
    return rows


def bench_highway_classifiers(device: str) -> list[dict]:
    from rnnpipe.pipelines.monitor.artefact import (
        MonitorPipeline,
        classification_loss,
        evaluate_monitor,
        prepare_monitor,
    )
    from rnnpipe.synth import write_synthetic_vitals

    synth = Path(tempfile.mkdtemp(prefix="vitals-")) / "vitals"
    write_synthetic_vitals(synth, 40, 24, 0, 250)  # `rnnpipe data synth-vitals --patients 40`
    rows = []
    for name, overrides in (("glucose", []), ("synth-vitals-40", [f"data.path={synth}", *SYNTH])):
        base = load_config(MonitorConfig, overrides=overrides + [f"train.device={device}"])
        p = prepare_monitor(load_monitor_data(base), base)
        for hw in ("none", "linear"):
            cfg = with_highway(base, hw)
            pipe = MonitorPipeline(cfg, p.preprocessor)
            r = fit(
                pipe.model,
                p.windows("train"),
                p.windows("val"),
                cfg.train,
                loss_fn=classification_loss(cfg, p),
                progress=False,
            )
            m = evaluate_monitor(pipe, p)
            rows.append(
                {
                    "set": name,
                    "highway": hw,
                    "best_epoch": r.best_epoch,
                    "best_val_loss": r.best_val_loss,
                    "samples_per_s": r.samples_per_s,
                    **{
                        k: m[k]
                        for k in (
                            "val_pr_auc_onset",
                            "val_f1_onset",
                            "test_f1_onset",
                            "logreg_test_f1_onset",
                            "rule_test_f1_onset",
                            "test_pr_auc_onset",
                        )
                    },
                }
            )
            print(
                f"  {name:16} highway={hw:6} val loss {r.best_val_loss:.5f}  test onset F1 "
                f"{m['test_f1_onset']:.4f} (logreg {m['logreg_test_f1_onset']:.4f})",
                flush=True,
            )
    return rows


# -- recipes: what the recurrent part adds, on every bundled series at both horizons ------

CONFIGS = ROOT / "configs"
RECIPE_SETS = {  # name -> (overrides of the stocks pipeline's defaults, or None: the monitor's forecaster)
    "stocks h1": [],
    "ecg h6": ECG,
    "glucose h6": None,
    "weather h1": [f"--config={CONFIGS / 'weather-day-ahead.toml'}", "window.horizon=1"],
    "weather h24": [f"--config={CONFIGS / 'weather-day-ahead.toml'}"],
    "electricity h1": [f"--config={CONFIGS / 'electricity-day-ahead.toml'}", "window.horizon=1"],
    "electricity h48": [f"--config={CONFIGS / 'electricity-day-ahead.toml'}"],
}
RECIPE_VARIANTS = {
    "model": ["model.recipe=joint"],
    "model+recipe": ["model.recipe=residual"],
    "model+recipe-calendar": ["model.recipe=residual", "data.calendar=none"],
    "model+recipe-trained": ["model.recipe=residual", "model.linear_lr_mult=1.0"],
    "model+recipe-unstacked": ["model.recipe=residual", "model.stacked=false", "train.lr=1e-3"],
}


def recipe_config(name: str, extra: list[str], device: str):
    overrides = RECIPE_SETS[name]
    if overrides is None:
        from rnnpipe.pipelines.monitor.channel_forecast import channel_forecast_config

        mc = load_config(MonitorConfig, overrides=[f"train.device={device}"])
        base = to_dict(channel_forecast_config(mc))
        from rnnpipe.config import apply_overrides, from_dict

        return from_dict(ForecastConfig, apply_overrides(base, extra)).validate(), mc
    config = [o.split("=", 1)[1] for o in overrides if o.startswith("--config=")]
    sets = [o for o in overrides if not o.startswith("--config=")]
    return load_config(ForecastConfig, config[0] if config else None, sets + extra + [f"train.device={device}"]), None


def bench_recipes(device: str, sets: list[str], variants: list[str]) -> list[dict]:
    """Each set and variant trained once (one seed) with its baselines: val and test MAE of
    the model, ridge, gradient boosting, AutoETS, naive; best_epoch; training wall time."""
    from rnnpipe.pipelines.monitor.artefact import prepare_monitor
    from rnnpipe.pipelines.monitor.channel_forecast import prepare_channel_forecast

    rows = []
    for name in sets:
        for variant in variants:
            cfg, mc = recipe_config(name, RECIPE_VARIANTS[variant], device)
            if mc is not None:  # the monitor's grid and split, with this variant's settings
                _, p = prepare_channel_forecast(prepare_monitor(load_monitor_data(mc), mc), mc)
                p = prepare(p.frame, p.split, cfg)
            else:
                p = stocks_prepared(cfg)
            pipe = ForecastPipeline(cfg, p.preprocessor)
            t0 = time.perf_counter()
            r = fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, progress=False)
            wall = time.perf_counter() - t0
            ev = evaluate_forecasts(pipe, p, **baseline_settings(cfg))
            row = {
                "set": name,
                "variant": variant,
                "best_epoch": r.best_epoch,
                "epochs": len(r.history),
                "fit_s": wall,
                "calendar": p.preprocessor.calendar_,
                "train_windows": len(p.ends["train"]),
                "initial_val_loss": r.initial_val_loss,
                "best_val_loss": r.best_val_loss,
            }
            for part in ("val", "test"):
                m = ev[part].metrics
                for method in ("", "ridge", "gbm", "autoets", "autotheta", "naive"):
                    key = f"{method + '_' if method else ''}{part}_mae"
                    row[key] = m.get(key, float("nan"))
            rows.append(row)
            print(
                f"  {name:16} {variant:22} val {row['val_mae']:.4f} (ridge {row['ridge_val_mae']:.4f}, gbm "
                f"{row['gbm_val_mae']:.4f})  test {row['test_mae']:.4f} (ridge {row['ridge_test_mae']:.4f}, gbm "
                f"{row['gbm_test_mae']:.4f}, autoets {row['autoets_test_mae']:.4f}, naive {row['naive_test_mae']:.4f})"
                f"  best_epoch {r.best_epoch}/{len(r.history)}  {wall:.0f} s",
                flush=True,
            )
    return rows


def choose_recipe(rows: list[dict]) -> dict:
    """The variant with the lowest mean validation MAE relative to ridge over the sets: the
    choice of the defaults, made on validation (test figures are reported, never used)."""
    by_variant: dict[str, list[float]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r["val_mae"] / r["ridge_val_mae"])
    means = {v: float(np.mean(x)) for v, x in by_variant.items()}
    return {"mean_val_mae_vs_ridge": means, "chosen": min(means, key=means.get)}


def bench_statistical(device: str, all_history: bool = False, histories: tuple[str, ...] = ("3000",)) -> list[dict]:
    """AutoETS and AutoTheta from every val and test origin at each per-origin history cap
    (`baselines.history`; 0 = all): time per origin, val MAE (what a choice of the cap may
    read) and test MAE (reported)."""
    from rnnpipe.pipelines.forecast.baselines import StatisticalForecast

    rows = []
    caps = tuple(dict.fromkeys([*histories, *(("0",) if all_history else ())]))
    for name, (_cfg, p) in forecast_sets(device).items():
        H = p.preprocessor.horizon
        n = len(p.frame.series)
        for model in ("autoets", "autotheta"):
            for history in caps:
                fit_history, _, forward = str(history).partition("/")
                b = StatisticalForecast(
                    model, history=int(fit_history), forward_history=int(forward) if forward else None
                ).fit(p.frame, p.split)
                row = {
                    "set": name,
                    "model": model,
                    "history": history if history != "0" else "all",
                    "series": n,
                    "fit_s_per_series": b.fit_seconds_ / n,
                    "fallback_series": len(b.fallback_series),
                }
                for part in ("val", "test"):
                    ends = p.ends[part]
                    actual = p.frame.target[ends[:, None] + np.arange(1, H + 1)]
                    t0 = time.perf_counter()
                    fc = b.forecast(p, ends)
                    wall = time.perf_counter() - t0
                    row.update(
                        {
                            f"{part}_origins": len(ends),
                            f"{part}_ms_per_origin": 1000 * wall / len(ends),
                            f"{part}_mae": float(np.mean(np.abs(fc - actual))),
                        }
                    )
                rows.append(row)
                print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows


def bench_intervals(device: str) -> list[dict]:
    rows = []
    for name, (cfg, p) in forecast_sets(device).items():
        pipe = ForecastPipeline(cfg, p.preprocessor)
        t0 = time.perf_counter()
        r = fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, progress=False)
        wall = time.perf_counter() - t0
        ev = evaluate_forecasts(pipe, p, **baseline_settings(cfg))
        row = {"set": name, "fit_s": wall, "band_fit_s": r.band.get("band_fit_s", 0.0)}
        for part in ("val", "test"):
            m = ev[part].metrics
            for method in ("", "naive", "autoets", "autotheta"):
                pre = f"{method}_" if method else ""
                for score in ("pinball", "coverage_80", "interval_width"):
                    row[f"{pre}{part}_{score}"] = m.get(f"{pre}{part}_{score}", float("nan"))
            row[f"{part}_mae_vs_naive"] = m[f"{part}_mae_vs_naive"]
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows


def bench_backtest(workers: int = 2) -> list[dict]:
    from rnnpipe.flows.backtest import backtest
    from rnnpipe.flows.sweep import task_runner

    cfg = to_dict(load_config(ForecastConfig, overrides=["register.experiment=bench-backtest"]))
    rows = []
    for runner, n in (("local", workers), ("sequential", 1)):
        threads = max(1, (os.cpu_count() or 1) // n)
        t0 = time.perf_counter()
        out = backtest.with_options(task_runner=task_runner(runner, n))(cfg, n, threads, runner)
        rows.append(
            {
                "runner": runner,
                "workers": n,
                "threads_per_fold": threads,
                "wall_s": time.perf_counter() - t0,
                **{k: v for k, v in out["metrics"].items() if k.endswith("backtest_mae")},
            }
        )
        print(rows[-1], flush=True)
    return rows


def choose(rows: list[dict], key: str) -> dict:
    """The default that wins on validation across every set: the geometric mean over sets of
    the ratio linear / none of `key` (lower is better)."""
    ratios = {}
    for r in rows:
        if r["highway"] == "linear":
            none = next(x for x in rows if x["set"] == r["set"] and x["highway"] == "none")
            ratios[r["set"]] = r[key] / none[key]
    gmean = float(np.exp(np.mean(np.log(list(ratios.values())))))
    return {
        "key": key,
        "ratio_linear_vs_none": ratios,
        "geometric_mean": gmean,
        "winner": "linear" if gmean < 1 else "none",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--skip-flow", action="store_true", help="skip the Prefect flow section")
    ap.add_argument(
        "--histories",
        nargs="+",
        default=["3000"],
        metavar="N[/M]",
        help="statistical: the caps to compare: N points to fit on and read from each origin "
        "(baselines.history), or N to fit on and M from each origin (baselines.forward_history)",
    )
    ap.add_argument(
        "--all-history",
        action="store_true",
        help="statistical: also with the whole history from every origin (minutes on glucose)",
    )
    ap.add_argument("--synthetic-rows", type=int, default=1_000_000)
    ap.add_argument(
        "--only",
        choices=["windowing", "training", "highway", "statistical", "intervals", "backtest", "recipes"],
        help="run one section (training includes the flow unless --skip-flow)",
    )
    ap.add_argument(
        "--sets",
        nargs="+",
        default=list(RECIPE_SETS),
        choices=list(RECIPE_SETS),
        metavar="SET",
        help="recipes: the sets (default: all)",
    )
    ap.add_argument(
        "--variants",
        nargs="+",
        default=list(RECIPE_VARIANTS)[:3],
        choices=list(RECIPE_VARIANTS),
        help="recipes: model = the joint recipe (before), model+recipe = the defaults, "
        "model+recipe-calendar = without calendar inputs, model+recipe-trained = the "
        "linear part trained on from its fit at the full rate, model+recipe-unstacked = the "
        "defaults before model.stacked (and the stocks pipeline's lr 3e-3)",
    )
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    results: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        }
    }

    def run(section: str) -> bool:
        return args.only in (None, section)

    if run("windowing"):
        cfg = load_config(ForecastConfig)
        p = stocks_prepared(cfg)
        rows = [
            bench_windowing(p.inputs, np.concatenate(list(p.ends.values())), cfg.window.lookback, "stocks (3 series)")
        ]
        rng = np.random.default_rng(0)
        synth = rng.normal(size=(args.synthetic_rows, 4)).astype(np.float32)
        ends = np.arange(59, args.synthetic_rows - 1)
        rows.append(bench_windowing(synth, ends, 60, f"synthetic {args.synthetic_rows:,} rows"))
        results["windowing"] = rows

    if run("training"):
        overrides = [
            f"train.epochs={args.epochs}",
            f"train.patience={args.epochs + 1}",
            f"train.device={args.device}",
            "register.experiment=bench",
            "register.model_name=bench-forecaster",
        ]
        cfg = load_config(ForecastConfig, overrides=overrides)
        (s1, _), (s2, train_info) = bare_training(cfg), bare_training(cfg)  # the first one warms up
        bare_s = min(s1, s2)
        results["training"] = {**train_info, "bare_wall_s": bare_s}
        if not args.skip_flow:
            from rnnpipe.flows.forecast import train_stocks

            walls = []
            for _ in range(2):  # the first run of a process also starts the ephemeral Prefect API
                t0 = time.perf_counter()
                summary = train_stocks(config=to_dict(cfg))
                walls.append(time.perf_counter() - t0)
            results["flow"] = {
                "flow_cold_s": walls[0],
                "flow_warm_s": walls[1],
                "bare_wall_s": bare_s,
                "overhead_warm_s": walls[1] - bare_s,
                "test_mae_vs_naive": summary["test_mae_vs_naive"],
            }

    if run("highway"):
        print("highway: forecasters (defaults, one seed)", flush=True)
        fc = bench_highway_forecasters(args.device)
        print("highway: early-warning classifiers (defaults, one seed)", flush=True)
        cl = bench_highway_classifiers(args.device)
        results["highway"] = {
            "forecasters": fc,
            "classifiers": cl,
            "choice_forecasters": choose(fc, "val_mae"),
            "choice_classifiers": choose(cl, "best_val_loss"),
        }

    if run("statistical"):
        results["statistical"] = bench_statistical(args.device, args.all_history, tuple(args.histories))

    if run("intervals"):
        results["intervals"] = bench_intervals(args.device)

    if run("backtest"):
        results["backtest"] = bench_backtest()

    if args.only == "recipes":  # long (about 30 minutes on 2 cores): only when asked for
        rows = bench_recipes(args.device, args.sets, args.variants)
        results["recipes"] = {"rows": rows, "choice": choose_recipe(rows)}
        print(f"\nrecipes, test MAE (val MAE) and best_epoch; chosen on validation: {results['recipes']['choice']}")
        print(
            f"{'set':16} {'variant':22} {'model':>18} {'ridge':>18} {'gbm':>18} {'autoets':>10} {'naive':>10} "
            f"{'best_epoch':>10} {'fit s':>6}"
        )
        for r in rows:
            print(
                f"{r['set']:16} {r['variant']:22} {r['test_mae']:>8.4f} ({r['val_mae']:>7.4f}) "
                f"{r['ridge_test_mae']:>8.4f} ({r['ridge_val_mae']:>7.4f}) {r['gbm_test_mae']:>8.4f} "
                f"({r['gbm_val_mae']:>7.4f}) {r['autoets_test_mae']:>10.4f} {r['naive_test_mae']:>10.4f} "
                f"{r['best_epoch']:>4}/{r['epochs']:<5} {r['fit_s']:>6.0f}"
            )

    # -- report ------------------------------------------------------------------------------
    if "windowing" in results:
        print("\nwindowing (best of 3; peak = Python heap allocations during the call)")
        print(
            f"{'data':28} {'windows':>9} {'loop s':>8} {'loop MB':>8} {'view s':>9} {'view MB':>8} "
            f"{'epoch gather s':>14}"
        )
        for r in results["windowing"]:
            print(
                f"{r['data']:28} {r['windows']:>9,} {r['loop_s']:>8.3f} {r['loop_peak_mb']:>8.1f} "
                f"{r['view_s']:>9.6f} {r['view_peak_mb']:>8.3f} {r['gather_one_epoch_s']:>14.3f}"
            )
    if "training" in results:
        t = results["training"]
        print(
            f"\ntraining: {t['samples_per_s']:,.0f} samples/s on {t['device']} ({t['precision']}), "
            f"{t['epochs']} epochs of {t['train_windows']:,} windows"
        )
    if "flow" in results:
        f = results["flow"]
        print(
            f"flow: {f['flow_cold_s']:.1f} s first run (starts the ephemeral Prefect API), "
            f"{f['flow_warm_s']:.1f} s second run, vs {f['bare_wall_s']:.1f} s bare (load + prepare "
            f"+ fit); per-run overhead {f['overhead_warm_s']:.1f} s (tasks, MLflow logging, model "
            f"logging, registration)"
        )
    if "highway" in results:
        h = results["highway"]
        print("\nforecasters: MAE in the series' units (val chooses, test reports)")
        print(
            f"{'set':9} {'highway':8} {'val':>9} {'test':>9} {'ridge test':>10} {'naive test':>10} "
            f"{'vs ridge':>8} {'vs naive':>8} {'best ep':>7} {'samples/s':>10} {'warm s':>7}"
        )
        for r in h["forecasters"]:
            print(
                f"{r['set']:9} {r['highway']:8} {r['val_mae']:9.4f} {r['test_mae']:9.4f} "
                f"{r['ridge_test_mae']:10.4f} {r['naive_test_mae']:10.4f} {r['test_mae_vs_ridge']:8.4f} "
                f"{r['test_mae_vs_naive']:8.4f} {r['best_epoch']:7d} {r['samples_per_s']:10,.0f} "
                f"{r['warm_start_s']:7.2f}"
            )
        print("\nclassifiers: onset F1 on test (val loss chooses)")
        print(
            f"{'set':16} {'highway':8} {'val loss':>9} {'val PR-AUC':>10} {'test F1':>8} {'logreg':>8} "
            f"{'rule':>8} {'best ep':>7} {'samples/s':>10}"
        )
        for r in h["classifiers"]:
            print(
                f"{r['set']:16} {r['highway']:8} {r['best_val_loss']:9.5f} {r['val_pr_auc_onset']:10.4f} "
                f"{r['test_f1_onset']:8.4f} {r['logreg_test_f1_onset']:8.4f} {r['rule_test_f1_onset']:8.4f} "
                f"{r['best_epoch']:7d} {r['samples_per_s']:10,.0f}"
            )
        for what in ("choice_forecasters", "choice_classifiers"):
            c = h[what]
            print(
                f"{what}: linear/none {c['key']} per set "
                + ", ".join(f"{k} {v:.4f}" for k, v in c["ratio_linear_vs_none"].items())
                + f"; geometric mean {c['geometric_mean']:.4f} -> default {c['winner']}"
            )
    if "statistical" in results:
        print("\nstatistical baselines (history: points fitted on[/read from each origin]; MAE in the series' units)")
        print(
            f"{'set':9} {'model':10} {'history':>10} {'series':>6} {'fit s':>8} {'ms/origin':>9} "
            f"{'val MAE':>9} {'test MAE':>9}"
        )
        for r in results["statistical"]:
            print(
                f"{r['set']:9} {r['model']:10} {r['history']:>10} {r['series']:6d} {r['fit_s_per_series']:8.3f} "
                f"{r['test_ms_per_origin']:9.3f} {r['val_mae']:9.4f} {r['test_mae']:9.4f}"
            )
    if "intervals" in results:
        print("\nintervals: pinball (coverage_80) per method; val is where the band is calibrated")
        print(
            f"{'set':9} {'part':5} {'model':>16} {'naive emp.':>16} {'autoets':>16} {'autotheta':>16} {'MAE/naive':>9}"
        )
        for r in results["intervals"]:
            for part in ("val", "test"):
                cells = [
                    f"{r[f'{pre}{part}_pinball']:.4f} ({r[f'{pre}{part}_coverage_80']:.3f})"
                    for pre in ("", "naive_", "autoets_", "autotheta_")
                ]
                print(
                    f"{r['set']:9} {part:5} "
                    + " ".join(f"{c:>16}" for c in cells)
                    + f" {r[f'{part}_mae_vs_naive']:9.4f}"
                )
    if "backtest" in results:
        print("\nbacktest of stocks (5 folds x 60 days, refit every fold)")
        for r in results["backtest"]:
            print(
                f"  --runner {r['runner']:10} {r['workers']} x {r['threads_per_fold']} threads: "
                f"{r['wall_s']:.1f} s; MAE "
                + ", ".join(f"{k}: {v:.4f}" for k, v in r.items() if k.endswith("backtest_mae"))
            )
    write_results("forecast", results)


if __name__ == "__main__":
    main()
