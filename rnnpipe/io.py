"""Reading tables through pyarrow, validating them into series, and writing atomically.

`read_table` takes a CSV, Parquet or JSON Lines file, a folder of them, or a hive-partitioned
dataset (`Ticker=AAPL/part-0.parquet`) and remembers, for every row, the file and row it came from, so
that every later error can say where the bad value is.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds

from rnnpipe.errors import DataError

log = logging.getLogger(__name__)


FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}

WRITABLE = ("csv", "parquet")


@dataclass
class RowOrigin:
    """Where each row of a table came from: its 0-based row in its file, or in the input
    DataFrame when `file_index` is None. `kind` "csv" (a header line) or "jsonl" (none) adds
    the line number to the description."""

    row: np.ndarray
    files: list[str] = field(default_factory=list)
    file_index: np.ndarray | None = None
    kind: str = ""
    label: str = "input"

    def describe(self, i: int) -> str:
        r = int(self.row[i])
        if self.file_index is None:
            return f"{self.label} row {r}"
        first_line = {"csv": 2, "jsonl": 1}.get(self.kind)
        line = f" (line {r + first_line})" if first_line else ""
        return f"{self.files[int(self.file_index[i])]}, row {r + 1}{line}"

    def take(self, order: np.ndarray) -> RowOrigin:
        fi = None if self.file_index is None else self.file_index[order]
        return RowOrigin(self.row[order], self.files, fi, self.kind, self.label)


def detect_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if path.is_file():
        suffixes = [s.lower() for s in path.suffixes]
        for s in reversed(suffixes):
            if s in FORMATS:
                return FORMATS[s]
        raise DataError(f"{path}: cannot tell the format from the name; set data.format=csv, parquet or jsonl")
    found = {FORMATS[p.suffix.lower()] for p in path.rglob("*") if p.suffix.lower() in FORMATS}
    if len(found) != 1:
        what = "no CSV, Parquet or JSON Lines files" if not found else "files of several formats"
        raise DataError(f"{path}: folder holds {what}; set data.path to one dataset")
    return found.pop()


def open_dataset(
    path: str | Path, fmt: str = "auto", csv_types: dict[str, pa.DataType] | None = None
) -> tuple[ds.Dataset, str]:
    """A pyarrow dataset over a file, folder or hive-partitioned dataset, and its format.
    `csv_types` fixes the type of CSV columns (the others are inferred)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {p}")
    kind = detect_format(p, fmt)
    if kind == "csv":
        file_format = ds.CsvFileFormat(convert_options=pacsv.ConvertOptions(column_types=csv_types or {}))
    elif kind == "jsonl":
        file_format = ds.JsonFileFormat()
    else:
        file_format = ds.ParquetFileFormat()
    try:
        dataset = ds.dataset(str(p), format=file_format, partitioning="hive", exclude_invalid_files=False)
        _ = dataset.schema  # reads the first file: a bad file fails here, with its path
    except (pa.ArrowInvalid, OSError) as exc:
        raise unreadable(p, kind, exc) from None
    return dataset, kind


def jsonl_files(path: Path) -> list[Path]:
    """The JSON Lines file at `path`, or those under the folder, in order."""
    return sorted(f for f in path.rglob("*") if FORMATS.get(f.suffix.lower()) == "jsonl") if path.is_dir() else [path]


def jsonl_records(file: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """The non-blank lines of a JSON Lines file, one at a time (pyarrow's reader fails the
    whole file on one bad line and names neither): (line number, the record or None, why it
    is None: `undecodable:...` or `not_text:...`, the reason codes of a bad row)."""
    import json

    with open(file, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.rstrip(b"\r\n").decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield number, None, f"undecodable:bytes that are not UTF-8 (at byte {exc.start} of the line)"
            except ValueError as exc:
                yield number, None, f"not_text:not valid JSON ({exc})"
            else:
                if isinstance(record, dict):
                    yield number, record, None
                else:
                    yield number, None, f"not_text:not a JSON object but a {type(record).__name__}"


def unreadable(path: str | Path, kind: str, exc: Exception) -> DataError:
    """The error for a file (or dataset) pyarrow cannot read; for JSON Lines, the first bad
    line, named (`jsonl_records`)."""
    p = Path(path)
    if kind == "jsonl":
        for file in jsonl_files(p):
            for number, _, problem in jsonl_records(file):
                if problem:
                    return DataError(f"{file}, line {number}: {problem.partition(':')[2]}")
    return DataError(f"{p}: cannot read as {kind}: {exc}")


def missing_input_column(choices: Sequence[Sequence[str]], sent: Sequence[str], label: str = "sent") -> str | None:
    """What is wrong with a table whose columns are `sent`, for a model that needs one column
    of each list in `choices` (a list: the names it accepts for it), or None when nothing is
    missing: the missing column, the columns that were sent, and the closest sent column that
    no other need takes (same name in another case, a similar spelling, or the one column left
    over), e.g. "column 'text' not found; sent: Text, id; did you mean 'Text'?" (`label`: what
    the list of columns is called: "sent" for a request, "columns" for a file)."""
    import difflib

    sent = [str(c) for c in sent]
    missing = [accepted for accepted in choices if not set(accepted).intersection(sent)]
    if not missing:
        return None
    accepted = list(missing[0])
    message = (
        f"column {accepted[0]!r} not found"
        f"{' (nor ' + ', '.join(map(repr, accepted[1:])) + ')' if accepted[1:] else ''}; "
        f"{label}: {', '.join(sent) if sent else 'none'}"
    )
    taken = {c for names in choices for c in names}
    spare = [c for c in sent if c not in taken]
    by_case = {c.casefold(): c for c in spare}
    close = (
        [by_case[a.casefold()] for a in accepted if a.casefold() in by_case]
        or [
            by_case[m]
            for a in accepted
            for m in difflib.get_close_matches(a.casefold(), list(by_case), n=1, cutoff=0.6)
        ]
        or (spare if len(spare) == 1 and len(missing) == 1 else [])
    )
    if close:
        message += f"; did you mean {close[0]!r}? (send it as {accepted[0]!r})"
    return message


def read_table(
    path: str | Path,
    columns: Sequence[str] | None,
    fmt: str = "auto",
    text_columns: Sequence[str] = (),
    binary_columns: Sequence[str] = (),
    files: Sequence[str] | None = None,
) -> tuple[pa.Table, RowOrigin]:
    """Read `columns` (None: all) from a file, folder or partitioned dataset (only the data
    files named in `files`, when given: one shard of it, its partition columns kept).

    In CSV files every requested column is read as text, so that a malformed value becomes
    our own error message (with its row) rather than a parser failure; Parquet and JSON keep
    their types. Columns in `text_columns` are returned as strings; columns in
    `binary_columns` as raw bytes (CSV and Parquet), for the caller to decode row by row.
    """
    p = Path(path)
    types = {c: pa.string() for c in columns or ()} | {c: pa.binary() for c in binary_columns}
    dataset, kind = open_dataset(p, fmt, csv_types=types)
    names = dataset.schema.names
    columns = list(names) if columns is None else list(columns)
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(f"{p}: column {missing[0]!r} not found (columns: {', '.join(names)})")

    wanted = None if files is None else set(files)
    tables, file_ids, rows, files = [], [], [], []
    for fragment in dataset.get_fragments():
        if wanted is not None and fragment.path not in wanted:
            continue
        try:
            part = fragment.to_table(schema=dataset.schema, columns=columns)
        except (pa.ArrowInvalid, OSError) as exc:
            raise unreadable(fragment.path, kind, exc) from None
        file_ids.append(np.full(part.num_rows, len(files), dtype=np.int32))
        files.append(fragment.path)
        tables.append(part)
        rows.append(np.arange(part.num_rows, dtype=np.int64))
    if not tables:
        raise DataError(f"{p}: no data files found")
    table = pa.concat_tables(tables)
    for c in text_columns:
        table = table.set_column(table.schema.get_field_index(c), c, table[c].cast(pa.string()))
    for c in binary_columns:
        if pa.types.is_string(table[c].type) or pa.types.is_large_string(table[c].type):
            table = table.set_column(table.schema.get_field_index(c), c, table[c].cast(pa.binary()))
    origin = RowOrigin(np.concatenate(rows), files, np.concatenate(file_ids), kind)
    return table, origin


_PRELOADED: dict[str, tuple[str, Any]] = {}


def _files_state(value: Any) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of every file behind the `path` / `test_path` settings in `value`."""
    from rnnpipe.settings import resolve_data_path

    out = []
    for key, v in value.items() if isinstance(value, dict) else ():
        if isinstance(v, dict):
            out += _files_state(v)
        elif key in ("path", "test_path") and isinstance(v, str) and v:
            out += files_state(resolve_data_path(v))
    return out


def files_state(path: str | Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of the file, or of every file under the folder, at `path`: what
    tells whether data changed without reading it."""
    p = Path(path)
    out = []
    for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
        with contextlib.suppress(OSError):
            st = f.stat()
            if not f.is_dir():
                out.append((str(f), st.st_size, st.st_mtime_ns))
    return out


def preloadable(load: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Make a loader of a config's data preloadable: `load.preload(cfg)` reads and validates
    the data now (the CLI does it before any flow starts, so that a bad file fails at once
    and is reported once), and the next `load(cfg)` with the same settings and unchanged files
    (the flow's ingest task, in the same process) takes that result instead of reading again.
    A preloaded result is handed out once; every other call reads the files."""
    import dataclasses
    import json

    def key(cfg: Any) -> str:
        state = dataclasses.asdict(cfg)
        return json.dumps([state, _files_state(state)], sort_keys=True, default=str)

    @functools.wraps(load)
    def wrapper(cfg: Any) -> Any:
        slot = _PRELOADED.pop(load.__qualname__, None)
        if slot is not None and slot[0] == key(cfg):
            return slot[1]
        return load(cfg)

    def preload(cfg: Any) -> None:
        _PRELOADED[load.__qualname__] = (key(cfg), load(cfg))

    wrapper.preload = preload  # type: ignore[attr-defined]
    return wrapper


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def temp_prefix(final: Path) -> str:
    """The name prefix of our temporary files and folders beside `final`: `.<name>.<pid>.`"""
    return f".{final.name}.{os.getpid()}."


def clean_stale_temps(final: Path) -> list[Path]:
    """Remove what an earlier job that died (SIGKILL, power loss) left beside `final`: only
    our own temporary names (`.<name>.<pid>.*.tmp` / `.regroup`) and only those whose process
    is gone. Returns what was removed."""
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(\d+)\..+\.(tmp|regroup)$")
    removed = []
    if not final.parent.is_dir():
        return removed
    for p in final.parent.iterdir():
        m = pattern.match(p.name)
        if not m or _alive(int(m.group(1))):
            continue
        try:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        except FileNotFoundError:  # another job cleaned it first
            continue
        removed.append(p)
        log.warning("removed %s, left by an earlier job that did not finish (process %s)", p, m.group(1))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.
    Temporary files of earlier jobs that died are removed first (`clean_stale_temps`)."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(final)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(final), suffix=".tmp", dir=final.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result should not be
    try:
        yield Path(tmp)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def output_kind(path: str | Path, name: str = "") -> str:
    """What an output file is, by its suffix: "parquet" or "csv" (`name`: what the error calls
    the output, e.g. the setting that gave it; default its path)."""
    kind = FORMATS.get(Path(path).suffix.lower())
    if kind not in WRITABLE:
        raise DataError(f"{name or path}: rnnpipe writes Parquet or CSV; name the output *.parquet or *.csv")
    return kind


def read_output(path: str | Path) -> pd.DataFrame:
    """A batch job's output as it wrote it: a Parquet or CSV file, or a Dask job's folder of
    part files (its `_SUCCESS` marker is not read)."""
    dataset, _ = open_dataset(path, "auto")
    return dataset.to_table().to_pandas()


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame as Parquet or CSV (by suffix), atomically."""
    final = Path(path)
    kind = output_kind(final)
    with atomic_path(final) as tmp:
        if kind == "csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return final


def check_text_column(path: str | Path, fmt: str, accepted: list[str]) -> None:
    """The first of `accepted` in a batch input must hold text: an integer column (star
    ratings mapped as the text) is refused, naming the file and column, rather than answered
    row by row with notes. CSV columns carry no type (every column can be read as text)."""
    dataset, kind = open_dataset(path, fmt)
    present = [c for c in accepted if c in dataset.schema.names]
    if kind == "csv" or not present:
        return
    t = dataset.schema.field(present[0]).type
    if not (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_null(t)
        or pa.types.is_dictionary(t)
    ):
        raise DataError(f"{path}: column {present[0]!r} holds {t} values, expected text")
