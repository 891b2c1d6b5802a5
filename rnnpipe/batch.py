"""Batch prediction: a registered model over a file, folder or partitioned dataset, in chunks.

The input is scanned with pyarrow `chunk_rows` rows at a time, so memory follows the chunk
size, not the input size. Models that read whole series (forecasts, early warning) get whole
series: rows of the series at the end of a chunk wait for the next chunk, which needs each
series' rows to be contiguous (sorted or partitioned by series), and this is checked. Row-wise
models (review sentiment) keep every input column they do not read as a key beside their
predictions. Every output row carries the model's name, version, alias and MLflow run id. The
Parquet output is written to a temporary file and renamed when complete.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from rnnpipe.errors import DataError
from rnnpipe.io import atomic_path

LINEAGE = ("model_name", "model_version", "model_alias", "mlflow_run_id")


@dataclass
class BatchStats:
    rows_in: int
    rows_out: int
    chunks: int
    seconds: float
    output: str

    @property
    def rows_per_s(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"rows_in": self.rows_in, "rows_out": self.rows_out, "chunks": self.chunks,
                "seconds": round(self.seconds, 3), "rows_per_s": round(self.rows_per_s, 1),
                "output": self.output}


def scan(dataset: ds.Dataset, chunk_rows: int, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """The dataset as DataFrames of at most `chunk_rows` rows, reading ahead one batch."""
    for batch in dataset.to_batches(columns=columns, batch_size=chunk_rows, batch_readahead=1,
                                    fragment_readahead=1):
        if batch.num_rows:
            yield batch.to_pandas()


def whole_groups(chunks: Iterator[pd.DataFrame], column: str) -> Iterator[pd.DataFrame]:
    """Re-cut chunks so that no group (series) is split between two of them: the rows of the
    last group of a chunk are held back and joined to the next. A group that shows up again
    after it was passed on means the input is not grouped, and is an error."""
    held: pd.DataFrame | None = None
    done: set = set()
    for chunk in chunks:
        if column not in chunk.columns:
            raise DataError(f"input: column {column!r} not found (columns: {', '.join(map(str, chunk.columns))})")
        if held is not None:
            chunk = pd.concat([held, chunk], ignore_index=True)
        keys = chunk[column].astype(str)
        starts = keys.ne(keys.shift())
        runs = keys[starts]
        repeated = runs[runs.duplicated() | runs.isin(done)]
        if len(repeated):
            raise DataError(f"input: the rows of {column}={repeated.iloc[0]!r} are not contiguous; sort the "
                            f"input by {column!r} or partition it by {column!r}")
        last_start = int(starts.to_numpy().nonzero()[0][-1])
        ready, held = chunk.iloc[:last_start], chunk.iloc[last_start:]
        if len(ready):
            done.update(runs.iloc[:-1])
            yield ready
    if held is not None and len(held):
        yield held


def predict_to_parquet(predict: Callable[[pd.DataFrame], pd.DataFrame], input_columns: list[str],
                       lineage: dict[str, str], dataset: ds.Dataset, output_path: str | Path, *,
                       group_column: str | None = None, chunk_rows: int = 50_000,
                       on_chunk: Callable[[int], None] | None = None, in_flight: int = 2) -> BatchStats:
    """Run `predict` over `dataset` (`rnnpipe.io.open_dataset`) chunk by chunk and write one
    Parquet file atomically.

    `input_columns` are the columns the model reads. With `group_column` the model answers
    per group (its output names the group); without, it answers row by row and the other input
    columns are kept as keys in front of the predictions (renamed `input_<name>` where an
    output or lineage column has the same name, e.g. the `label` of a labelled test file).
    """
    out_path = Path(output_path)
    if out_path.suffix.lower() not in (".parquet", ".pq"):
        raise DataError(f"{out_path}: the output of a batch job is Parquet; name it *.parquet")
    names = dataset.schema.names
    missing = [c for c in input_columns if c not in names]
    if missing:
        raise DataError(f"input: column {missing[0]!r} not found (columns: {', '.join(names)})")
    chunks = scan(dataset, chunk_rows)
    if group_column:
        chunks = whole_groups(chunks, group_column)
    t0 = time.perf_counter()
    rows_in = rows_out = n_chunks = 0
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None

    def predicted() -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        """(chunk, its predictions) in input order, `in_flight` chunks predicted at a time."""
        with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="predict") as pool:
            pending: deque = deque()
            for chunk in chunks:
                pending.append((chunk, pool.submit(predict, chunk[input_columns])))
                if len(pending) >= in_flight:
                    c, f = pending.popleft()
                    yield c, f.result()
            while pending:
                c, f = pending.popleft()
                yield c, f.result()

    with atomic_path(out_path) as tmp:
        try:
            for chunk, pred in predicted():
                if group_column is None:
                    if len(pred) != len(chunk):
                        raise DataError(f"the model returned {len(pred)} rows for {len(chunk)} inputs")
                    keys = chunk[[c for c in chunk.columns if c not in input_columns]].reset_index(drop=True)
                    # an input column named like an output one (a labelled file's `label`) is
                    # kept as `input_<name>`: the output names stay those users script against
                    taken = set(map(str, pred.columns)) | set(lineage)
                    keys = keys.rename(columns={c: f"input_{c}" for c in keys.columns if str(c) in taken})
                    pred = pd.concat([keys, pred.reset_index(drop=True)], axis=1)
                for k, v in lineage.items():
                    pred[k] = v
                table = pa.Table.from_pandas(pred, preserve_index=False)
                if writer is None:
                    schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f
                                        for f in table.schema]).remove_metadata()
                    writer = pq.ParquetWriter(tmp, schema, compression="zstd")
                writer.write_table(table.cast(schema))
                rows_in += len(chunk)
                rows_out += len(pred)
                n_chunks += 1
                if on_chunk is not None:
                    on_chunk(len(chunk))
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise DataError("input: no rows to predict")
    return BatchStats(rows_in, rows_out, n_chunks, time.perf_counter() - t0, str(out_path))


def count_rows(dataset: ds.Dataset) -> int | None:
    """Rows in the input, when that is cheap to know (Parquet metadata); else None."""
    if isinstance(dataset.format, ds.ParquetFileFormat):
        return dataset.count_rows()
    return None
