"""Helpers for serving registered models with `mlflow models serve`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from rnnpipe import settings
from rnnpipe.registry import ModelRef


def example_request(ref: ModelRef) -> Path:
    """A ready-to-send request body for the model (its logged input example, in the
    `dataframe_split` form /invocations takes), written under .rnnpipe/serve/."""
    out = settings.project_home() / ".rnnpipe" / "serve" / f"{ref.name}-v{ref.version}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        src = mlflow.artifacts.download_artifacts(f"{ref.uri}/serving_input_example.json")
        shutil.copyfile(src, out)
    except (MlflowException, OSError):  # a model logged without an example
        out.write_text(json.dumps({"dataframe_split": {"columns": [], "data": []}}))
    return out
