import numpy as np
import pandas as pd
import pytest

from rnnpipe.config import load_config
from rnnpipe.errors import DataError
from rnnpipe.features.scalers import SeriesScaler
from rnnpipe.features.splits import PARTS, chronological_split
from rnnpipe.features.targets import TargetEncoding
from rnnpipe.features.windows import WindowSet, make_windows, window_ends
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.pipelines.forecast.prepare import prepare
from rnnpipe.series import to_series_frame

COLS = dict(timestamp_col="Date", series_col="Ticker", value_cols=["Close"])


@pytest.fixture
def frame(stocks):
    """Three series of unequal length (300, 250 and 300 days)."""
    tails = {"AAPL": 300, "GOOG": 250, "IBM": 300}
    df = pd.concat([stocks[stocks.Ticker == t].tail(n) for t, n in tails.items()])
    return to_series_frame(df, timestamp_col="Date", series_col="Ticker", value_cols=["Close", "Volume"])


def test_split_is_chronological_per_series(frame):
    split = chronological_split(frame, 0.7, 0.15)
    for i in range(len(frame.series)):
        lo, a, b, hi = split.bounds[i]
        n = hi - lo
        assert (a - lo, b - a) == (int(n * 0.7), int(n * 0.15))
        ts = frame.timestamps
        assert ts[a - 1] < ts[a] and ts[b - 1] < ts[b]  # train < val < test in time
    masks = [split.mask(p, len(frame)) for p in PARTS]
    assert (sum(m.astype(int) for m in masks) == 1).all()  # every row in exactly one part


def test_split_at_cut_dates(frame):
    split = chronological_split(frame, val_start="2012-06-01", test_start="2012-10-01")
    val = frame.timestamps[split.mask("val", len(frame))]
    test = frame.timestamps[split.mask("test", len(frame))]
    train = frame.timestamps[split.mask("train", len(frame))]
    assert train.max() < np.datetime64("2012-06-01") <= val.min()
    assert val.max() < np.datetime64("2012-10-01") <= test.min()


@pytest.mark.parametrize("kind", ["standard", "minmax", "robust"])
def test_scaler_statistics_come_from_train_rows_only(kind):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2)) * [1, 10] + [5, -3]
    groups = np.repeat([0, 1], 100)
    train = np.r_[np.arange(0, 70), np.arange(100, 170)]
    scaler = SeriesScaler(kind).fit(X[train], groups[train])
    X_changed = X.copy()
    X_changed[np.setdiff1d(np.arange(200), train)] *= 1000  # val/test rows cannot matter
    again = SeriesScaler(kind).fit(X_changed[train], groups[train])
    np.testing.assert_array_equal(scaler.center_, again.center_)
    first = X[:70]
    expected = {
        "standard": (first.mean(0), first.std(0)),
        "minmax": (first.min(0), first.max(0) - first.min(0)),
        "robust": (np.median(first, 0), np.subtract(*np.percentile(first, [75, 25], 0))),
    }[kind]
    np.testing.assert_allclose(scaler.center_[0], expected[0])
    np.testing.assert_allclose(scaler.scale_[0], expected[1])
    Z = scaler.transform(X, groups)
    np.testing.assert_allclose(scaler.inverse_transform(Z, groups), X)
    # a series the scaler never saw falls back to the pooled training statistics
    pooled = scaler.transform(X[:3], np.full(3, -1))
    np.testing.assert_allclose(pooled, (X[:3] - scaler.center_pooled_) / scaler.scale_pooled_)


def test_preprocessor_fits_on_train_part_only(frame):
    cfg = load_config(ForecastConfig, overrides=["window.lookback=20"])
    split = chronological_split(frame, 0.7, 0.15)
    a = prepare(frame, split, cfg).preprocessor.scaler_
    frame.target[split.mask("test", len(frame))] *= 3  # change only the future
    frame.features[split.mask("val", len(frame))] += 1e6
    b = prepare(frame, split, cfg).preprocessor.scaler_
    np.testing.assert_array_equal(a.center_, b.center_)
    np.testing.assert_array_equal(a.scale_, b.scale_)


def test_windows_are_views_with_the_right_rows():
    values = np.arange(30, dtype=np.float32).reshape(10, 3)
    w = make_windows(values, 4)
    assert w.shape == (7, 4, 3)
    assert np.shares_memory(w, values)  # no copy
    np.testing.assert_array_equal(w[2], values[2:6])


def test_window_ends_never_look_ahead(frame):
    L, H = 20, 3
    split = chronological_split(frame, 0.7, 0.15)
    for part in PARTS:
        ends = window_ends(split, part, L, H, skip=1)
        assert len(ends)
        k = PARTS.index(part)
        s = np.searchsorted(frame.offsets, ends, side="right") - 1
        series_start, part_lo, part_hi = split.bounds[s, 0], split.bounds[s, k], split.bounds[s, k + 1]
        assert (ends - L + 1 >= series_start + 1).all()  # inputs inside the series
        assert (ends + 1 >= part_lo).all() and (ends + H < part_hi).all()  # targets inside the part
    # val windows may look back into train
    val = window_ends(split, "val", L, H, skip=1)
    assert (val - L + 1 < split.bounds[np.searchsorted(frame.offsets, val, "right") - 1, 1]).any()


def test_windowset_batches_match_the_numpy_view():
    values = np.random.default_rng(1).normal(size=(50, 2)).astype(np.float32)
    targets = np.arange(50, dtype=np.float32)[:, None]
    ends = np.array([9, 20, 49])
    x, y = next(WindowSet(values, targets, ends, 10).batches(8))
    view = make_windows(values, 10)
    np.testing.assert_array_equal(x.numpy(), view[ends - 9])
    np.testing.assert_array_equal(y.numpy()[:, 0], ends)


@pytest.mark.parametrize("kind", ["level", "diff", "log_return"])
def test_target_encoding_round_trip(kind):
    prices = np.array([10.0, 11, 12.5, 12, 13, 20, 21, 19.5])
    offsets = np.array([0, 5, 8])
    enc = TargetEncoding(kind)
    Y = enc.encode(prices, offsets, 2)
    assert np.isnan(Y[4]).all() and np.isnan(Y[3, 1])  # never across a series' end
    decoded = enc.decode(Y[[0, 5]], prices[[0, 5]])
    np.testing.assert_allclose(decoded, [[11, 12.5], [21, 19.5]])


def test_too_short_series_is_named(stocks):
    df = stocks[stocks.Ticker.isin(["AAPL", "FB"])]
    frame = to_series_frame(df, **COLS)
    with pytest.raises(DataError, match=r"series 'FB' is too short for the window: its 196 rows"):
        prepare(frame, chronological_split(frame), load_config(ForecastConfig, overrides=["window.lookback=150"]))


def test_log_return_needs_positive_prices(stocks):
    df = stocks[stocks.Ticker == "IBM"].head(200).copy()
    df.loc[df.index[50], "Close"] = 0.0
    frame = to_series_frame(df, **COLS)
    cfg = load_config(ForecastConfig, overrides=["window.lookback=10"])
    with pytest.raises(DataError, match=r"series 'IBM' at .* is not positive; .*window.target=diff"):
        prepare(frame, chronological_split(frame), cfg)
