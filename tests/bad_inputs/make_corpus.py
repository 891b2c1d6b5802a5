"""Build the bad-input corpus: one defect per file, for each pipeline's columns.

    python tests/bad_inputs/make_corpus.py

Deterministic (seeded); the files are committed beside this script, and `cases.toml` says
what `rnnpipe train` and `rnnpipe predict` must do with each (tests/test_bad_inputs.py).
Files whose name starts with `ok_` are odd but valid (unsorted, partitioned, offsets,
labelled); the others must fail with one line naming the file and the column, series or row.
Error files are small (the defect is found before any size check); the `ok_` ones are large
enough to train a tiny model.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

from test_monitor import patients  # noqa: E402  the monitor tests' synthetic readings


def csv(df: pd.DataFrame, path: Path, encoding: str = "utf-8") -> None:
    df.to_csv(path, index=False, encoding=encoding)


def one_cell(df: pd.DataFrame, path: Path, row: int, col: str, value, encoding: str = "utf-8") -> None:
    """`df` written with one value changed: the file's one defect."""
    bad = df.copy()
    bad.loc[row, col] = value
    csv(bad, path, encoding)


def empty_files(df: pd.DataFrame, out: Path) -> None:
    """A header with no rows, and a file with nothing in it."""
    csv(df.head(0), out / "header_only.csv")
    (out / "empty.csv").write_bytes(b"")


def hive(df: pd.DataFrame, root: Path, key: pd.Series, name: str) -> None:
    for value, part in df.groupby(key.to_numpy()):
        (root / f"{name}={value}").mkdir(parents=True)
        part.to_parquet(root / f"{name}={value}" / "part-0.parquet", index=False)


def stocks(out: Path) -> None:
    all_rows = pd.read_parquet(REPO / "data" / "stocks.parquet")
    ok = all_rows[all_rows.Ticker.isin(["AAPL", "IBM"])].groupby("Ticker").tail(150)
    ok = ok[["Ticker", "Date", "Close"]].assign(Date=lambda d: d.Date.dt.strftime("%Y-%m-%d"))
    ok = ok.reset_index(drop=True)
    csv(ok.sample(frac=1, random_state=0), out / "ok_unsorted.csv")
    hive(ok.iloc[::-1], out / "ok_by_month", ok.iloc[::-1].Date.str[:7], "month")
    small = ok.groupby("Ticker").tail(30).reset_index(drop=True).astype({"Close": object})
    csv(small.drop(columns="Close"), out / "missing_column.csv")
    one_cell(small, out / "bad_number.csv", 7, "Close", "12,5x")
    one_cell(small, out / "bad_date.csv", 9, "Date", "31/02/2013")
    one_cell(small, out / "duplicate.csv", 11, "Date", small.loc[10, "Date"])
    one_cell(small, out / "empty_value.csv", 5, "Close", None)
    bad = small.copy()
    bad["Date"] = bad.Date + "T16:00:00" + np.where(bad.index % 2 == 0, "-05:00", "")
    csv(bad, out / "mixed_offsets.csv")
    empty_files(small, out)
    one_cell(small, out / "latin1.csv", small.Ticker == "IBM", "Ticker", "SOCIÉTÉ", encoding="latin-1")


def monitor(out: Path) -> None:
    ok = patients(n=5)  # pid, ts, glucose every ~5 min for 30 hours
    ok.sample(frac=1, random_state=1).to_parquet(out / "ok_unsorted.parquet", index=False)
    hive(ok, out / "ok_by_day", ok.ts.dt.strftime("%Y-%m-%d"), "day")
    # the same readings moved to span the end of summer time in Paris (2024-10-27, 03:00 CEST
    # -> 02:00 CET) and written as local time with offsets: an hour of local times repeats
    # (+02:00, then +01:00), and only the offsets tell the readings apart
    autumn = ok.ts + (pd.Timestamp("2024-10-26 12:00") - pd.Timestamp("2024-01-01"))
    local = ok.assign(
        ts=autumn.dt.tz_localize("UTC")
        .dt.tz_convert("Europe/Paris")
        .dt.strftime("%Y-%m-%dT%H:%M:%S%z")
        .str.replace(r"(\d\d)$", r":\1", regex=True)
    )
    csv(local, out / "ok_offsets.csv")
    small = ok.groupby("pid").head(40).reset_index(drop=True)
    small["ts"] = small.ts.dt.strftime("%Y-%m-%d %H:%M:%S")
    csv(small.drop(columns="glucose"), out / "missing_column.csv")
    as_text = small.assign(glucose=small.glucose.round(1).astype(str))  # so that one value can be a word
    one_cell(as_text, out / "bad_number.csv", 13, "glucose", "high")
    one_cell(small, out / "bad_date.csv", 17, "ts", "yesterday")
    one_cell(small, out / "duplicate.csv", 45, "ts", small.loc[44, "ts"])  # patient p1 logs a reading twice
    bad = small.copy()
    bad["ts"] = bad.ts.str.replace(" ", "T") + np.where(bad.index % 3 == 0, "+01:00", "")
    csv(bad, out / "mixed_offsets.csv")
    csv(small.assign(glucose=np.nan), out / "all_missing_channel.csv")
    one_cell(small, out / "null_id.csv", 20, "pid", None)  # a reading with no patient
    empty_files(small, out)


def reviews(out: Path) -> None:
    ok = pd.read_parquet(REPO / "data" / "reviews_train.parquet").head(300).reset_index(drop=True)
    hive(ok, out / "ok_partitioned", pd.Series(np.arange(len(ok)) // 100), "shard")
    ok.to_parquet(out / "ok_labelled.parquet", index=False)  # for predict: scored with its labels on
    small = ok.head(30).copy()
    csv(small.drop(columns="review"), out / "missing_column.csv")
    one_cell(small, out / "empty_text.csv", 6, "review", "   ")
    one_cell(small, out / "unknown_label.csv", 8, "score", "maybe")
    one_cell(small, out / "latin1.csv", 4, "review", "Très bon café, un goût doux et rond", encoding="latin-1")
    # star ratings mapped as the text: an integer column where text belongs
    small.assign(review=np.arange(len(small)) % 5 + 1).to_parquet(out / "int_text.parquet", index=False)
    # JSON Lines cut short at line 27 (a truncated copy)
    lines = small.to_json(orient="records", lines=True).splitlines()
    lines[26] = lines[26][:40]
    (out / "broken.jsonl").write_text("\n".join(lines) + "\n")
    empty_files(small, out)


def main() -> None:
    for make in (stocks, monitor, reviews):
        out = HERE / make.__name__
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        make(out)
        print(out, len(list(out.rglob("*.*"))), "files")


if __name__ == "__main__":
    main()
