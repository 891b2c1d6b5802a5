"""A new pipeline kind is one package plus one line in the kinds registry: the toy kind of
tests/toy_kind, registered with that one line, is offered by the CLI, trains through its
Prefect flow into MLflow behind the champion gate, predicts as a batch job through its
registered pyfunc model, and conforms to the artefact contract."""

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from rnnpipe import artefact, kinds
from rnnpipe.cli import cli


@pytest.fixture
def toy(monkeypatch):
    from toy_kind import KIND

    monkeypatch.setitem(kinds.KINDS, KIND.name, KIND)  # the one line
    return KIND


@pytest.mark.slow
def test_a_toy_kind_is_one_package_and_one_registry_line(toy, prefect_harness, tmp_path):
    values = pd.DataFrame({"value": 10 + np.sin(np.arange(200) / 5)})
    values.to_csv(tmp_path / "values.csv", index=False)
    runner = CliRunner()
    assert "toy" in runner.invoke(cli, ["train", "--help"]).output
    shown = runner.invoke(cli, ["config", "toy"])
    assert shown.exit_code == 0 and 'value_col = "value"' in shown.output, shown.output
    # a bad value is refused before any flow, by the kind's own loader, with the row
    values.assign(value=values.value.where(values.index != 7)).to_csv(tmp_path / "bad.csv", index=False)
    bad = runner.invoke(cli, ["train", "toy", "--set", f"data.path={tmp_path / 'bad.csv'}"])
    assert bad.exit_code == 2 and "bad.csv, row 8: column 'value' is empty" in bad.output, bad.output

    trained = runner.invoke(cli, ["-q", "train", "toy", "--set", f"data.path={tmp_path / 'values.csv'}"])
    assert trained.exit_code == 0, trained.output[-3000:]
    # a run on a file of one's own gets a model name of its own, as for the shipped kinds
    assert "values-mean v1 -> champion" in trained.output and "zero baseline" in trained.output, trained.output
    assert "no version of" not in trained.output
    # a model that loses to its baseline, with no champion before it, says how to serve it anyway
    values.assign(value=np.where(values.index < 160, 10.0, 1.0)).to_csv(tmp_path / "shifted.csv", index=False)
    lost = runner.invoke(cli, ["-q", "train", "toy", "--set", f"data.path={tmp_path / 'shifted.csv'}"])
    assert lost.exit_code == 0 and "shifted-mean v1 -> challenger" in lost.output, lost.output[-3000:]
    assert "no version of shifted-mean is champion yet; to serve this one anyway: rnnpipe serve shifted-mean/1" in (
        lost.output
    )
    out = tmp_path / "forecast.parquet"
    predicted = runner.invoke(cli, ["predict", "values-mean", "-i", str(tmp_path / "values.csv"), "-o", str(out)])
    assert predicted.exit_code == 0, predicted.output[-3000:]
    got = pd.read_parquet(out)
    assert len(got) == 200 and np.allclose(got.forecast, values.value.iloc[:160].mean())

    from rnnpipe.registry import load_pipeline, resolve_model

    pipe = load_pipeline(resolve_model("values-mean"), "toy")
    assert isinstance(pipe, artefact.Artefact) and type(pipe) is toy.pipeline_class()
    assert artefact.check(pipe.save(tmp_path / "saved"), "toy") == artefact.FORMAT_VERSION
