"""Per-series scalers with the scikit-learn shape: fit on train, transform anywhere.

Every scaler here is affine, x' = (x - center_) / scale_, with one center and scale per
series and column. Rows of a series the scaler never saw use the statistics pooled over all
training rows (`center_pooled_`, `scale_pooled_`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnpipe.errors import ConfigError

KINDS = ("standard", "minmax", "robust")


class SeriesScaler:
    def __init__(self, kind: str = "standard"):
        if kind not in KINDS:
            raise ConfigError(f"scaler {kind!r}: expected one of {', '.join(KINDS)}")
        self.kind = kind

    @staticmethod
    def _stats(kind: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if kind == "standard":
            center, scale = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
        elif kind == "minmax":
            lo, hi = np.nanmin(x, axis=0), np.nanmax(x, axis=0)
            center, scale = lo, hi - lo
        else:
            q1, med, q3 = np.nanpercentile(x, [25, 50, 75], axis=0)
            center, scale = med, q3 - q1
        scale = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
        return center, scale

    def fit(self, X: np.ndarray, groups: np.ndarray, n_groups: int | None = None) -> SeriesScaler:
        """X: (n, f) training rows; groups: (n,) integer series codes in [0, n_groups)."""
        X = np.asarray(X, dtype=np.float64)
        groups = np.asarray(groups)
        n_groups = int(groups.max()) + 1 if n_groups is None else n_groups
        self.center_ = np.zeros((n_groups, X.shape[1]))
        self.scale_ = np.ones((n_groups, X.shape[1]))
        self.n_rows_ = np.bincount(groups, minlength=n_groups)
        for g in range(n_groups):
            rows = X[groups == g]
            if len(rows):
                self.center_[g], self.scale_[g] = self._stats(self.kind, rows)
        self.center_pooled_, self.scale_pooled_ = self._stats(self.kind, X)
        return self

    def _params(self, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        groups = np.asarray(groups)
        known = (groups >= 0) & (groups < len(self.center_))
        g = np.where(known, groups, 0)
        center = np.where(known[:, None], self.center_[g], self.center_pooled_)
        scale = np.where(known[:, None], self.scale_[g], self.scale_pooled_)
        return center, scale

    def transform(self, X: np.ndarray, groups: np.ndarray) -> np.ndarray:
        center, scale = self._params(groups)
        return (np.asarray(X, dtype=np.float64) - center) / scale

    def inverse_transform(self, X: np.ndarray, groups: np.ndarray) -> np.ndarray:
        center, scale = self._params(groups)
        return np.asarray(X, dtype=np.float64) * scale + center

    def column_scale(self, groups: np.ndarray, column: int = 0) -> np.ndarray:
        return self._params(groups)[1][:, column]

    def column_center(self, groups: np.ndarray, column: int = 0) -> np.ndarray:
        return self._params(groups)[0][:, column]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "center_": self.center_.tolist(),
            "scale_": self.scale_.tolist(),
            "center_pooled_": self.center_pooled_.tolist(),
            "scale_pooled_": self.scale_pooled_.tolist(),
            "n_rows_": self.n_rows_.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeriesScaler:
        s = cls(d["kind"])
        for key in ("center_", "scale_", "center_pooled_", "scale_pooled_", "n_rows_"):
            setattr(s, key, np.asarray(d[key]))
        return s
