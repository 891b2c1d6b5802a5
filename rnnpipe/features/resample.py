"""A fixed time step per series, with a policy for gaps.

Monitoring data arrive irregularly and with holes. `resample` puts each series on a regular
grid (readings go to the nearest grid slot; several in one slot are averaged), fills gaps up to
`max_gap` by the `fill` policy, and leaves longer gaps as NaN. Windows are only made where
every row is known (`valid_rows`), so no window ever spans a long gap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnnpipe.errors import ConfigError
from rnnpipe.series import SeriesFrame

FILLS = ("ffill", "interpolate", "none")


def _fill_short_runs(x: np.ndarray, max_run: int, fill: str) -> np.ndarray:
    """Fill NaN runs of at most `max_run` rows that have a known value on both sides."""
    nan = np.isnan(x)
    if not nan.any() or fill == "none" or max_run < 1:
        return x
    idx = np.arange(len(x))
    known = np.flatnonzero(~nan)
    if len(known) == 0:
        return x
    prev = np.maximum.accumulate(np.where(nan, -1, idx))  # last known index at or before
    nxt = np.minimum.accumulate(np.where(nan, len(x), idx)[::-1])[::-1]  # first known at or after
    inside = nan & (prev >= 0) & (nxt < len(x)) & (nxt - prev - 1 <= max_run)
    out = x.copy()
    if fill == "ffill":
        out[inside] = x[prev[inside]]
    else:
        w = (idx[inside] - prev[inside]) / (nxt[inside] - prev[inside])
        out[inside] = x[prev[inside]] * (1 - w) + x[nxt[inside]] * w
    return out


def resample(frame: SeriesFrame, step: str, max_gap: str, fill: str = "interpolate", mark: bool = False) -> SeriesFrame:
    """Each series on a grid of `step` from its first to its last reading.

    Gaps of at most `max_gap` are filled (`ffill` or linear `interpolate`; `none` leaves
    them); longer gaps stay NaN. With `mark`, a column `observed` (1 where a real reading fell
    in the slot, else 0) is appended, so a model can tell filled values from readings.
    """
    if fill not in FILLS:
        raise ConfigError(f"fill={fill!r}: expected one of {', '.join(FILLS)}")
    try:
        dt = pd.Timedelta(step).value
        gap = pd.Timedelta(max_gap).value
    except ValueError as exc:
        raise ConfigError(f"cannot read a duration ({step!r}, {max_gap!r}): {exc}") from None
    if dt <= 0:
        raise ConfigError(f"resample.step={step!r} must be positive")
    max_run = int(gap // dt) - 1  # a gap of max_gap between two readings leaves this many empty slots
    times, values, offsets = [], [], [0]
    n_cols = frame.values.shape[1]
    for i in range(len(frame.series)):
        lo, hi = frame.bounds(i)
        ts = frame.timestamps[lo:hi].view(np.int64)
        t0 = ts[0] - ts[0] % dt
        slots = np.rint((ts - t0) / dt).astype(np.int64)
        n = int(slots[-1]) + 1
        sums = np.zeros((n, n_cols))
        counts = np.zeros((n, n_cols))
        v = frame.values[lo:hi]
        ok = ~np.isnan(v)
        np.add.at(sums, slots, np.where(ok, v, 0.0))
        np.add.at(counts, slots, ok)
        with np.errstate(invalid="ignore", divide="ignore"):
            grid = sums / counts
        grid[counts == 0] = np.nan
        observed = (counts.sum(axis=1) > 0).astype(np.float64)
        grid = np.column_stack([_fill_short_runs(grid[:, c], max_run, fill) for c in range(n_cols)])
        if mark:
            grid = np.column_stack([grid, observed])
        times.append((t0 + dt * np.arange(n)).astype("datetime64[ns]"))
        values.append(grid)
        offsets.append(offsets[-1] + n)
    columns = frame.columns + (["observed"] if mark else [])
    return SeriesFrame(
        list(frame.series),
        np.asarray(offsets, dtype=np.int64),
        np.concatenate(times),
        np.concatenate(values),
        columns,
        frame.source,
        frame.fingerprint,
    )


def valid_rows(frame: SeriesFrame, columns: list[int] | None = None) -> np.ndarray:
    """(T,) True where every (selected) column is known."""
    v = frame.values if columns is None else frame.values[:, columns]
    return ~np.isnan(v).any(axis=1)
