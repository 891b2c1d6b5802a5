"""The input of a batch job, read as training reads it: numbered chunks (`numbered`, `scan`;
memory follows the chunk size), whole series for the models that read them (`whole_groups`
cuts chunks at series boundaries; `regrouped` / `write_buckets` put the rows of each series
together first when they are not contiguous), and where each row came from (`RowMap`) for
the model's error messages."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from rnnpipe.errors import DataError
from rnnpipe.io import RowOrigin, open_dataset

ROW_ID = "__rnnpipe_row__"  # a job's running row number, carried beside the input columns


class RowMap:
    """Where the job's row numbers come from: file and row, for the model's error messages
    (the model is handed each chunk with ROW_ID as its index, so its "input row N" is a row
    number of the job; `describe` turns it into the file, row and line that training names)."""

    def __init__(self, kind: str):
        self.kind, self.starts, self.files = kind, [], []

    def add(self, start: int, file: str) -> None:
        """The rows of `file` are numbered from `start` on."""
        self.starts.append(start)
        self.files.append(file)

    def describe(self, row_id: int) -> str:
        i = int(np.searchsorted(self.starts, row_id, side="right")) - 1
        if i < 0:
            return f"input row {row_id}"
        row = np.array([row_id - self.starts[i]])
        return RowOrigin(row, [self.files[i]], np.zeros(1, np.int32), self.kind).describe(0)

    def rewrite(self, message: str) -> str:
        return re.sub(r"\binput row (\d+)", lambda m: self.describe(int(m.group(1))), message)


def numbered(dataset: ds.Dataset, chunk_rows: int, rows: RowMap | None = None) -> Iterator[pa.Table]:
    """The dataset file by file, as tables of at most `chunk_rows` rows with a ROW_ID column,
    where each file's numbers start recorded in `rows`."""
    if ROW_ID in dataset.schema.names:  # already numbered by the job (a regrouped part)
        for batch in dataset.to_batches(batch_size=chunk_rows):
            if batch.num_rows:
                yield pa.Table.from_batches([batch])
        return
    next_id = 0
    for fragment in dataset.get_fragments():
        if rows is not None:
            rows.add(next_id, fragment.path)
        for batch in fragment.to_batches(schema=dataset.schema, batch_size=chunk_rows):
            if not batch.num_rows:
                continue
            ids = pa.array(np.arange(next_id, next_id + batch.num_rows, dtype=np.int64))
            yield pa.Table.from_batches([batch]).append_column(ROW_ID, ids)
            next_id += batch.num_rows


def scan(dataset: ds.Dataset, chunk_rows: int, rows: RowMap | None = None) -> Iterator[pd.DataFrame]:
    """The dataset as numbered DataFrames of at most `chunk_rows` rows."""
    for table in numbered(dataset, chunk_rows, rows):
        yield table.to_pandas()


# a `batch_spec` group column meaning "the whole input is one group": a series model trained
# on a file without a series column reads the input as one series, in one piece
WHOLE_INPUT = "<the whole input>"


def whole_input(dataset: ds.Dataset, rows: RowMap | None = None) -> Iterator[pd.DataFrame]:
    tables = list(numbered(dataset, 1 << 20, rows))
    if tables:
        yield pa.concat_tables(tables).to_pandas()


class NotGrouped(DataError):
    """A series' rows are not contiguous in the input (the job regroups them)."""


def whole_groups(chunks: Iterator[pd.DataFrame], column: str, source: str = "input") -> Iterator[pd.DataFrame]:
    """Re-cut chunks so that no group (series) is split between two of them: the rows of the
    last group of a chunk are held back and joined to the next. A group that shows up again
    after it was passed on means the input is not grouped: `NotGrouped`."""
    held: pd.DataFrame | None = None
    done: set[str] = set()
    for chunk in chunks:
        if column not in chunk.columns:
            raise DataError(f"{source}: column {column!r} not found (columns: {', '.join(map(str, chunk.columns))})")
        if held is not None and len(held):
            chunk = pd.concat([held, chunk], ignore_index=True)
        keys = chunk[column].astype(str)
        starts = keys.ne(keys.shift()).to_numpy()
        starts[0] = True
        run_keys = keys[starts]
        repeated = run_keys[run_keys.duplicated() | run_keys.isin(done)]
        if len(repeated):
            raise NotGrouped(f"{source}: the rows of {column}={repeated.iloc[0]!r} are not contiguous")
        last_start = int(np.flatnonzero(starts)[-1])
        ready, held = chunk.iloc[:last_start], chunk.iloc[last_start:]
        if len(ready):
            done.update(run_keys.iloc[:-1])
            yield ready.reset_index(drop=True)
    if held is not None and len(held):
        yield held.reset_index(drop=True)


def regrouped(
    dataset: ds.Dataset, column: str, chunk_rows: int, workdir: Path, rows: RowMap | None = None
) -> Iterator[pd.DataFrame]:
    """The rows of `dataset` with each group's rows together, for input in any order: the
    buckets of `write_buckets`, each read, stably sorted by group (the rows of a group keep
    their input order; the model sorts by time) and yielded whole."""
    for path in write_buckets(dataset, column, chunk_rows, workdir, rows):
        df = sorted_bucket(path, column).to_pandas()
        path.unlink()
        yield df


def sorted_bucket(path: Path, column: str) -> pa.Table:
    """A bucket's rows stably sorted by group: each group one run of rows, in input order."""
    table = pq.read_table(path)
    order = np.argsort(table[column].to_pandas().astype(str).to_numpy(), kind="stable")
    return table.take(order)


def write_buckets(
    dataset: ds.Dataset, column: str, chunk_rows: int, workdir: Path, rows: RowMap | None = None, min_buckets: int = 1
) -> list[Path]:
    """One pass that writes every row (numbered, ROW_ID) to one of B Parquet bucket files by
    a hash of its group, so that each group lies whole in one bucket (B = rows /
    `chunk_rows`, at least `min_buckets`, at most 4,096). -> the bucket files."""
    n = dataset.count_rows()
    buckets = max(1, min(4096, max(math.ceil(n / chunk_rows), min_buckets)))
    writers: dict[int, pq.ParquetWriter] = {}
    try:
        for table in numbered(dataset, chunk_rows, rows):
            keys = table[column].cast(pa.string()).to_pandas()
            bucket = (pd.util.hash_array(keys.fillna("").to_numpy(object)) % buckets).astype(np.int64)
            order = np.argsort(bucket, kind="stable")
            bounds = np.searchsorted(bucket[order], np.arange(buckets + 1))
            for b in np.flatnonzero(np.diff(bounds)):
                part = table.take(order[bounds[b] : bounds[b + 1]])
                if b not in writers:
                    writers[b] = pq.ParquetWriter(workdir / f"bucket-{b:05d}.parquet", table.schema)
                writers[b].write_table(part)
    finally:
        for w in writers.values():
            w.close()
    return [workdir / f"bucket-{b:05d}.parquet" for b in sorted(writers)]


def dataset_source(dataset: ds.Dataset) -> str:
    """What error messages call the input: its file, or the folder its files share."""
    files = list(getattr(dataset, "files", []) or [])
    if len(files) == 1:
        return files[0]
    return os.path.commonpath(files) if files else "input"


def open_input(path: str | Path, fmt: str, spec: Callable[[list[str]], tuple[list[str], str | None]]):
    """The input of a batch job as training reads it: (dataset, the model's columns, its group
    column). In CSV files the model's columns are read as text, so that every value is parsed
    (and every bad value reported) by the same code as in training (`rnnpipe.io`)."""
    dataset, kind = open_dataset(path, fmt)
    columns, group = spec(dataset.schema.names)
    if kind == "csv":
        present = set(dataset.schema.names)
        dataset, _ = open_dataset(path, fmt, csv_types={c: pa.string() for c in columns if c in present})
    return dataset, columns, group


def input_kind(dataset: ds.Dataset) -> str:
    return {ds.CsvFileFormat: "csv", ds.JsonFileFormat: "jsonl"}.get(type(dataset.format), "parquet")


def count_rows(dataset: ds.Dataset) -> int | None:
    """Rows in the input, when that is cheap to know (Parquet metadata); else None."""
    if isinstance(dataset.format, ds.ParquetFileFormat):
        return dataset.count_rows()
    return None
