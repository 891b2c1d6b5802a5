"""Batch prediction: a registered model over a file, folder or partitioned dataset, in chunks.

The input is scanned with pyarrow `chunk_rows` rows at a time, so memory follows the chunk
size, not the input size. Models that read whole series (forecasts, early warning) get whole
series: rows of the series at the end of a chunk wait for the next chunk. When a series'
rows are not contiguous (rows in any order, newest first, a dataset partitioned by day so one
patient lies in several files), the job starts again through `regrouped`: one pass hashes
every row to a bucket file by series, then each bucket is put in series order and predicted
whole (memory: about one bucket). Output rows then come bucket by bucket. Row-wise
models (review sentiment) keep every input column they do not read as a key beside their
predictions. Every output row carries the model's name, version, alias and MLflow run id. The
Parquet output is written to a temporary file and renamed when complete.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
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

from rnnpipe import localstore
from rnnpipe.batch_input import (
    ROW_ID,
    WHOLE_INPUT,
    NotGrouped,
    RowMap,
    dataset_source,
    input_kind,
    regrouped,
    scan,
    whole_groups,
    whole_input,
)
from rnnpipe.errors import DataError
from rnnpipe.io import atomic_path, clean_stale_temps, missing_input_column, open_dataset, output_kind, temp_prefix
from rnnpipe.localstore import ModelRef

log = logging.getLogger(__name__)


LINEAGE = ("model_name", "model_version", "model_alias", "mlflow_run_id")


@dataclass
class BatchStats:
    rows_in: int
    rows_out: int
    chunks: int
    seconds: float
    output: str
    drift: Any = None  # the job's `rnnpipe.drift.DriftCounter`, when the model has a reference profile
    labels: Any = None  # the job's `rnnpipe.realised.LabelTally`, for a classifier
    drift_error: str = ""  # why the drift report could not be computed (`rnnpipe.drift.Watch`)

    @property
    def rows_per_s(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "output": self.output,
        }


def check_input(model: str, input_path: str | Path, fmt: str = "auto") -> ModelRef:
    """What a batch job can check before it starts: the model reference (-> its `ModelRef`)
    and the input's columns against the ones the model needs (read from the schema, not the
    data), and for an input up to PRECHECK_BYTES its values. From the local store this takes
    well under a second (`rnnpipe.localstore`, no MLflow import); otherwise through MLflow.
    Models logged before this check existed skip the column part."""
    local = localstore.find(model)
    if local is not None:
        ref, info, artifact = local.ref, local.info, local.artifact
    else:
        import mlflow

        from rnnpipe.registry import configure_tracking, resolve_model

        configure_tracking()
        ref = resolve_model(model)
        try:
            info = mlflow.models.get_model_info(ref.uri)
        except Exception:  # noqa: BLE001 - an unreadable model is reported when the job loads it
            info = None

        def artifact(relative: str) -> Path:
            return Path(mlflow.artifacts.download_artifacts(f"{ref.uri}/artifacts/{relative}"))

    dataset, _ = open_dataset(input_path, fmt)
    choices = (info.metadata or {}).get("rnnpipe_input_columns") if info is not None else None
    problem = missing_input_column(choices or [], dataset.schema.names, label="columns")
    if problem:
        raise DataError(f"{dataset_source(dataset)}: {problem}; {ref} reads {', '.join(c[0] for c in choices)}")
    if choices and _input_bytes(dataset) <= PRECHECK_BYTES:
        _check_values(info, artifact, input_path, fmt)
    return ref


# inputs up to this size are read and checked whole before a batch job starts (the values, as
# training checks them); larger ones are checked chunk by chunk as the job reads them
PRECHECK_BYTES = 256 * 2**20


def _input_bytes(dataset: ds.Dataset) -> int:
    return sum(os.path.getsize(f) for f in getattr(dataset, "files", []) if os.path.exists(f))


def _check_values(info, artifact: Callable[[str], Path], input_path: str | Path, fmt: str) -> None:
    """The input's values read with the training loader of the model's pipeline, under the
    model's own settings (numbers, dates, offsets, duplicates, empty channels): a bad value
    fails here, naming its file and row, before the flow and its API start."""
    import json

    from rnnpipe import kinds

    kind = localstore.artefact_kind(info)
    check = kinds.of_artefact(kind).check if kind else ""
    if not check:
        return
    config = artifact("pipeline/config.json")
    kinds.load(check)(json.loads(Path(config).read_text()), input_path, fmt, saved=lambda name: Path(artifact(name)))


class Observers:
    """What watches a batch job's chunks (`observe(inputs, predictions, chunk)`), as one."""

    def __init__(self, *items: Any):
        self.items = [i for i in items if i is not None]

    def __call__(self, inputs: pd.DataFrame, outputs: pd.DataFrame, chunk: pd.DataFrame) -> None:
        for item in self.items:
            item(inputs, outputs, chunk)

    def reset(self) -> None:
        for item in self.items:
            item.reset()


class _Writer:
    """The output file, written chunk by chunk: Parquet (zstd, one schema for every chunk: the
    first chunk's, a column of nulls typed as text) or CSV (a header, then each chunk's rows, as
    pandas writes them)."""

    def __init__(self, path: Path, first: pa.Table, name: Path) -> None:
        self.kind, self.path = output_kind(name), path  # path: the temporary file; name: the output's
        if self.kind == "csv":
            nested = [f.name for f in first.schema if pa.types.is_nested(f.type)]
            if nested:
                raise DataError(f"{name}: the output column {nested[0]!r} holds lists, which CSV cannot; write Parquet")
            self.header = True
            return
        self.schema = pa.schema(
            [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in first.schema]
        ).remove_metadata()
        self.out = pq.ParquetWriter(path, self.schema, compression="zstd")

    def write(self, frame: pd.DataFrame) -> None:
        if self.kind == "csv":
            frame.to_csv(self.path, mode="w" if self.header else "a", header=self.header, index=False)
            self.header = False
        else:
            self.out.write_table(pa.Table.from_pandas(frame, preserve_index=False).cast(self.schema))

    def close(self) -> None:
        if self.kind != "csv":
            self.out.close()


def predict_to_file(
    predict: Callable[[pd.DataFrame], pd.DataFrame],
    input_columns: list[str],
    lineage: dict[str, str],
    dataset: ds.Dataset,
    output_path: str | Path,
    *,
    group_column: str | None = None,
    chunk_rows: int = 50_000,
    on_chunk: Callable[[int], None] | None = None,
    in_flight: int = 2,
    observe: Any = None,
) -> BatchStats:
    """Run `predict` over `dataset` (`rnnpipe.io.open_dataset`) chunk by chunk and write one
    file atomically: Parquet, or CSV for `*.csv` (`output_kind`).

    `input_columns` are the columns the model reads. With `group_column` the model answers
    per group (its output names the group); without, it answers row by row and the other input
    columns are kept as keys in front of the predictions (renamed `input_<name>` where an
    output or lineage column has the same name, e.g. the `label` of a labelled test file).
    `observe(inputs, predictions, chunk)` sees every chunk (`Observers`: the drift report,
    `rnnpipe.drift.Watch`, and the realised accuracy of labelled rows, `rnnpipe.realised`);
    its `reset()` is called when the job starts again to regroup the input.
    """
    out_path = Path(output_path)
    output_kind(out_path)  # a wrong suffix fails before any input is read
    source = dataset_source(dataset)
    names = dataset.schema.names
    missing = [c for c in input_columns if c not in names]
    if missing:
        raise DataError(f"{source}: column {missing[0]!r} not found (columns: {', '.join(names)})")
    t0 = time.perf_counter()
    clean_stale_temps(out_path)
    rows = RowMap(input_kind(dataset))
    if group_column == WHOLE_INPUT:
        return _predict_chunks(
            predict,
            input_columns,
            lineage,
            whole_input(dataset, rows),
            out_path,
            source,
            group_column,
            on_chunk,
            in_flight,
            t0,
            rows,
            observe,
        )
    if group_column:
        counted = [0]

        def count(n: int) -> None:
            counted[0] += n
            if on_chunk is not None:
                on_chunk(n)

        try:
            return _predict_chunks(
                predict,
                input_columns,
                lineage,
                whole_groups(scan(dataset, chunk_rows, rows), group_column, source),
                out_path,
                source,
                group_column,
                count,
                in_flight,
                t0,
                rows,
                observe,
            )
        except NotGrouped as exc:
            log.info("%s; regrouping the input by %s", exc, group_column)
            if on_chunk is not None and counted[0]:
                on_chunk(-counted[0])  # the progress starts again
            if observe is not None:
                observe.reset()
        workdir = Path(tempfile.mkdtemp(prefix=temp_prefix(out_path), suffix=".regroup", dir=out_path.parent))
        try:
            return _predict_chunks(
                predict,
                input_columns,
                lineage,
                regrouped(dataset, group_column, chunk_rows, workdir, rows),
                out_path,
                source,
                group_column,
                on_chunk,
                in_flight,
                t0,
                rows,
                observe,
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return _predict_chunks(
        predict,
        input_columns,
        lineage,
        scan(dataset, chunk_rows, rows),
        out_path,
        source,
        None,
        on_chunk,
        in_flight,
        t0,
        rows,
        observe,
    )


def _predict_chunks(
    predict,
    input_columns,
    lineage,
    chunks,
    out_path: Path,
    source: str,
    group_column: str | None,
    on_chunk,
    in_flight: int,
    t0: float,
    rows: RowMap,
    observe: Any = None,
) -> BatchStats:
    rows_in = rows_out = n_chunks = 0
    writer: _Writer | None = None

    def predicted() -> Iterator[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
        """(chunk, the model's input, its predictions) in input order, `in_flight` chunks
        predicted at a time."""
        with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="predict") as pool:
            pending: deque = deque()
            for chunk in chunks:
                # the model sees the job's row numbers as the index: its errors name them
                model_input = chunk[input_columns].set_axis(pd.Index(chunk[ROW_ID].to_numpy()))
                pending.append((chunk, model_input, pool.submit(predict, model_input)))
                if len(pending) >= in_flight:
                    c, m, f = pending.popleft()
                    yield c, m, f.result()
            while pending:
                c, m, f = pending.popleft()
                yield c, m, f.result()

    with atomic_path(out_path) as tmp:
        try:
            for chunk, model_input, pred in predicted():
                if observe is not None:
                    observe(model_input, pred, chunk)
                if group_column is None:
                    if len(pred) != len(chunk):
                        raise DataError(f"the model returned {len(pred)} rows for {len(chunk)} inputs")
                    keys = chunk[[c for c in chunk.columns if c not in (*input_columns, ROW_ID)]].reset_index(drop=True)
                    # an input column named like an output one (a labelled file's `label`) is
                    # kept as `input_<name>`: the output names stay those users script against
                    taken = set(map(str, pred.columns)) | set(lineage)
                    keys = keys.rename(columns={c: f"input_{c}" for c in keys.columns if str(c) in taken})
                    pred = pd.concat([keys, pred.reset_index(drop=True)], axis=1)
                for k, v in lineage.items():
                    pred[k] = v
                if writer is None:
                    first = pa.Table.from_pandas(pred, preserve_index=False)
                    writer = _Writer(tmp, first, out_path)
                writer.write(pred)
                rows_in += len(chunk)
                rows_out += len(pred)
                n_chunks += 1
                if on_chunk is not None:
                    on_chunk(len(chunk))
        except NotGrouped:
            raise
        except DataError as exc:  # the model's own validation: say which file and row
            message = rows.rewrite(str(exc))
            raise DataError(message if message.startswith(source) else f"{source}: {message}") from None
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise DataError(f"{source}: no rows to predict (the input has a header and no rows)")
    return BatchStats(rows_in, rows_out, n_chunks, time.perf_counter() - t0, str(out_path))
