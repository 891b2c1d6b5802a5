"""What the model predicts: the price level, or the change relative to the last observed value.

Forecasting a level with a scaler fit on the training years fails when the test years lie
outside that range. A difference or log return relative to the last observation does not, and
its zero is the naive (persistence) forecast. Predictions are always decoded back to prices.
"""

from __future__ import annotations

import numpy as np

from rnnpipe.errors import DataError

KINDS = ("level", "diff", "log_return")


class TargetEncoding:
    def __init__(self, kind: str = "log_return"):
        if kind not in KINDS:
            raise ValueError(kind)
        self.kind = kind

    @property
    def skip(self) -> int:
        """Rows at the start of each series that have no input value (no previous value)."""
        return 0 if self.kind == "level" else 1

    @property
    def centered(self) -> bool:
        """Level targets are centred by the scaler; changes are only divided by its scale."""
        return self.kind == "level"

    def check(self, target: np.ndarray, series: list[str], offsets: np.ndarray, timestamps: np.ndarray) -> None:
        if self.kind == "log_return":
            bad = target <= 0
            if bad.any():
                i = int(np.argmax(bad))
                s = int(np.searchsorted(offsets, i, side="right") - 1)
                raise DataError(
                    f"series {series[s]!r} at {timestamps[i]}: value {target[i]} is not "
                    "positive; window.target=log_return needs positive prices "
                    "(use window.target=diff)"
                )

    def steps(self, target: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """The input channel: the level, or the one-step change (NaN at each series' first row)."""
        if self.kind == "level":
            return target.astype(np.float64, copy=True)
        base = np.log(target) if self.kind == "log_return" else target.astype(np.float64)
        out = np.empty_like(base)
        out[1:] = base[1:] - base[:-1]
        out[offsets[:-1]] = np.nan
        return out

    def encode(self, target: np.ndarray, offsets: np.ndarray, horizon: int) -> np.ndarray:
        """(T, H): row t holds steps t+1 .. t+H relative to row t (NaN past the series' end)."""
        base = np.log(target) if self.kind == "log_return" else target.astype(np.float64)
        T = len(base)
        out = np.full((T, horizon), np.nan)
        series_end = np.repeat(offsets[1:], np.diff(offsets))
        rows = np.arange(T)
        for h in range(1, horizon + 1):
            ok = rows + h < series_end
            ahead = base[np.minimum(rows + h, T - 1)]
            out[:, h - 1] = np.where(ok, ahead if self.kind == "level" else ahead - base, np.nan)
        return out

    def decode(self, encoded: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Unscaled encoded targets (N, H) and the last observed values (N,) -> prices (N, H)."""
        if self.kind == "level":
            return encoded
        if self.kind == "diff":
            return last[:, None] + encoded
        return last[:, None] * np.exp(encoded)
