"""Events and early-warning labels: "will an event happen within the next K steps?"."""

from __future__ import annotations

import operator
import re

import numpy as np

from rnnpipe.errors import ConfigError
from rnnpipe.series import SeriesFrame

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
RULE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|==|<|>)\s*(-?\d+(?:\.\d*)?(?:[eE]-?\d+)?)\s*$")


def parse_rule(rule: str) -> tuple[str, str, float]:
    """`"glucose < 70"` -> ("glucose", "<", 70.0)."""
    m = RULE.match(rule)
    if not m:
        raise ConfigError(
            f"event rule {rule!r}: expected CHANNEL OP NUMBER with OP one of {' '.join(OPS)}, e.g. 'glucose < 70'"
        )
    return m.group(1), m.group(2), float(m.group(3))


def event_flags(frame: SeriesFrame, rule: str = "", label_col: str = "") -> np.ndarray:
    """(T,) 1.0 where the event holds, 0.0 where not, NaN where unknown (a gap)."""
    if bool(rule) == bool(label_col):
        raise ConfigError("give exactly one of data.event (a rule such as 'glucose < 70') and data.label_col")
    if label_col:
        col = frame.values[:, frame.columns.index(label_col)]
        bad = ~np.isnan(col) & ~np.isin(col, [0.0, 1.0])
        if bad.any():
            raise ConfigError(f"label column {label_col!r} must hold 0 or 1; found {col[bad][0]}")
        return col.copy()
    channel, op, threshold = parse_rule(rule)
    if channel not in frame.columns:
        raise ConfigError(
            f"event rule {rule!r}: channel {channel!r} is not among the channels ({', '.join(frame.columns)})"
        )
    x = frame.values[:, frame.columns.index(channel)]
    with np.errstate(invalid="ignore"):
        flags = OPS[op](x, threshold).astype(np.float64)
    flags[np.isnan(x)] = np.nan
    return flags


def future_event_labels(events: np.ndarray, offsets: np.ndarray, k: int) -> np.ndarray:
    """(T,) 1.0 if the event holds at any of rows t+1 .. t+k of the same series, else 0.0; NaN
    past the series' end or when one of those rows is unknown and none is an event."""
    T = len(events)
    known_event = np.nan_to_num(events, nan=0.0)
    unknown = np.isnan(events).astype(np.float64)
    csum_e = np.concatenate([[0.0], np.cumsum(known_event)])
    csum_u = np.concatenate([[0.0], np.cumsum(unknown)])
    rows = np.arange(T)
    series_end = np.repeat(offsets[1:], np.diff(offsets))
    hi = np.minimum(rows + k + 1, series_end)
    any_event = (csum_e[hi] - csum_e[rows + 1]) > 0
    any_unknown = (csum_u[hi] - csum_u[rows + 1]) > 0
    out = np.where(any_event, 1.0, np.where(any_unknown, np.nan, 0.0))
    out[rows + k >= series_end] = np.nan
    return out
