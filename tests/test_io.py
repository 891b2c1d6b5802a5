import os

import numpy as np
import pandas as pd
import pytest

from rnnpipe.errors import DataError
from rnnpipe.io import write_table
from rnnpipe.series import load_series, to_series_frame

COLS = dict(timestamp_col="Date", series_col="Ticker", value_cols=["Close"])


@pytest.fixture
def small(stocks):
    return stocks[stocks.Ticker.isin(["AAPL", "IBM"])].groupby("Ticker").head(40).reset_index(drop=True)


def test_csv_parquet_folder_and_partitions_agree(tmp_path, small):
    small.to_csv(tmp_path / "s.csv", index=False)
    small.to_parquet(tmp_path / "s.parquet")
    (tmp_path / "folder").mkdir()
    for i, (_, g) in enumerate(small.groupby("Ticker")):
        g.to_parquet(tmp_path / "folder" / f"part-{i}.parquet")
    for t, g in small.groupby("Ticker"):
        (tmp_path / "hive" / f"Ticker={t}").mkdir(parents=True)
        g.drop(columns="Ticker").to_parquet(tmp_path / "hive" / f"Ticker={t}" / "0.parquet")
    prints = {
        p: load_series(
            tmp_path / p, timestamp_col="Date", series_col="Ticker", value_cols=["Close", "Volume"]
        ).fingerprint
        for p in ("s.csv", "s.parquet", "folder", "hive")
    }
    assert len(set(prints.values())) == 1, prints


def test_unsorted_input_is_sorted(small):
    shuffled = small.sample(frac=1, random_state=0)
    a, b = to_series_frame(small, **COLS), to_series_frame(shuffled, **COLS)
    assert a.fingerprint == b.fingerprint
    assert a.series == ["AAPL", "IBM"]
    assert (np.diff(a.timestamps[: a.offsets[1]]) > np.timedelta64(0)).all()


def test_fingerprint_changes_with_one_value(small):
    changed = small.copy()
    changed.loc[5, "Close"] += 0.01
    assert to_series_frame(small, **COLS).fingerprint != to_series_frame(changed, **COLS).fingerprint


def test_missing_file():
    with pytest.raises(DataError, match="data file not found: nope.csv"):
        load_series("nope.csv", **COLS)


def test_missing_column_names_file_and_column(tmp_path, small):
    small.drop(columns="Close").to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(DataError, match=r"s\.csv: column 'Close' not found \(columns: Ticker, Date"):
        load_series(tmp_path / "s.csv", **COLS)


def test_non_numeric_value_names_file_row_and_column(tmp_path, small):
    bad = small.astype({"Close": object})
    bad.loc[7, "Close"] = "n/a"
    bad.to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(DataError, match=r"s\.csv, row 8 \(line 9\): column 'Close': 'n/a' is not a number"):
        load_series(tmp_path / "s.csv", **COLS)


def test_unparseable_date(tmp_path, small):
    bad = small.astype({"Date": str})
    bad.loc[3, "Date"] = "31/31/2001"
    bad.to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(DataError, match=r"row 4 \(line 5\): column 'Date': cannot parse '31/31/2001'"):
        load_series(tmp_path / "s.csv", **COLS)


def test_duplicate_timestamp_names_series_and_rows(tmp_path, small):
    dup = pd.concat([small, small.iloc[[10]]], ignore_index=True)
    dup.to_parquet(tmp_path / "d.parquet")
    with pytest.raises(DataError, match=r"duplicate timestamp 2000-03-15.* series 'AAPL' \(.*row 11 and .*row 81\)"):
        load_series(tmp_path / "d.parquet", **COLS)


def test_nan_policies(small):
    gap = small.copy()
    gap.loc[4, "Close"] = np.nan
    with pytest.raises(DataError, match=r"input row 4: column 'Close' is empty \(series 'AAPL'.*nan_policy"):
        to_series_frame(gap, **COLS)
    filled = to_series_frame(gap, **COLS, nan_policy="ffill")
    assert len(filled) == len(small) and filled.target[4] == small.Close[3]
    dropped = to_series_frame(gap, **COLS, nan_policy="drop")
    assert len(dropped) == len(small) - 1


def test_unknown_series_filter(small):
    with pytest.raises(DataError, match=r"series 'TSLA' not found in column 'Ticker' \(present: AAPL, IBM\)"):
        to_series_frame(small, **COLS, series=["AAPL", "TSLA"])


def test_write_table_is_atomic(tmp_path):
    out = tmp_path / "out.parquet"
    write_table(pd.DataFrame({"a": [1, 2]}), out)
    before = out.read_bytes()
    with pytest.raises(ValueError):  # pyarrow's ArrowInvalid
        write_table(pd.DataFrame({"a": [object(), 1]}), out)  # pyarrow cannot write this
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.parquet"]


def test_duplicate_readings_can_be_averaged(small):
    dup = pd.concat([small, small.iloc[[10]].assign(Close=lambda d: d.Close + 2)], ignore_index=True)
    frame = to_series_frame(dup, **COLS, duplicates="mean")
    assert len(frame) == len(small)
    assert frame.target[10] == pytest.approx(small.Close[10] + 1)


def test_a_gap_in_a_models_input_suggests_no_training_setting():
    """A client (a served request, a batch file) cannot set data.nan_policy: the error
    names the row and says the model takes no gaps; training's error suggests the setting."""
    import numpy as np
    import pandas as pd

    from rnnpipe.errors import DataError
    from rnnpipe.pipelines.forecast.config import DataConfig
    from rnnpipe.pipelines.forecast.data import read_forecast_input
    from rnnpipe.series import to_series_frame

    df = pd.DataFrame(
        {
            "Ticker": "AAPL",
            "Date": pd.date_range("2024-01-01", periods=5).astype(str),
            "Close": [1.0, 2.0, np.nan, 4.0, 5.0],
        }
    )
    with pytest.raises(DataError) as served:
        read_forecast_input(df, DataConfig(series=[]))
    assert "input row 2:" in str(served.value) and "fill it in" in str(served.value)  # the frame's index
    assert "set data.nan_policy" not in str(served.value)
    with pytest.raises(DataError, match="set data.nan_policy=ffill or drop"):
        to_series_frame(df, timestamp_col="Date", series_col="Ticker", value_cols=["Close"])


def test_an_output_folder_gets_the_mode_of_a_folder_made_by_mkdir(tmp_path):
    import os

    from rnnpipe.batch_parts import SUCCESS, atomic_folder

    with atomic_folder(tmp_path / "out") as tmp:
        (tmp / SUCCESS).write_text("{}")
    (tmp_path / "made").mkdir()
    assert (tmp_path / "out").stat().st_mode & 0o777 == (tmp_path / "made").stat().st_mode & 0o777
    assert os.access(tmp_path / "out", os.R_OK | os.X_OK)


def test_a_missing_input_column_names_what_was_sent_and_the_closest_spare_column():
    from rnnpipe.io import missing_input_column

    choices = [["Ticker"], ["Date"], ["Close"]]
    assert missing_input_column(choices, ["Ticker", "Date", "Close", "extra"]) is None
    # another case, a near spelling, the one column left over; none when it is ambiguous
    assert missing_input_column(choices, ["Ticker", "Date", "close"]).endswith(
        "did you mean 'close'? (send it as 'Close')"
    )
    assert "did you mean 'Closs'" in missing_input_column(choices, ["Ticker", "Date", "Closs", "Volume"])
    assert "did you mean 'Price'" in missing_input_column(choices, ["Ticker", "Date", "Price"])
    message = missing_input_column(choices, ["Ticker", "Date", "Price", "Volume"])
    assert message == "column 'Close' not found; sent: Ticker, Date, Price, Volume"
    # a column under either of two names
    assert missing_input_column([["text", "review"]], ["Review"]).startswith(
        "column 'text' not found (nor 'review'); sent: Review; did you mean 'Review'"
    )
    assert missing_input_column([["text"]], [], label="columns") == "column 'text' not found; columns: none"
