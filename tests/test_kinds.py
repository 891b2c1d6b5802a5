"""The one declaration of pipeline kinds, and everything that reads it."""

import pytest
from click.testing import CliRunner

from rnnpipe import kinds
from rnnpipe.cli import cli
from rnnpipe.config import load_config
from rnnpipe.errors import ConfigError
from rnnpipe.gate import gate_spec
from rnnpipe.schedule_config import ScheduleConfig


@pytest.mark.parametrize("name", kinds.names())
def test_every_kind_resolves(name):
    kind = kinds.get(name)
    cfg = load_config(kind.config_class())
    spec = gate_spec(name, cfg)
    assert {"metric", "baselines", "margin", "greater_is_better", "degenerate"} <= set(spec)
    assert kind.steps_object().kind == name and callable(kind.flow_function())
    cls = kind.pipeline_class()
    assert cls.KIND == kind.artefact and kinds.artefact_class(cls.KIND) is cls
    assert callable(kinds.load(kind.ingest)) and (not kind.check or callable(kinds.load(kind.check)))
    for method in ("save", "load", "predict", "batch_spec"):
        assert hasattr(cls, method)


def test_the_cli_and_the_schedule_read_the_declaration():
    out = CliRunner().invoke(cli, ["train", "--help"]).output
    for name in kinds.names():
        assert name in out
    assert CliRunner().invoke(cli, ["config", kinds.names()[-1]]).exit_code == 0
    with pytest.raises(ConfigError, match="unknown pipeline 'nope'"):
        load_config(ScheduleConfig, overrides=["train.pipelines=nope"])
    with pytest.raises(ConfigError, match="unknown pipeline 'nope'"):
        kinds.get("nope")


def test_the_checks_before_a_job_stay_free_of_torch_and_mlflow():
    """What `rnnpipe train` and `rnnpipe predict` run before any flow starts (reading and
    checking the data) imports neither torch nor MLflow, so a user error comes back fast."""
    import subprocess
    import sys

    refs = [r for k in kinds.KINDS.values() for r in (k.check, k.ingest if k.series else "") if r]
    code = (
        "import sys\nfrom rnnpipe import kinds\n"
        f"for ref in {refs!r}: kinds.load(ref)\n"
        "print(sorted(m for m in ('torch', 'mlflow', 'prefect') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
