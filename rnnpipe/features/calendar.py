"""Calendar inputs: where a timestamp lies in its day, week and year, as cyclical encodings.

Each feature is a (sin, cos) pair of the phase, so 23:30 lies next to 00:00 and Sunday next to
Monday. They are computed from timestamps alone, for the steps of a window and for the steps a
forecast is made for (their timestamps are known in advance), never from a target value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from rnnpipe.errors import ConfigError

PERIODS = {  # feature -> (phase of a timestamp in [0, 1))
    "time_of_day": lambda t: (t.hour * 3600 + t.minute * 60 + t.second) / 86400.0,
    "day_of_week": lambda t: (t.dayofweek + (t.hour * 3600 + t.minute * 60 + t.second) / 86400.0) / 7.0,
    "day_of_year": lambda t: (t.dayofyear - 1 + (t.hour * 3600 + t.minute * 60) / 86400.0) / 365.25,
}
FEATURES = tuple(PERIODS)


def calendar_features(timestamps: np.ndarray | pd.DatetimeIndex, names: Sequence[str]) -> np.ndarray:
    """(T, 2 x len(names)) float32: sin and cos of each feature's phase, in `names` order."""
    t = pd.DatetimeIndex(timestamps)
    cols = []
    for name in names:
        phase = 2 * np.pi * np.asarray(PERIODS[name](t), dtype=np.float64)
        cols += [np.sin(phase), np.cos(phase)]
    if not cols:
        return np.zeros((len(t), 0), dtype=np.float32)
    return np.column_stack(cols).astype(np.float32)


def column_names(names: Sequence[str]) -> list[str]:
    return [f"{n}_{f}" for n in names for f in ("sin", "cos")]


def parse(setting: str | Sequence[str]) -> str | list[str]:
    """`data.calendar`: "auto", "none" (or "" / []) or a list of `FEATURES`."""
    if not isinstance(setting, str) and list(setting) in ([], ["auto"], ["none"]):
        setting = (list(setting) or ["none"])[0]
    if isinstance(setting, str):
        text = setting.strip().lower()
        if text in ("auto", "none", ""):
            return text or "none"
        setting = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in setting if s not in PERIODS]
    if bad:
        raise ConfigError(
            f"data.calendar: unknown feature {bad[0]!r} (expected auto, none or a list of {', '.join(FEATURES)})"
        )
    return list(dict.fromkeys(setting))


SPAN = {
    "time_of_day": pd.Timedelta(days=2),
    "day_of_week": pd.Timedelta(days=14),
    "day_of_year": pd.Timedelta(days=730),
}  # `auto` uses a feature over at least two periods


def choose(setting: str | Sequence[str], step: str, span: pd.Timedelta | None = None) -> list[str]:
    """The calendar features a run uses. `auto` goes by the data's step (a pandas offset, as
    `infer_step` gives it): below a day, the time of day and the day of the week; daily, the
    day of the week and of the year; weekly or longer, the day of the year; business days
    (trading days), none: on the bundled prices they did not help on validation. Of those,
    only the features whose period the data's `span` covers twice (a year of hourly data
    gets no day of the year; a nominal clock of 20 s of ECG, none)."""
    chosen = parse(setting)
    if chosen == "none":
        return []
    if chosen != "auto":
        return chosen
    if step == "B":
        return []
    delta = pd.tseries.frequencies.to_offset(step)
    try:
        length = pd.Timedelta(delta)
    except ValueError:  # monthly, yearly: no fixed length
        length = pd.Timedelta(days=30)
    if length < pd.Timedelta(days=1):
        names = ["time_of_day", "day_of_week"]
    elif length < pd.Timedelta(days=7):
        names = ["day_of_week", "day_of_year"]
    else:
        names = ["day_of_year"]
    return [n for n in names if span is None or span >= SPAN[n]]
