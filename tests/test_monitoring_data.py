"""Monitoring data: irregular readings on a fixed grid, gaps, grouped splits, event labels."""

import numpy as np
import pandas as pd
import pytest

from rnnpipe.errors import ConfigError
from rnnpipe.features.events import event_flags, future_event_labels, parse_rule
from rnnpipe.features.resample import resample, valid_rows
from rnnpipe.features.splits import PARTS, Split, grouped_split
from rnnpipe.features.windows import window_ends
from rnnpipe.series import to_series_frame

COLS = dict(timestamp_col="ts", series_col="patient", nan_policy="keep")


def readings():
    """Patient a: every 5 min with jitter, one 10-min hole and one 60-min hole; patient b: 8 rows."""
    t = pd.Timestamp("2024-01-01 00:00")
    a_minutes = [0, 5.2, 9.8, 15, 20.4, 30, 35, 40, 100, 104.9, 110, 115, 120]
    rows = [("a", t + pd.Timedelta(minutes=m), 100 + i) for i, m in enumerate(a_minutes)]
    rows += [("b", t + pd.Timedelta(minutes=5 * i), 60 + i) for i in range(8)]
    return pd.DataFrame(rows, columns=["patient", "ts", "glucose"])


def test_resample_fills_short_gaps_and_keeps_long_ones():
    frame = to_series_frame(readings(), **COLS, value_cols=["glucose"])
    grid = resample(frame, "5min", max_gap="15min", fill="interpolate", mark=True)
    a = slice(*grid.bounds(0))
    ts = grid.timestamps[a]
    assert (np.diff(ts) == np.timedelta64(5, "m")).all() and len(ts) == 25  # 0 .. 120 min
    g = grid.values[a, 0]
    assert g[5] == pytest.approx((104 + 105) / 2)  # the 25-min slot between 20 and 30 min
    assert np.isnan(g[9:20]).all()  # 40 -> 100 min is longer than max_gap: stays unknown
    assert grid.columns == ["glucose", "observed"]
    assert grid.values[a, 1][5] == 0 and grid.values[a, 1][6] == 1
    ff = resample(frame, "5min", max_gap="15min", fill="ffill")
    assert ff.values[grid.bounds(0)[0] + 5, 0] == 104


def test_no_window_spans_a_long_gap():
    frame = resample(to_series_frame(readings(), **COLS, value_cols=["glucose"]), "5min", "15min")
    split = Split(np.array([[lo, hi, hi, hi] for lo, hi in map(frame.bounds, range(2))]))  # all train
    ends = window_ends(split, "train", 3, 1, valid=valid_rows(frame))
    v = valid_rows(frame)
    for t in ends:
        assert v[t - 2 : t + 2].all()
    assert len(ends) > 0 and not any(8 <= t <= 21 for t in ends)


def test_grouped_split_never_puts_a_patient_in_two_parts():
    df = pd.concat([readings().assign(patient=lambda d, i=i: d.patient + str(i)) for i in range(10)])
    frame = to_series_frame(df, **COLS, value_cols=["glucose"])
    split = grouped_split(frame, 0.6, 0.2, seed=3)
    owners = {}
    for part in PARTS:
        for i, (lo, hi) in enumerate(split.part(part)):
            if hi > lo:
                assert hi - lo == frame.lengths()[i]  # whole series
                owners.setdefault(frame.series[i], []).append(part)
    assert all(len(p) == 1 for p in owners.values()) and len(owners) == 20
    counts = {p: sum(1 for o in owners.values() if o == [p]) for p in PARTS}
    assert counts == {"train": 12, "val": 4, "test": 4}
    assert grouped_split(frame, 0.6, 0.2, seed=3).bounds.tolist() == split.bounds.tolist()
    with pytest.raises(ConfigError, match="at least 3"):
        grouped_split(to_series_frame(readings(), **COLS, value_cols=["glucose"]))


def test_event_rule_and_future_labels():
    assert parse_rule("glucose<=70.5") == ("glucose", "<=", 70.5)
    with pytest.raises(ConfigError, match="expected CHANNEL OP NUMBER"):
        parse_rule("glucose is low")
    frame = to_series_frame(readings(), **COLS, value_cols=["glucose"])
    with pytest.raises(ConfigError, match="channel 'hr' is not among"):
        event_flags(frame, "hr > 120")
    events = event_flags(frame, "glucose < 64")
    b = slice(*frame.bounds(1))
    assert events[b].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    labels = future_event_labels(events, frame.offsets, 2)
    assert labels[b][:6].tolist() == [1, 1, 1, 0, 0, 0] and np.isnan(labels[b][6:]).all()
    gappy = np.array([0, np.nan, 0, 0, 1, 0.0])
    got = future_event_labels(gappy, np.array([0, 6]), 2)
    assert np.isnan(got[0]) and got[1] == 0 and got[2] == 1 and got[3] == 1
