"""The project's own MLflow store read without MLflow, for checks before a job starts.

Importing MLflow and opening its store take about 3 s, so a wrong model name, a missing
column or a bad value would take that long to report. When the tracking URI is the local
SQLite store (the default), `find` reads the registry's tables and the registered version's
`MLmodel` file directly (read-only), in a few milliseconds. It answers only what it can tell
for sure: no store at all, no such model, alias or version (`ModelError`, the same message
`rnnpipe.registry.resolve_model` gives), or the version and its local model folder. Anything
else (another tracking URI, a remote artefact store, a table layout it does not know) gives
None, and MLflow itself decides as before. Jobs and servers still resolve the model through
MLflow when they start; this module never writes.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from rnnpipe import kinds, settings
from rnnpipe.errors import ModelError

CHAMPION = "champion"
_DELETED = "Deleted_Internal"  # MLflow's mark on a deleted model version's row


@dataclass
class ModelRef:
    """One registered model version, as a user named it (alias kept for lineage)."""

    name: str
    version: str
    alias: str
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def __str__(self) -> str:
        return f"{self.name} v{self.version}" + (f" (@{self.alias})" if self.alias else "")


def parse_spec(spec: str) -> tuple[str, str, str]:
    """`NAME@ALIAS`, `NAME/VERSION`, `NAME` (its champion) or `models:/...` -> (name, alias, version)."""
    text = spec.removeprefix("models:/").strip("/")
    if "@" in text:
        name, alias = text.split("@", 1)
        return name, alias, ""
    if "/" in text:
        name, version = text.rsplit("/", 1)
        return name, "", version
    return text, CHAMPION, ""


def not_registered(spec: str, uri: str, known: list[str], versions: dict[str, list[str]] | None = None) -> ModelError:
    """The error for a reference the registry does not hold (one message, whoever finds it).
    `versions`: the model's versions and their aliases, named so the user can pick one (a
    model whose every version lost to its baseline has no champion)."""
    import difflib

    name, alias, version = parse_spec(spec)
    if name not in known:  # a misspelt name is not a missing alias
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return ModelError(
            f"model {spec!r}: no registered model named {name!r} in the registry at {uri} "
            f"(registered models: {', '.join(known) or 'none'}){hint}"
        )
    what = f"alias @{alias}" if alias else f"version {version}"
    hint = ""
    if versions:
        newest = sorted(versions, key=lambda v: int(v) if v.isdigit() else 0, reverse=True)
        listed = [f"v{v}" + "".join(f" @{a}" for a in sorted(versions[v])) for v in newest[:10]]
        more = ", ..." if len(newest) > 10 else ""
        hint = f"; its versions: {', '.join(listed)}{more} (name one, e.g. {name}/{newest[0]})"
        if alias == CHAMPION:
            hint = f"; no version passed the gate{hint}"
    return ModelError(f"model {spec!r}: {name!r} has no {what} in the registry at {uri}{hint}")


@dataclass
class ModelInfo:
    """What a check needs of a logged model (the fields of `mlflow.models.ModelInfo` it reads)."""

    flavors: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] | None = None


@dataclass
class LocalVersion:
    ref: ModelRef
    folder: Path  # the logged model's folder (its MLmodel file and artifacts/)
    info: ModelInfo

    def artifact(self, relative: str) -> Path:
        """A file of the model's python_function artifacts, e.g. `pipeline/config.json`."""
        return self.folder / "artifacts" / relative


def _missing_store(spec: str, store: Path) -> ModelError:
    name = parse_spec(spec)[0]
    kind = next(
        (k for k in kinds.names() if kinds.get(k).config_class()().register.model_name == name), kinds.names()[0]
    )
    return ModelError(
        f"model {spec!r}: nothing is registered yet (no MLflow store at {store}); "
        f"train a model first, e.g. `rnnpipe train {kind}`"
    )


def find(spec: str) -> LocalVersion | None:
    """The registered version `spec` names, read from the local store; raises `ModelError`
    when the store shows there is none; None when only MLflow can tell."""
    store = settings.missing_store()
    if store is not None:
        raise _missing_store(spec, store)
    uri = settings.tracking_uri()
    db_file = settings.sqlite_file(uri)
    if db_file is None:
        return None
    name, alias, version = parse_spec(spec)
    try:
        with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=5) as db:
            if alias:
                rows = db.execute(
                    "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?", (name, alias)
                ).fetchall()
            elif re.fullmatch(r"[0-9]+", version):
                rows = [(int(version),)]
            else:
                rows = []
            found = []
            if len(rows) == 1:
                found = db.execute(
                    "SELECT version, run_id, status, storage_location FROM model_versions "
                    "WHERE name = ? AND version = ? AND current_stage != ?",
                    (name, rows[0][0], _DELETED),
                ).fetchall()
            if len(rows) > 1 or len(found) > 1:
                return None  # several workspaces, or a layout this reader does not know
            if not found:
                known = [r[0] for r in db.execute("SELECT name FROM registered_models ORDER BY name LIMIT 100")]
                versions: dict[str, list[str]] = {
                    str(v): []
                    for (v,) in db.execute(
                        "SELECT version FROM model_versions WHERE name = ? AND current_stage != ?", (name, _DELETED)
                    )
                }
                for a, v in db.execute("SELECT alias, version FROM registered_model_aliases WHERE name = ?", (name,)):
                    versions.setdefault(str(v), []).append(a)
                raise not_registered(spec, uri, known, versions)
    except sqlite3.Error:
        return None
    ((number, run_id, status, location),) = found
    parsed = urlparse(location or "")
    if status != "READY" or parsed.scheme != "file":
        return None
    folder = Path(unquote(parsed.path))
    info = _read_mlmodel(folder / "MLmodel")
    if info is None:
        return None
    return LocalVersion(ModelRef(name, str(number), alias, run_id or ""), folder, info)


def artefact_kind(info) -> str | None:
    """The pipeline kind a logged model records (`log_pipeline_model`'s model_config), from
    its `ModelInfo` (this module's or MLflow's); None for a model rnnpipe did not log."""
    return (info.flavors.get("python_function", {}).get("config") or {}).get("kind")


def _read_mlmodel(path: Path) -> ModelInfo | None:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(doc, dict):
        return None
    return ModelInfo(flavors=doc.get("flavors") or {}, metadata=doc.get("metadata"))
