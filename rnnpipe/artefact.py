"""The written contracts between a pipeline kind and the rest of rnnpipe.

`Artefact` is what a kind's fitted pipeline must offer (the registry logs it as a pyfunc model,
batch jobs and the server call it); `PreparedData` is what its prepared data offers the
training flow (the run's fingerprint and source, the window counts). Both are Protocols: a
kind's classes satisfy them by their shape, and `tests/test_artefacts.py` checks every kind
against them (in the spirit of scikit-learn's `check_estimator`).

Every saved artefact carries `format.json` (`mark`): its kind, FORMAT_VERSION and the rnnpipe
version that wrote it; `check` refuses on load an artefact of another kind or of a newer
format than this code reads. A folder without the file was saved before formats were
versioned (format 0) and loads as it did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import pandas as pd

from rnnpipe import __version__
from rnnpipe.errors import ModelError

# the layout of a saved artefact; raise it when a saved folder changes in a way older code
# cannot read (and teach `load` to read the older layouts)
FORMAT_VERSION = 1
FORMAT_FILE = "format.json"


@runtime_checkable
class Artefact(Protocol):
    """A fitted pipeline: raw input in, predictions out, the preprocessing inside.

    Optional, found by name where used: `model`, the torch module (batch jobs move it to
    their device; a servable baseline has none); `column_choices()`, the names each needed
    input column is accepted under (default: `batch_spec`'s columns); `inference_params()`,
    the request parameters `predict` takes and their defaults (the language model's
    generation settings, MLflow's params schema); `drift_values(inputs, outputs)`, a batch
    chunk's (features, predictions[, the series of each feature value]) for its drift
    report (`rnnpipe.drift`), the same features as the kind's `TrainingSteps.profile`
    computed on the training data;
    `PACKAGES`, the packages its pyfunc needs beyond the runtime ones (a servable baseline's
    own library), pinned in the logged model's requirements; `label_tally()`, what scores a
    job's labelled rows; `actuals_columns()` and
    `realised_scores(output, actuals)`, what `rnnpipe predict --actuals FILE` reads and how
    the job's output is scored against it (`rnnpipe.realised`)."""

    KIND: ClassVar[str]  # what a logged model records (`model_config["kind"]`, `rnnpipe.kinds`)

    def save(self, path: str | Path) -> Path:
        """Write the artefact into the folder `path` (with `mark`) and return it."""
        ...

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Artefact:
        """Read what `save` wrote (after `check`)."""
        ...

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Raw input rows -> prediction rows; a user error raises `rnnpipe.errors.DataError`."""
        ...

    def batch_spec(self, available: list[str]) -> tuple[list[str], str | None]:
        """(the input columns it reads, given the `available` ones; the column whose groups it
        needs whole, `rnnpipe.batch_input.WHOLE_INPUT`, or None: it answers row by row)."""
        ...


@runtime_checkable
class PreparedData(Protocol):
    """A kind's data after ingestion, splitting and fitting the preprocessing on train."""

    preprocessor: Any  # fitted on train only; saved inside the artefact

    @property
    def fingerprint(self) -> str:
        """sha256 of the data as the model sees it (the run's `data_fingerprint` tag)."""
        ...

    @property
    def source(self) -> str:
        """The file, folder or dataset it was read from."""
        ...

    def counts(self) -> dict[str, Any]:
        """Windows (or texts) per part: what the run's `data/split.json` reports."""
        ...


def mark(path: str | Path, kind: str) -> None:
    """Write `format.json` into a saved artefact's folder."""
    info = {"kind": kind, "format_version": FORMAT_VERSION, "rnnpipe_version": __version__}
    (Path(path) / FORMAT_FILE).write_text(json.dumps(info))


def check(path: str | Path, kind: str) -> int:
    """The saved artefact's format version (0: saved before versions), after checking that
    this code can read it as a `kind` artefact."""
    file = Path(path) / FORMAT_FILE
    if not file.is_file():
        return 0
    try:
        info = json.loads(file.read_text())
        found, version = info["kind"], int(info["format_version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{file}: not a readable artefact format file ({exc})") from None
    if found != kind:
        raise ModelError(f"{Path(path)} holds a {found!r} artefact, not a {kind!r} one")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"{Path(path)} was saved in artefact format {version} by rnnpipe "
            f"{info.get('rnnpipe_version', '?')}; this rnnpipe ({__version__}) reads formats up to "
            f"{FORMAT_VERSION}: upgrade rnnpipe to load it"
        )
    return version
