"""Drift reports on the bundled data: false alarms, detection, and what the report costs.
Figures, not assertions.

    python bench/bench_drift.py alarms                 # every bundled data set (about 15 min)
    python bench/bench_drift.py alarms --sets stocks,reviews
    python bench/bench_drift.py overhead --rows 1000000 --repeats 3 --sets stocks,reviews

alarms    For each bundled data set: a model trained with its defaults (1 epoch: the profile
          of the data does not depend on the training, only the prediction part does), then
          batch jobs on (a) the validation part (series models; the settings of the report
          are judged here) and the test part as they are: a report other than `ok` is a
          false alarm on the model's own data; (b) the test part with one channel shifted by one
          standard deviation (the first extra feature of a forecaster that has one, else the
          target's one-step change, i.e. a trend; the monitor's first channel); for reviews,
          texts of another domain (the paragraphs of docs/). Status and the feature named first;
          in brackets the status against the thresholds alone (`drift.blocks = 0`, computed
          from the same rows).
overhead  The batch job with the drift report and without (`--no-drift`), alternating,
          `--repeats` times each: wall time and peak RSS of the process, for a stocks
          forecaster over `--rows` rows (series: the report parses each chunk again to compute
          one-step changes) and a reviews model over `--review-rows` texts (its features come
          from the predictions; the model predicts ~900 texts/s on 2 cores, so a million would
          take 20 minutes a job). Target: at most 10% more time.

Results go to stdout and to bench/results/drift-<kind>-<time>.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RNNPIPE_HOME", tempfile.mkdtemp(prefix="rnnpipe-bench-"))

from _results import write_results  # noqa: E402
from bench_forecast import ECG  # noqa: E402  (the bundled ECG excerpt as a forecasting set)

from rnnpipe import settings  # noqa: E402

settings.apply_environment()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

FAST = ["train.epochs=1"]
# name -> (kind, config file or None, overrides)
SETS = {
    "stocks": ("stocks", None, []),
    "ecg": ("stocks", None, ECG),
    "glucose-forecast": ("stocks", "configs/glucose-forecast.toml", []),
    "weather": ("stocks", "configs/weather-day-ahead.toml", []),
    "electricity": ("stocks", "configs/electricity-day-ahead.toml", []),
    "monitor": ("monitor", None, []),
    "reviews": ("reviews", None, []),
    "lm": ("lm", None, []),
}


def train(name: str) -> tuple[str, object]:
    """Train the set's model (registered under its own name); -> (model URI, config)."""
    from rnnpipe import kinds
    from rnnpipe.config import load_config, to_dict

    kind, path, overrides = SETS[name]
    k = kinds.get(kind)
    cfg = load_config(
        k.config_class(),
        path=str(ROOT / path) if path else None,
        overrides=[*overrides, *FAST, f"register.model_name=drift-{name}", f"register.experiment=drift-{name}"],
    )
    out = k.flow_function()(config=to_dict(cfg))
    return f"drift-{name}/{out['version']}", cfg


def test_part(kind: str, cfg, part: str = "test") -> tuple[pd.DataFrame, str]:
    """The raw rows of the set's test part (a series model's last `split.test` of each series,
    with one lookback of history before it), and the column to shift; with `part="val"`, a
    series model's validation part instead (None for text, whose profile is of validation)."""
    if kind in ("reviews", "lm") and part == "val":
        return None, ""
    if kind == "reviews":
        df = pd.read_parquet(ROOT / cfg.data.test_path)
        return df.rename(columns={cfg.data.text_col: "text"})[["text"]], ""
    if kind == "lm":  # prompts: openings of the test texts, as the profile takes them from validation
        return openings(pd.read_parquet(ROOT / cfg.data.test_path)[cfg.data.text_col]), ""
    d = cfg.data
    df = pd.read_parquet(ROOT / d.path)
    key = d.series_col or None
    lookback = cfg.window.lookback
    share = 1 - cfg.split.train - cfg.split.val

    def tail(g: pd.DataFrame) -> pd.DataFrame:
        g = g.sort_values(d.timestamp_col)
        start = len(g) - int(len(g) * share)
        if part == "val":
            return g.iloc[max(0, int(len(g) * cfg.split.train) - lookback) : start]
        return g.iloc[max(0, start - lookback) :]

    parts = [tail(g) for _, g in df.groupby(key)] if key else [tail(df)]
    out = pd.concat(parts, ignore_index=True)
    if kind == "monitor":
        return out, d.channels[0]
    return out, (d.features[0] if d.features else "")


def shifted(df: pd.DataFrame, column: str, cfg) -> pd.DataFrame:
    out = df.copy()
    if column:
        out[column] = out[column] + out[column].std()
        return out
    # the target's one-step change shifted by one standard deviation: a trend
    d = cfg.data
    key = d.series_col or None
    groups = out.groupby(key) if key else [(None, out)]
    for _, g in groups:
        idx = g.sort_values(d.timestamp_col).index
        y = out.loc[idx, d.target_col].to_numpy(float)
        step = np.nanstd(np.diff(np.log(y) if cfg.window.target == "log_return" else y))
        trend = step * np.arange(len(y))
        out.loc[idx, d.target_col] = y * np.exp(trend) if cfg.window.target == "log_return" else y + trend
    return out


def openings(texts) -> pd.DataFrame:
    """The first 3 to 20 words of each text, as prompts (seeded)."""
    rng = np.random.default_rng(0)
    return pd.DataFrame({"prompt": [" ".join(str(t).split()[: int(rng.integers(3, 21))]) for t in texts]})


def foreign_texts() -> pd.DataFrame:
    paragraphs = [p for f in sorted((ROOT / "docs").glob("**/*.md")) for p in f.read_text().split("\n\n")]
    return pd.DataFrame({"text": [p for p in paragraphs if len(p) > 80]})


def job(model: str, df: pd.DataFrame, tmp: Path, name: str, drift: bool = True) -> dict:
    from rnnpipe.flows.predict import batch_predict

    src = tmp / f"{name}.parquet"
    df.to_parquet(src)
    return batch_predict(model, str(src), str(tmp / f"{name}-out.parquet"), overwrite=True, drift=drift)


def report(out: dict) -> dict:
    import json

    from mlflow.tracking import MlflowClient

    path = MlflowClient().download_artifacts(out["job_run_id"], "drift/report.json")
    return json.loads(Path(path).read_text())


def plain(rep: dict) -> str:
    """The report's status judged against the thresholds alone (`drift.blocks = 0`: no
    natural stray), from its own rows."""
    from rnnpipe.config import DriftConfig
    from rnnpipe.drift import STATUSES, _status

    t = DriftConfig()
    judged = []
    for f in rep["features"]:
        if f["status"] not in STATUSES:
            continue
        if f.get("psi_natural") is None:  # classes, or not measured: as judged
            judged.append(f["status"])
            continue
        rise = f["missing"] - f["missing_ref"]
        judged.append(_status(f["psi"], f["ks_pvalue"], rise, f["n"], t))
    return max(judged, key=STATUSES.index) if judged else "ok"


def alarms(sets: list[str]) -> dict:
    results = {}
    tmp = Path(tempfile.mkdtemp(prefix="drift-"))
    for name in sets:
        kind = SETS[name][0]
        t0 = time.perf_counter()
        model, cfg = train(name)
        test, column = test_part(kind, cfg)
        val, _ = test_part(kind, cfg, "val")
        on_val = report(job(model, val, tmp, f"{name}-val")) if val is not None else None
        same = report(job(model, test, tmp, f"{name}-same"))
        if kind in ("reviews", "lm"):
            moved_df = foreign_texts() if kind == "reviews" else openings(foreign_texts().text)
        else:
            moved_df = shifted(test, column, cfg)
        moved = report(job(model, moved_df, tmp, f"{name}-moved"))
        judged = [f for f in moved["features"] if f["status"] in ("ok", "warn", "drift")]
        results[name] = {
            "val_part": on_val["status"] if on_val else None,
            "val_part_features": on_val["features"] if on_val else None,
            "test_rows": len(test),
            "test_part": same["status"],
            "test_part_thresholds_alone": plain(same),
            "val_part_thresholds_alone": plain(on_val) if on_val else None,
            "shifted_thresholds_alone": plain(moved),
            "test_part_features": same["features"],
            "shifted": column or ("foreign texts" if kind in ("reviews", "lm") else "target trend"),
            "shifted_status": moved["status"],
            "named_first": judged[0]["feature"] if judged else None,
            "shifted_features": moved["features"],
            "seconds": time.perf_counter() - t0,
        }

        def worst(rep: dict) -> str:
            judged = [f for f in rep["features"] if f["status"] in ("ok", "warn", "drift")]
            if not judged:
                return "none judged"
            f = max(judged, key=lambda f: (f["psi"] or 0) - (f.get("psi_natural") or 0))
            of = f" of {f['group']}" if f["group"] else ""
            return f"{f['feature']}{of}: PSI {f['psi']:.3f}, natural {f.get('psi_natural') or 0:.3f}"

        val_text = f"val part: {on_val['status']} [{plain(on_val)}] ({worst(on_val)}); " if on_val else ""
        print(
            f"{name:18} {val_text}test part: {same['status']} [{plain(same)}] ({worst(same)}, {len(test):,} rows); "
            f"shifted {results[name]['shifted']!r}: {moved['status']} [{plain(moved)}], "
            f"first named {results[name]['named_first']!r}",
            flush=True,
        )
    return results


def series_input(rows: int, out: Path) -> Path:
    """`rows` rows of daily prices: the bundled stocks' series copied under new tickers."""
    base = pd.read_parquet(ROOT / "data" / "stocks.parquet")
    copies, n, k = [], 0, 0
    while n < rows:
        for t, g in base.groupby("Ticker"):
            part = g.assign(Ticker=f"{t}_{k}")
            copies.append(part)
            n += len(part)
        k += 1
    df = pd.concat(copies, ignore_index=True).iloc[:rows]
    df = df[df.groupby("Ticker").Ticker.transform("size") > 100]  # no copy cut too short to forecast
    out.mkdir(parents=True, exist_ok=True)
    path = out / "prices.parquet"
    df.to_parquet(path, row_group_size=50_000)
    return path


def overhead(rows: int, repeats: int, review_rows: int, sets: list[str]) -> dict:
    from bench_serving import PeakRss, make_input

    home = Path(os.environ["RNNPIPE_HOME"])
    results = {}
    for name, make in (("stocks", None), ("reviews", lambda: make_input(review_rows, home / "reviews-in"))):
        if name not in sets:
            continue
        model, _ = train(name)
        src = make() if make else series_input(rows, home / "stocks-in")
        runs = {True: [], False: []}
        for _ in range(repeats):
            for drift in (False, True):
                from rnnpipe.flows.predict import batch_predict

                with PeakRss() as peak:
                    out = batch_predict(model, str(src), str(home / f"{name}-out.parquet"), overwrite=True, drift=drift)
                runs[drift].append(
                    {
                        "rows": out["rows_in"],
                        "seconds": out["seconds"],
                        "peak_rss_mb": peak.self_mb,
                        "drift": out["drift"],
                    }
                )
                print(
                    f"{name:8} drift={'on ' if drift else 'off'} {out['rows_in']:,} rows in {out['seconds']:.1f} s, "
                    f"peak RSS {peak.self_mb:,.0f} MB {out['drift']}",
                    flush=True,
                )
        on = statistics.median(r["seconds"] for r in runs[True])
        off = statistics.median(r["seconds"] for r in runs[False])
        n = runs[True][0]["rows"]
        results[name] = {"rows": n, "with": runs[True], "without": runs[False], "time_ratio": on / off}
        print(f"{name:8} the drift report adds {on / off - 1:+.1%} to the job's time (median of {repeats})", flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["alarms", "overhead"])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--review-rows", type=int, default=200_000, help="reviews predict ~900 rows/s on 2 cores")
    args = ap.parse_args()
    if args.what == "alarms":
        write_results("drift-alarms", alarms(args.sets.split(",")))
    else:
        write_results("drift-overhead", overhead(args.rows, args.repeats, args.review_rows, args.sets.split(",")))


if __name__ == "__main__":
    main()
