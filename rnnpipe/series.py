"""Validated series: a long table of (series, timestamp, target, features) checked row by row,
naming the file, column and row of the first bad value, into a `SeriesFrame`."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rnnpipe.errors import DataError
from rnnpipe.io import RowOrigin, read_table

log = logging.getLogger(__name__)


@dataclass
class SeriesFrame:
    """Validated long-format series, sorted by (series, timestamp), stored end to end.

    Rows `offsets[i]:offsets[i+1]` belong to `series[i]`; `values[:, j]` is column
    `columns[j]`. For a forecaster, column 0 is the target and the rest are extra features.
    """

    series: list[str]
    offsets: np.ndarray
    timestamps: np.ndarray  # datetime64[ns]
    values: np.ndarray  # float64 (T, C)
    columns: list[str]
    source: str
    fingerprint: str

    def __len__(self) -> int:
        return len(self.values)

    @property
    def target(self) -> np.ndarray:
        return self.values[:, 0]

    @property
    def features(self) -> np.ndarray:
        return self.values[:, 1:]

    @property
    def feature_names(self) -> list[str]:
        return self.columns[1:]

    def bounds(self, i: int) -> tuple[int, int]:
        return int(self.offsets[i]), int(self.offsets[i + 1])

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def codes(self) -> np.ndarray:
        """(T,) index of each row's series."""
        return np.repeat(np.arange(len(self.series)), self.lengths())

    def select(self, columns: Sequence[str]) -> SeriesFrame:
        """The same rows with only `columns`, in that order (the first becomes the target)."""
        idx = [self.columns.index(c) for c in columns]
        return SeriesFrame(
            self.series,
            self.offsets,
            self.timestamps,
            np.ascontiguousarray(self.values[:, idx]),
            list(columns),
            self.source,
            self.fingerprint,
        )


def series_id_column(series_col: str, ids: Any) -> dict[str, Any]:
    """The series id column of an output frame, or none when the data is one unnamed series."""
    return {series_col: ids} if series_col else {}


def to_series_frame(
    df: pd.DataFrame,
    *,
    timestamp_col: str,
    series_col: str,
    value_cols: Sequence[str],
    series: Sequence[str] = (),
    series_name: str = "series",
    nan_policy: str = "error",
    duplicates: str = "error",
    origin: RowOrigin | None = None,
    source: str = "input",
    for_model: bool = False,
) -> SeriesFrame:
    """Validate a long table and turn it into a SeriesFrame (`for_model`: the input of a
    trained model, whose settings its user cannot change: errors suggest none).

    Errors name the column and the row (file and row when `origin` says where rows came
    from): missing columns, non-numeric values, unparseable or missing dates, duplicate
    timestamps within a series, and missing values unless `nan_policy` says to fill or drop.
    With no `series_col` ("") every row belongs to one series called `series_name`.
    """
    # a DataFrame's integer index names its rows (a batch job numbers them; see rnnpipe.batch_jobs)
    rows = df.index.to_numpy() if pd.api.types.is_integer_dtype(df.index) else np.arange(len(df))
    origin = origin or RowOrigin(rows, label=source)
    value_cols = list(value_cols)
    needed = [timestamp_col, *([series_col] if series_col else []), *value_cols]
    for c in needed:
        if c not in df.columns:
            raise DataError(f"{source}: column {c!r} not found (columns: {', '.join(map(str, df.columns))})")
    if len(df) == 0:
        raise DataError(f"{source}: no rows")

    sid = df[series_col] if series_col else pd.Series(series_name, index=df.index, dtype=object)
    bad = empty_cells(sid)
    if bad.any():
        raise DataError(f"{origin.describe(int(np.argmax(bad)))}: column {series_col!r} is empty")
    sid = sid.astype(str).to_numpy()
    if series:
        present = set(np.unique(sid))
        absent = [s for s in series if s not in present]
        if absent:
            raise DataError(
                f"{source}: series {absent[0]!r} not found in column {series_col!r} "
                f"(present: {', '.join(sorted(present)[:20])})"
            )
        keep = np.isin(sid, list(series))
        idx = np.flatnonzero(keep)
        df, sid, origin = df.iloc[idx], sid[idx], origin.take(idx)

    ts = _parse_timestamps(df[timestamp_col], timestamp_col, origin)
    values = np.column_stack([_parse_numeric(df[c], c, origin) for c in value_cols])

    order = np.lexsort((ts.view("int64"), sid))
    sid, ts, values, origin = sid[order], ts[order], values[order], origin.take(order)

    same = (sid[1:] == sid[:-1]) & (ts[1:] == ts[:-1])
    if same.any() and duplicates == "mean":
        first = np.r_[True, ~same]
        group = np.cumsum(first) - 1
        ok = ~np.isnan(values)
        sums = np.zeros((int(first.sum()), values.shape[1]))
        counts = np.zeros_like(sums)
        np.add.at(sums, group, np.where(ok, values, 0.0))
        np.add.at(counts, group, ok)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(counts > 0, sums / counts, np.nan)
        log.info("%s: averaged %d rows that repeat a timestamp", source, int(same.sum()))
        keep_rows = np.flatnonzero(first)
        sid, ts, origin = sid[keep_rows], ts[keep_rows], origin.take(keep_rows)
    elif same.any():
        j = int(np.argmax(same))
        raise DataError(
            f"{source}: duplicate timestamp {pd.Timestamp(ts[j])} in series {sid[j]!r} "
            f"({origin.describe(j)} and {origin.describe(j + 1)})"
        )

    names = value_cols
    nan = np.isnan(values)
    if nan.any() and nan_policy != "keep":
        if nan_policy == "error":
            r, c = np.argwhere(nan)[0]
            fix = (
                "the model was trained to take no missing values (data.nan_policy=error): fill it in"
                if for_model
                else "set data.nan_policy=ffill or drop to accept missing values"
            )
            raise DataError(
                f"{origin.describe(int(r))}: column {names[c]!r} is empty (series "
                f"{sid[r]!r}, {pd.Timestamp(ts[r])}); {fix}"
            )
        if nan_policy == "ffill":
            filled = pd.DataFrame(values).groupby(sid, sort=False).ffill().to_numpy()
            values = filled
        keep = ~np.isnan(values).any(axis=1)
        n_dropped = int((~keep).sum())
        if n_dropped:
            log.warning(
                "%s: %d rows with missing values %s",
                source,
                n_dropped,
                "left unfilled at the start of a series were dropped"
                if nan_policy == "ffill"
                else "were dropped (data.nan_policy=drop)",
            )
            sid, ts, values = sid[keep], ts[keep], values[keep]

    _, starts = np.unique(sid, return_index=True)
    firsts = np.sort(starts)
    series_ids = [str(sid[i]) for i in firsts]
    offsets = np.append(firsts, len(sid)).astype(np.int64)
    values = np.ascontiguousarray(values)
    return SeriesFrame(
        series_ids, offsets, ts, values, names, source, fingerprint(series_ids, offsets, ts, values, names)
    )


_OFFSET = r":\d{2}(?:\.\d+)?\s?(?:[zZ]|[+-]\d{2}(?::?\d{2})?|UTC|GMT)$"  # a time, then its offset


def _parse_timestamps(col: pd.Series, name: str, origin: RowOrigin) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(col):
        parsed = col
        if getattr(col.dt, "tz", None) is not None:
            parsed = col.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_numeric_dtype(col):
        raise DataError(
            f"{origin.describe(0)}: column {name!r} holds numbers, expected dates "
            f"(e.g. 2024-01-31 or 2024-01-31T09:30:00)"
        )
    else:
        text = col.astype("string")
        # a UTC offset is honoured (converted to UTC); values with and without one in the same
        # column have no common clock, so they are refused rather than read as both UTC
        offset = text.str.strip().str.contains(_OFFSET, regex=True, na=False).to_numpy()
        if offset.any() and not offset[text.notna().to_numpy()].all():
            i, j = int(np.argmax(offset)), int(np.argmax(~offset & text.notna().to_numpy()))
            raise DataError(
                f"{origin.describe(j)}: column {name!r}: {text.iloc[j]!r} has no UTC offset "
                f"but {origin.describe(i)} has one ({text.iloc[i]!r}); give every time an "
                f"offset, or none"
            )
        parsed = pd.to_datetime(text, errors="coerce", format="mixed", utc=True).dt.tz_localize(None)
        bad = (parsed.isna() & text.notna()).to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{origin.describe(i)}: column {name!r}: cannot parse {text.iloc[i]!r} "
                f"as a date ({int(bad.sum())} such values)"
            )
    out = parsed.to_numpy(dtype="datetime64[ns]")
    missing = np.isnat(out)
    if missing.any():
        raise DataError(f"{origin.describe(int(np.argmax(missing)))}: column {name!r} is empty")
    return out


def empty_cells(col: pd.Series) -> np.ndarray:
    """Which cells of a column hold no value: nulls, and in text (a CSV that a batch job reads
    as text gives an empty cell as "") blank strings."""
    empty = col.isna().to_numpy(dtype=bool)
    if not pd.api.types.is_numeric_dtype(col.dtype):
        empty |= col.astype("string").str.strip().eq("").fillna(False).to_numpy(dtype=bool)
    return empty


def _parse_numeric(col: pd.Series, name: str, origin: RowOrigin) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col) or not (pd.api.types.is_numeric_dtype(col)):
        text = col.astype("string").str.strip()
        number = pd.to_numeric(text.replace("", pd.NA), errors="coerce")
        bad = (number.isna() & text.notna() & (text != "")).to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{origin.describe(i)}: column {name!r}: {text.iloc[i]!r} is not a "
                f"number ({int(bad.sum())} such values)"
            )
        col = number
    values = col.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
    inf = np.isinf(values)
    if inf.any():
        raise DataError(f"{origin.describe(int(np.argmax(inf)))}: column {name!r} is infinite")
    return values


def fingerprint(
    series: Sequence[str], offsets: np.ndarray, timestamps: np.ndarray, values: np.ndarray, names: Sequence[str]
) -> str:
    """sha256 of the data as the model sees it (ids, times, values), independent of file format."""
    h = hashlib.sha256()
    h.update("\x1f".join(series).encode())
    h.update("\x1f".join(names).encode())
    for arr in (offsets.astype(np.int64), timestamps.view(np.int64), values.astype(np.float64)):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def load_series(
    path: str | Path,
    *,
    timestamp_col: str,
    series_col: str,
    value_cols: Sequence[str],
    series: Sequence[str] = (),
    series_name: str = "series",
    nan_policy: str = "error",
    duplicates: str = "error",
    fmt: str = "auto",
    files: Sequence[str] | None = None,
    for_model: bool = False,
) -> SeriesFrame:
    """Read and validate a series table from disk (only `files` of a dataset, when given)."""
    ids = [series_col] if series_col else []
    columns = list(dict.fromkeys([*ids, timestamp_col, *value_cols]))
    table, origin = read_table(path, columns, fmt, text_columns=ids, files=files)
    df = table.to_pandas()
    return to_series_frame(
        df,
        timestamp_col=timestamp_col,
        series_col=series_col,
        series_name=series_name,
        value_cols=value_cols,
        series=series,
        nan_policy=nan_policy,
        duplicates=duplicates,
        origin=origin,
        source=str(path),
        for_model=for_model,
    )
