"""The monitor flow end to end on a small partitioned dataset (Prefect test harness, MLflow)."""

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from test_monitor import SMALL, patients

from rnnpipe.config import load_config, to_dict
from rnnpipe.pipelines.monitor.artefact import MonitorPipeline, classification_loss, evaluate_monitor, prepare_monitor
from rnnpipe.pipelines.monitor.config import MonitorConfig
from rnnpipe.pipelines.monitor.data import load_monitor_data
from rnnpipe.training import fit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("vitals")
    for pid, g in patients(n=5).groupby("pid"):
        (root / f"pid={pid}").mkdir()
        g.drop(columns="pid").to_parquet(root / f"pid={pid}" / "part-0.parquet")
    return root


def test_monitor_flow_registers_a_model_that_warns_from_raw_readings(prefect_harness, dataset):
    from rnnpipe.flows.monitor import train_monitor

    cfg = load_config(
        MonitorConfig,
        overrides=SMALL
        + [f"data.path={dataset}", "register.experiment=e2e-monitor", "register.model_name=e2e-monitor"],
    )
    out = train_monitor(config=to_dict(cfg))
    client = MlflowClient()
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["split"] == "grouped by patient"
    m = run.data.metrics
    for name in ("", "rule_", "logreg_", "majority_"):
        for k in ("f1", "precision", "recall", "macro_f1", "roc_auc", "pr_auc"):
            assert f"{name}test_{k}" in m and f"{name}test_{k}_onset" in m
    best = max(m[f"{b}_test_f1_onset"] for b in ("rule", "logreg", "majority"))
    assert out["alias"] == ("champion" if m["test_f1_onset"] >= best else "challenger")
    # the channel forecaster: a child run, summarised on the parent
    child = client.get_run(run.data.tags["forecast_run_id"])
    assert child.data.tags["mlflow.parentRunId"] == out["run_id"] and child.info.status == "FINISHED"
    assert [x.step for x in client.get_metric_history(child.info.run_id, "val_loss")] == [1, 2, 3]
    for k in ("test_mae", "naive_test_mae", "ridge_test_mae", "test_mae_last_step"):
        assert m[f"forecast_{k}"] == pytest.approx(child.data.metrics[k])
    plots = {a.path for a in client.list_artifacts(out["run_id"], "plots")}
    assert {"plots/confusion_test_onset.png", "plots/test_model_vs_baselines.png"} <= plots

    # the registered pyfunc, on raw recent readings of two patients, answers like the same
    # config trained in memory
    served = mlflow.pyfunc.load_model(f"models:/e2e-monitor/{out['version']}")
    raw = patients(n=5)
    recent = raw[raw.pid.isin(["p3", "p1"])].groupby("pid").tail(30).sample(frac=1, random_state=1)
    got = served.predict(recent)
    p = prepare_monitor(load_monitor_data(cfg), cfg)
    local = MonitorPipeline(cfg, p.preprocessor)
    fit(
        local.model,
        p.windows("train"),
        p.windows("val"),
        cfg.train,
        loss_fn=classification_loss(cfg, p),
        progress=False,
    )
    evaluate_monitor(local, p)  # chooses the threshold on validation
    want = local.predict(recent)
    assert list(got.pid) == ["p1", "p3"]
    np.testing.assert_allclose(got.risk.to_numpy(), want.risk.to_numpy(), rtol=1e-5)
    assert got.threshold.iloc[0] == pytest.approx(out["threshold"])
    assert (got.alert == want.alert).all() and got.note.eq("").all()


def test_a_split_without_events_stops_the_cli_with_one_line_and_registers_nothing(prefect_harness, tmp_path):
    from click.testing import CliRunner
    from test_monitor import EARLY, early_events

    from rnnpipe.cli import cli

    early_events().to_csv(tmp_path / "hr.csv", index=False)
    args = [
        "train",
        "monitor",
        "--set",
        f"data.path={tmp_path / 'hr.csv'}",
        "--set",
        "register.model_name=e2e-no-events",
        "--set",
        "register.experiment=e2e-no-events",
    ]
    for item in EARLY:
        args += ["--set", item]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "the val part holds 0 onset event windows" in lines[0]
    assert "Traceback" not in result.output
    assert not [m for m in MlflowClient().search_registered_models() if m.name == "e2e-no-events"]
