"""Sweeps: the search space, resource planning, and four-trial sweeps on a real Dask
LocalCluster (two worker processes on loopback) and on the local process pool."""

import json

import pytest
from mlflow.tracking import MlflowClient

from rnnpipe.config import load_config, to_dict
from rnnpipe.errors import ConfigError
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.sweep import make_trials, parse_grid, plan_resources


def test_grid_and_random_trials():
    grid = parse_grid(["model.cell=lstm,gru", "model.hidden_size=8, 16"])
    assert grid == {"model.cell": ["lstm", "gru"], "model.hidden_size": ["8", "16"]}
    trials = make_trials(grid)
    assert len(trials) == 4 and {"model.cell": "gru", "model.hidden_size": "16"} in trials
    picked = make_trials(grid, random_n=3, seed=1)
    assert len(picked) == 3 and all(t in trials for t in picked) and picked == make_trials(grid, 3, seed=1)
    with pytest.raises(ConfigError, match="expected KEY=V1,V2"):
        parse_grid(["model.cell"])


def test_resources_never_oversubscribe_the_cores():
    assert plan_resources(8, cpus=2) == (2, 1)
    assert plan_resources(1, cpus=16) == (1, 16)  # one trial gets every core
    assert plan_resources(8, threads=4, cpus=16) == (4, 4)
    assert plan_resources(8, workers=3, cpus=16) == (3, 5)


@pytest.fixture(scope="module")
def small(tmp_path_factory, stocks):
    path = tmp_path_factory.mktemp("sweep") / "prices.parquet"
    stocks[stocks.Ticker.isin(["AAPL", "IBM"])].groupby("Ticker").tail(200).to_parquet(path)
    return to_dict(
        load_config(
            ForecastConfig,
            overrides=[
                f"data.path={path}",
                "data.series=[]",
                "model.hidden_size=8",
                "model.num_layers=1",
                "train.epochs=2",
                "train.batch_size=64",
                "register.experiment=sweeps",
                "register.model_name=sweep-forecaster",
                "baselines.statistical=[]",
                "baselines.gbm=false",
                "register.gate_baselines=[naive]",
            ],
        )
    )


# lookback 100000 cannot make a single window: that trial fails on purpose
GRID = {"window.lookback": ["10", "20", "30", "100000"]}


def check_sweep(out, runner):
    client = MlflowClient()
    parent = client.get_run(out["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep_runner"] == runner
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{out['parent_run_id']}'"
    )
    assert len(children) == 4
    status = {int(c.data.tags["sweep_trial"]): c.info.status for c in children}
    assert status == {0: "FINISHED", 1: "FINISHED", 2: "FINISHED", 3: "FAILED"}
    failed = next(c for c in children if c.info.status == "FAILED")
    assert "too short for the window" in failed.data.tags["error"]
    assert out["failed"] == 1 and parent.data.metrics["trials_failed"] == 1
    best = next(c for c in children if c.info.run_id == out["results"][out["best_trial"]]["run_id"])
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert best.data.metrics["best_val_loss"] == min(c.data.metrics["best_val_loss"] for c in finished)
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert "test_mae" in best.data.metrics and "val_mae" in best.data.metrics
    # a trial runs the training flow's own steps, so its run is what `rnnpipe train` logs: the
    # headline metrics (not every score), the table of all scores, the plots, the standing
    assert {a.path for a in client.list_artifacts(best.info.run_id, "metrics")} >= {"metrics/all.json"}
    assert {a.path for a in client.list_artifacts(best.info.run_id, "plots")} >= {"plots/loss_curves.png"}
    assert "vs_naive" in best.data.tags and not any(k.startswith("naive_test_mape.") for k in best.data.metrics)
    assert any(k.startswith("naive_test_mae.") for k in best.data.metrics)
    summary = json.loads(open(client.download_artifacts(out["parent_run_id"], "sweep/summary.json")).read())
    assert [row["status"] for row in summary] == ["FINISHED"] * 3 + ["FAILED"]
    assert {a.path for a in client.list_artifacts(out["parent_run_id"], "sweep")} >= {"sweep/val_loss_by_param.png"}
    reg = out["registered"]["sweep-forecaster"]
    version = client.get_model_version("sweep-forecaster", reg["version"])
    assert version.run_id == best.info.run_id
    return out["best_trial"], {w for w in (r["worker"] for r in out["results"])}


@pytest.mark.slow
def test_dask_and_local_runners_agree_on_the_best_trial(prefect_harness, small):
    from distributed import LocalCluster

    from rnnpipe.flows.sweep import sweep, task_runner

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        out = sweep.with_options(task_runner=task_runner("dask", address=cluster.scheduler_address))(
            "stocks", small, GRID, workers=2, threads=1, runner="dask"
        )
    best_dask, workers = check_sweep(out, "dask")
    assert len(workers) == 2  # the trials really ran in both worker processes
    out = sweep.with_options(task_runner=task_runner("local", workers=2))(
        "stocks", small, GRID, workers=2, threads=1, runner="local"
    )
    best_local, _ = check_sweep(out, "local")
    assert best_local == best_dask


def test_cli_refuses_a_bad_grid_before_any_trial_runs():
    from click.testing import CliRunner

    from rnnpipe.cli import cli

    result = CliRunner().invoke(cli, ["sweep", "stocks", "--grid", "model.hidden=64,128"])
    assert result.exit_code == 2 and "unknown config key 'model.hidden'" in result.output
    result = CliRunner().invoke(cli, ["sweep", "stocks", "--grid", "model.cell=lstm,transformer"])
    assert result.exit_code == 2 and "model.cell='transformer'" in result.output


@pytest.mark.slow
def test_per_series_sweep_registers_one_model_per_series_and_retries_are_skipped_for_user_errors(
    prefect_harness, small
):
    from rnnpipe.flows.sweep import sweep, task_runner

    cfg = {**small, "register": {**small["register"], "model_name": "per-series"}}
    out = sweep.with_options(task_runner=task_runner("sequential"))(
        "stocks", cfg, {"window.lookback": ["10", "100000"]}, per_series=True, retries=2, runner="sequential"
    )
    assert out["trials"] == 4 and out["failed"] == 2
    assert set(out["registered"]) == {"AAPL", "IBM"}
    client = MlflowClient()
    for series in ("AAPL", "IBM"):
        reg = out["registered"][series]
        assert reg["model_name"] == f"per-series-{series}"
        run = client.get_run(client.get_model_version(reg["model_name"], reg["version"]).run_id)
        assert json.loads(run.data.params["data.series"]) == [series]
    # a too-short window is a user error: no retry, so one run per trial
    children = client.search_runs(
        [client.get_experiment_by_name("sweeps").experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{out['parent_run_id']}'",
    )
    assert len(children) == 4


def test_runs_started_side_by_side_log_the_same_new_dataset(monkeypatch):
    """Two trials that start at once both insert the data set's row; MLflow's store refuses the
    second (a UNIQUE constraint). The second run links to the row the first one wrote."""
    from mlflow.exceptions import MlflowException

    from rnnpipe.registry import Run, configure_tracking

    configure_tracking()
    first, second = Run.start("datasets-race"), Run.start("datasets-race")
    real = second.client.log_inputs
    calls = []

    def racing(run_id, datasets=None, *args, **kwargs):
        calls.append(run_id)
        if len(calls) == 1:  # as if `first` inserted the row between our check and our insert
            first.log_dataset("data/prices.parquet", "f" * 64)
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, ...")
        return real(run_id, datasets, *args, **kwargs)

    monkeypatch.setattr(second.client, "log_inputs", racing)
    second.log_dataset("data/prices.parquet", "f" * 64)
    assert calls == [second.id, second.id]
    got = MlflowClient().get_run(second.id).inputs.dataset_inputs
    assert [d.dataset.digest for d in got] == ["f" * 36]
