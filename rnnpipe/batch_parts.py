"""Batch jobs split into parts for a cluster's workers: the plan (whole files, or hash buckets
for a series model whose series span files), one part's job, the folder written atomically
with a `_SUCCESS` marker, and the parts' statistics combined."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from rnnpipe.batch_input import WHOLE_INPUT, RowMap, dataset_source, input_kind, sorted_bucket, write_buckets
from rnnpipe.batch_jobs import BatchStats, predict_to_file
from rnnpipe.errors import DataError
from rnnpipe.io import clean_stale_temps, temp_prefix

log = logging.getLogger(__name__)


SUCCESS = "_SUCCESS"


@dataclass(frozen=True)
class Part:
    """One part of a job: fragment `index` of the input, a bucket file, or the whole input."""

    number: int
    index: int | None = None
    bucket: str = ""

    def name(self, kind: str = "parquet") -> str:
        """Its file in the job's output folder: Parquet, or CSV for an output named `*.csv`."""
        return f"part-{self.number:05d}.{kind}"


def plan_parts(
    dataset: ds.Dataset, group_column: str | None, chunk_rows: int, workdir: Path, min_parts: int = 1
) -> tuple[list[Part], RowMap]:
    """The parts of a job over `dataset` (see above), and where the rows of bucket parts
    come from (for their error messages)."""
    n = len(list(dataset.get_fragments()))
    rows = RowMap(input_kind(dataset))
    if group_column == WHOLE_INPUT:
        return [Part(0)], rows
    if not group_column or _groups_within_files(dataset, group_column):
        return [Part(i, index=i) for i in range(n)], rows
    log.info("the series of %s span its files: grouping the rows by %s first", dataset_source(dataset), group_column)
    buckets = write_buckets(dataset, group_column, chunk_rows, workdir, rows, min_buckets=min_parts)
    for path in buckets:
        pq.write_table(sorted_bucket(path, group_column), path)
    return [Part(i, bucket=str(p)) for i, p in enumerate(buckets)], rows


def _groups_within_files(dataset: ds.Dataset, column: str) -> bool:
    """Whether no group (series) has rows in two input files (read: the group column only)."""
    seen: set[str] = set()
    for fragment in dataset.get_fragments():
        keys = set(fragment.to_table(columns=[column], schema=dataset.schema)[column].cast(pa.string()).to_pylist())
        if keys & seen:
            return False
        seen |= keys
    return True


def part_dataset(dataset: ds.Dataset, part: Part) -> ds.Dataset:
    """The rows of `part` as a dataset of their own (partition columns kept)."""
    if part.bucket:
        return ds.dataset(part.bucket, format="parquet")
    if part.index is None:
        return dataset
    fragment = list(dataset.get_fragments())[part.index]
    return ds.FileSystemDataset([fragment], dataset.schema, dataset.format, dataset.filesystem)


def predict_part(
    predict: Callable[[pd.DataFrame], pd.DataFrame],
    input_columns: list[str],
    lineage: dict[str, str],
    dataset: ds.Dataset,
    part: Part,
    folder: Path,
    *,
    group_column: str | None,
    chunk_rows: int,
    observe: Any = None,
    kind: str = "parquet",
) -> BatchStats:
    """One part predicted into `folder`/part-NNNNN.parquet (.csv for `kind` csv; what a worker
    runs)."""
    return predict_to_file(
        predict,
        input_columns,
        lineage,
        part_dataset(dataset, part),
        folder / part.name(kind),
        group_column=group_column,
        chunk_rows=chunk_rows,
        in_flight=1,
        observe=observe,
    )


def part_error(exc: DataError, part: Part, source: str, rows: RowMap) -> DataError:
    """A part's error as the whole job's: a bucket's rows named by input file and row."""
    message = str(exc)
    if part.bucket:
        message = rows.rewrite(message.replace(part.bucket, source, 1))
    return DataError(message)


@contextlib.contextmanager
def atomic_folder(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """A temporary folder beside `path`, renamed into place (with `_SUCCESS` written last by
    the caller) only if the block succeeds; removed otherwise."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(final)
    if final.exists() and not overwrite:
        raise DataError(f"{final} exists; pass --overwrite to replace it")
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final), suffix=".tmp", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would outlive the rename: a folder as mkdir makes it
    try:
        yield tmp
        if not (tmp / SUCCESS).exists():
            raise RuntimeError(f"{tmp}: no {SUCCESS}; the job did not finish")
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(final), suffix=".tmp", dir=final.parent))
            os.replace(final, old / "old") if final.is_dir() else os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def combine(stats: list[BatchStats], seconds: float, output: str) -> BatchStats:
    """The parts' statistics as the job's (their drift and label counts added up)."""
    drift = labels = None
    for s in stats:
        if s.drift is not None:
            drift = s.drift if drift is None else drift.merge(s.drift)
        if s.labels is not None:
            labels = s.labels if labels is None else labels.merge(s.labels)
    return BatchStats(
        sum(s.rows_in for s in stats),
        sum(s.rows_out for s in stats),
        sum(s.chunks for s in stats),
        seconds,
        output,
        drift,
        labels,
        "; ".join(dict.fromkeys(s.drift_error for s in stats if s.drift_error)),
    )
