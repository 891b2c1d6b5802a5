"""Build the bundled sample data under data/ from packages that ship real data.

Run once, offline, after `pip install bokeh_sampledata==2026.1` (the package is needed by this
script only, never at run time):

    python data/make_samples.py

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
    table = pa.Table.from_pandas(df, preserve_index=False)
    out = HERE / "stocks.parquet"
    tmp = out.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, out)
    return out


if __name__ == "__main__":
    path = make_stocks()
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
