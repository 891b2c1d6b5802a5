"""The bad-input corpus (tests/bad_inputs, built by make_corpus.py) through `rnnpipe train`
and `rnnpipe predict`: every file either works or exits 2 with one `error:` line naming the
file and what is wrong with it (column, series, row), with no traceback, no new registered
version and no output file. `cases.toml` says which, per file and command."""

import re
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from rnnpipe.cli import cli

pytestmark = pytest.mark.slow
CORPUS = Path(__file__).resolve().parent / "bad_inputs"
CASES = tomllib.loads((CORPUS / "cases.toml").read_text())

# tiny models: the cases are about input, not quality
TRAIN = {
    "stocks": [
        "window.lookback=20",
        "model.hidden_size=8",
        "model.num_layers=1",
        "train.epochs=1",
        "baselines.statistical=[]",
        "register.gate_baselines=[naive]",
        "model.quantiles=[]",
    ],
    "monitor": [
        "data.series_col=pid",
        "data.timestamp_col=ts",
        "window.lookback=12",
        "window.horizon=3",
        "model.hidden_size=8",
        "train.epochs=1",
        "forecast.enabled=false",
    ],
    "reviews": ["train.epochs=1", "model.hidden_size=8", "embed.dim=16", "text.max_len=60"],
}


def params(command):
    return [
        pytest.param(domain, file, spec[command], id=f"{domain}/{file}")
        for domain, files in CASES.items()
        for file, spec in files.items()
    ]


def versions() -> int:
    client = MlflowClient()
    return sum(len(client.search_model_versions(f"name='{m.name}'")) for m in client.search_registered_models())


def check(result, expected: str, path: Path, before: int, output: Path | None = None):
    text = result.output
    assert "Traceback" not in text and result.exception is None or isinstance(result.exception, SystemExit), text
    if expected == "ok":
        assert result.exit_code == 0, text
        return
    assert result.exit_code == 2, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    assert path.name in errors[0] and re.search(expected, errors[0]), errors[0]
    assert versions() == before, "a failed run registered a version"
    assert output is None or not output.exists()


@pytest.mark.parametrize("domain,file,expected", params("train"))
def test_train_takes_or_names_each_bad_input(prefect_harness, domain, file, expected, tmp_path):
    path = CORPUS / domain / file
    before = versions()
    sets = [f"data.path={path}", *TRAIN[domain], "register.experiment=corpus", f"register.model_name=corpus-{domain}"]
    result = CliRunner().invoke(cli, ["train", domain, *[a for s in sets for a in ("--set", s)]])
    check(result, expected, path, before)


@pytest.mark.parametrize("domain,file,expected", params("predict"))
def test_predict_takes_or_names_each_bad_input(models, domain, file, expected, tmp_path):
    path = CORPUS / domain / file
    name, version = models[domain]
    out = tmp_path / "out.parquet"
    before = versions()
    result = CliRunner().invoke(cli, ["predict", f"{name}/{version}", "-i", str(path), "-o", str(out)])
    check(result, expected, path, before, out)
    if expected == "ok":
        assert len(pd.read_parquet(out)) > 0
