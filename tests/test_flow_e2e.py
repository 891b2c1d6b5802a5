"""The stocks flow end to end on a small slice: Prefect (test harness), MLflow (SQLite store),
registration, the champion gate, resume, and the registered model's predictions."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from rnnpipe.cli import cli
from rnnpipe.config import load_config, to_dict
from rnnpipe.errors import DataError
from rnnpipe.features.splits import chronological_split
from rnnpipe.pipelines.forecast.artefact import ForecastPipeline
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.pipelines.forecast.prepare import prepare
from rnnpipe.series import load_series
from rnnpipe.training import fit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slice_path(tmp_path_factory, stocks):
    df = stocks[stocks.Ticker.isin(["AAPL", "MSFT"])].groupby("Ticker").tail(300)
    path = tmp_path_factory.mktemp("data") / "slice.parquet"
    df.to_parquet(path)
    return path


def small_config(path, *extra):
    return load_config(
        ForecastConfig,
        overrides=[
            f"data.path={path}",
            "data.series=[]",
            "window.lookback=20",
            "model.hidden_size=16",
            "model.num_layers=1",
            "train.epochs=2",
            "train.batch_size=64",
            "register.experiment=e2e",
            "register.model_name=e2e-forecaster",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def first_run(prefect_harness, slice_path):
    from rnnpipe.flows.forecast import train_stocks

    cfg = small_config(slice_path)
    return cfg, train_stocks(config=to_dict(cfg))


def test_run_is_fully_tracked(first_run, slice_path):
    cfg, summary = first_run
    client = MlflowClient()
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "e2e"
    assert run.data.params["model.hidden_size"] == "16"
    assert run.data.params["window.target"] == "log_return"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]
    frame = load_series(slice_path, timestamp_col="Date", series_col="Ticker", value_cols=["Close"])
    tags = run.data.tags
    assert tags["data_fingerprint"] == frame.fingerprint
    assert tags["prefect_flow_run_id"] and tags["prefect_flow_run_id"] != "None"
    assert run.info.run_name == tags["prefect_flow_run_name"]  # one name in both UIs
    (data,) = run.inputs.dataset_inputs  # MLflow's Datasets field: what the run read
    assert data.dataset.digest == frame.fingerprint[:36] and "slice.parquet" in data.dataset.source
    assert [t.value for t in data.tags if t.key == "mlflow.data.context"] == ["training"]
    assert tags["version.torch"] and tags["version.mlflow"] and tags["seed"] == "42"
    assert tags["device"] == "cpu"
    # train.threads=auto is the param; the cores the training started with, the tag
    from rnnpipe.threads import available_cpus

    assert run.data.params["train.threads"] == "auto" and tags["torch_threads"] == str(available_cpus())
    m = run.data.metrics
    assert m["test_mae_vs_naive"] == pytest.approx(m["test_mae"] / m["naive_test_mae"])
    assert {"test_rmse", "test_mape", "naive_test_rmse", "test_mae.AAPL", "test_mae.MSFT"} <= set(m)
    # the rest (per-series detail, a baseline's minor scores) is the run's table, not metrics
    table = pd.DataFrame(
        **json.loads(
            Path(
                mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="metrics/all.json")
            ).read_text()
        )
    )
    assert {"naive_test_mape.AAPL", "test_mae_vs_naive.AAPL", "naive_test_mape"} <= set(table.metric) - set(m)
    assert {"naive_test_mae.AAPL", "test_mae.AAPL"} <= set(m) & set(table.metric)
    assert {k for k in m if k.startswith(("test_", "val_", "naive_")) and k != "val_loss"} <= set(table.metric)
    row = table.set_index("metric").loc["naive_test_mae.AAPL"]
    assert (row.method, row.part, row.score, row.series) == ("naive", "test", "mae", "AAPL")
    assert len(m) < len(table) / 2, (len(m), len(table))
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {
        "plots/loss_curves.png",
        "plots/test_forecast_vs_actual.png",
        "plots/test_quantile_calibration.png",
    }
    assert "vs naive" in tags["vs_naive"]


def test_gate_and_registered_model_predicts_like_the_in_memory_model(first_run, stocks, slice_path):
    cfg, summary = first_run
    ratio = summary["test_mae_vs_naive"]
    assert summary["alias"] == ("champion" if ratio <= 1 + cfg.register.naive_margin else "challenger")
    client = MlflowClient()
    version = client.get_model_version_by_alias("e2e-forecaster", summary["alias"])
    assert str(version.version) == summary["version"] and version.run_id == summary["run_id"]
    assert version.tags["gate_reason"] == summary["reason"]

    model = mlflow.pyfunc.load_model(f"models:/e2e-forecaster@{summary['alias']}")
    history = stocks[stocks.Ticker.isin(["MSFT", "AAPL"])].groupby("Ticker").tail(80)
    history = history[["Ticker", "Date", "Close"]].sample(frac=1, random_state=0)  # unsorted
    served = model.predict(history)

    # the same config trained in memory, outside Prefect and MLflow
    frame = load_series(slice_path, timestamp_col="Date", series_col="Ticker", value_cols=["Close"])
    p = prepare(frame, chronological_split(frame, cfg.split.train, cfg.split.val), cfg)
    pipe = ForecastPipeline(cfg, p.preprocessor)
    fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, progress=False)
    local = pipe.predict(history)

    assert list(served.columns) == ["Ticker", "step", "Date", "forecast", "q0.1", "q0.5", "q0.9"]
    assert list(served.Ticker) == ["AAPL", "MSFT"]
    assert list(served.Date) == [pd.Timestamp("2013-03-04")] * 2  # next business day
    np.testing.assert_allclose(served.forecast.to_numpy(), local.forecast.to_numpy(), rtol=1e-6)
    last = history.sort_values("Date").groupby("Ticker").Close.last()
    assert np.all(np.abs(served.forecast.to_numpy() / last.to_numpy() - 1) < 0.2)  # price units


def test_gate_refuses_a_model_that_loses_to_naive_and_one_that_is_not_better(first_run, slice_path):
    from rnnpipe.flows.forecast import train_stocks

    cfg, first = first_run
    strict = train_stocks(config=to_dict(small_config(slice_path, "register.naive_margin=-0.5")))
    assert strict["alias"] == "challenger"
    assert "loses to the naive baseline" in strict["reason"]
    same = train_stocks(config=to_dict(cfg))  # same seed, same data: same metric, not better
    assert same["test_mae"] == pytest.approx(first["test_mae"], rel=1e-9)
    if first["alias"] == "champion":
        assert same["alias"] == "challenger" and "does not beat champion" in same["reason"]
        champion = MlflowClient().get_model_version_by_alias("e2e-forecaster", "champion")
        assert str(champion.version) == first["version"]


def test_resume_reuses_the_interrupted_run(prefect_harness, slice_path):
    from rnnpipe.errors import ModelError
    from rnnpipe.flows.forecast import train_stocks

    extra = ["register.experiment=e2e-resume", "register.model_name=e2e-resume", "train.seed=7"]
    one = train_stocks(config=to_dict(small_config(slice_path, *extra, "train.epochs=1")))
    two = train_stocks(config=to_dict(small_config(slice_path, *extra, "train.epochs=3")), resume=True)
    assert two["run_id"] == one["run_id"]
    steps = [m.step for m in MlflowClient().get_metric_history(two["run_id"], "train_loss")]
    assert steps == [1, 2, 3]
    assert MlflowClient().get_run(two["run_id"]).data.tags["resumed_from_epoch"] == "1"
    with pytest.raises(ModelError, match="no checkpoint for this config"):
        train_stocks(config=to_dict(small_config(slice_path, *extra, "train.seed=8")), resume=True)


def test_cli_predict_writes_forecasts(first_run, tmp_path, stocks):
    _, summary = first_run
    src = tmp_path / "history.csv"
    stocks[stocks.Ticker == "AAPL"].tail(40).to_csv(src, index=False)
    out = tmp_path / "forecast.parquet"
    result = CliRunner().invoke(
        cli, ["predict", f"e2e-forecaster/{summary['version']}", "-i", str(src), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    got = pd.read_parquet(out)
    assert len(got) == 1 and got.Ticker.iloc[0] == "AAPL" and np.isfinite(got.forecast).all()
    assert (got.model_name == "e2e-forecaster").all() and (got.model_version == summary["version"]).all()
    again = CliRunner().invoke(cli, ["predict", f"e2e-forecaster/{summary['version']}", "-i", str(src), "-o", str(out)])
    assert again.exit_code == 2 and "exists; pass --overwrite" in again.output  # refused at once
    assert pd.read_parquet(out).equals(got)
    # a CSV named as the output gets the same rows as CSV
    as_csv = CliRunner().invoke(
        cli, ["predict", f"e2e-forecaster/{summary['version']}", "-i", str(src), "-o", str(tmp_path / "forecast.csv")]
    )
    assert as_csv.exit_code == 0, as_csv.output
    written = pd.read_csv(tmp_path / "forecast.csv")
    assert list(written.columns) == list(got.columns) and written.Ticker.tolist() == got.Ticker.tolist()
    assert np.allclose(written.forecast, got.forecast, rtol=0, atol=1e-12)
    for args, message in (
        ([str(tmp_path / "nowhere.csv"), str(tmp_path / "x.parquet")], "no such file or folder"),
        ([str(src), str(tmp_path / "x.txt")], "name the output *.parquet or *.csv"),
    ):
        bad = CliRunner().invoke(cli, ["predict", "no-such-model", "-i", args[0], "-o", args[1]])
        assert bad.exit_code == 2 and message in bad.output and bad.output.count("error:") == 1
    missing = CliRunner().invoke(
        cli, ["predict", "no-such-model@champion", "-i", str(src), "-o", str(out), "--overwrite"]
    )
    assert missing.exit_code == 2 and "no registered model named 'no-such-model'" in missing.output
    assert missing.output.count("error:") == 1 and "Flow run" not in missing.output  # before any flow
    misspelt = tmp_path / "misspelt.csv"
    stocks[stocks.Ticker == "AAPL"].tail(80).rename(columns={"Close": "close"}).to_csv(misspelt, index=False)
    result = CliRunner().invoke(
        cli, ["predict", f"e2e-forecaster/{summary['version']}", "-i", str(misspelt), "-o", str(tmp_path / "m.parquet")]
    )
    assert result.exit_code == 2 and "misspelt.csv: column 'Close' not found" in result.output
    assert result.output.count("error:") == 1 and "Flow run" not in result.output
    short = tmp_path / "short.csv"
    stocks[stocks.Ticker == "AAPL"].tail(5).to_csv(short, index=False)
    result = CliRunner().invoke(
        cli,
        ["predict", f"e2e-forecaster/{summary['version']}", "-i", str(short), "-o", str(tmp_path / "short.parquet")],
    )
    assert result.exit_code == 2 and "series 'AAPL' has 5 rows of history" in result.output
    assert not (tmp_path / "short.parquet").exists()
    from rnnpipe.batch_jobs import check_input  # what predict checks before its flow starts

    with pytest.raises(DataError, match=r"short.csv: series 'AAPL' has 5 rows of history"):
        check_input(f"e2e-forecaster/{summary['version']}", short)


def test_the_local_store_reader_agrees_with_mlflow(first_run, tmp_path, stocks):
    """`rnnpipe.localstore` (the checks before a job, without MLflow) names the same version,
    metadata and artefacts as MLflow, refuses what MLflow refuses with the same message
    (deleted versions included), and lets `predict` report a missing column without MLflow."""
    import os
    import socket
    import subprocess
    import sys

    from rnnpipe import localstore
    from rnnpipe.errors import ModelError
    from rnnpipe.registry import configure_tracking, resolve_model

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    _, summary = first_run
    configure_tracking()
    for spec in (f"e2e-forecaster/{summary['version']}", f"e2e-forecaster@{summary['alias']}"):
        local = localstore.find(spec)
        assert local is not None and local.ref == resolve_model(spec)
        info = mlflow.models.get_model_info(local.ref.uri)
        assert local.info.metadata == info.metadata and local.info.metadata["rnnpipe_input_columns"]
        assert localstore.artefact_kind(local.info) == localstore.artefact_kind(info) == "forecast"
        assert local.artifact("pipeline/config.json").is_file()
    client = MlflowClient()
    mv = client.get_model_version("e2e-forecaster", summary["version"])
    client.create_registered_model("e2e-localstore")
    copy = client.create_model_version("e2e-localstore", mv.source, run_id=mv.run_id)
    assert localstore.find(f"e2e-localstore/{copy.version}").ref.name == "e2e-localstore"
    client.delete_model_version("e2e-localstore", copy.version)
    for spec in (f"e2e-localstore/{copy.version}", "e2e-localstore", "no-such-model@x", "e2e-forecaster/x"):
        with pytest.raises(ModelError) as mlflow_says:
            resolve_model(spec)
        with pytest.raises(ModelError) as local_says:
            localstore.find(spec)
        assert str(local_says.value) == str(mlflow_says.value)
    served = CliRunner().invoke(cli, ["serve", "e2e-forecaster/x", "--port", str(free_port())])
    assert served.exit_code == 2 and served.output.strip().splitlines() == [f"error: {local_says.value}"]
    misspelt = tmp_path / "misspelt.csv"
    stocks[stocks.Ticker == "AAPL"].tail(80).rename(columns={"Close": "close"}).to_csv(misspelt, index=False)
    code = (
        "import sys\nfrom rnnpipe.cli import cli\ntry:\n    cli.main(sys.argv[1:])\n"
        "except SystemExit as e:\n    print('mlflow' in sys.modules, e.code)"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "predict",
            f"e2e-forecaster/{summary['version']}",
            "-i",
            str(misspelt),
            "-o",
            str(tmp_path / "m.parquet"),
        ],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    assert "column 'Close' not found" in out.stderr, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False 2", out.stdout + out.stderr


def test_ecg_forecaster_through_the_stocks_pipeline_does_not_lose_to_ridge(prefect_harness, tmp_path):
    """Real data the pipeline was not written for, with a column mapping only: the bundled
    MIT-BIH excerpt, 6 samples ahead. Ridge and naive are scored beside the model, and the
    model (which starts from the ridge fit and keeps it unless training beats it on
    validation) does not lose to ridge on test."""
    from pathlib import Path

    from rnnpipe.flows.forecast import train_stocks

    ecg = pd.read_parquet(Path(__file__).resolve().parent.parent / "data" / "ecg.parquet").head(3000)
    ecg.to_parquet(tmp_path / "ecg.parquet")
    cfg = load_config(
        ForecastConfig,
        overrides=[
            f"data.path={tmp_path / 'ecg.parquet'}",
            "data.series_col=record",
            "data.timestamp_col=timestamp",
            "data.target_col=ecg_mv",
            "data.series=[]",
            "window.target=diff",
            "window.horizon=6",
            "model.hidden_size=16",
            "model.num_layers=1",
            "train.epochs=2",
            "train.batch_size=128",
            "register.experiment=e2e-ecg",
            "register.model_name=e2e-ecg",
        ],
    )
    out = train_stocks(config=to_dict(cfg))
    m = MlflowClient().get_run(out["run_id"]).data.metrics
    assert {"ridge_test_mae", "naive_test_mae", "test_mae_vs_ridge", "ridge_test_mae.mitdb-excerpt"} <= set(m)
    assert m["test_mae"] <= m["ridge_test_mae"] * (1 + 1e-6), (m["test_mae"], m["ridge_test_mae"])
    assert m["initial_val_loss"] >= m["best_val_loss"] and "warm_start_ridge_penalty" in m


def test_a_single_series_file_trains_and_predicts_with_the_column_mapping_alone(prefect_harness, tmp_path):
    """A user's own file with no series column: the obvious mapping is enough (no data.series,
    no constant column added by hand); predict takes the same kind of file and its output
    has no series column."""
    from pathlib import Path

    ecg = pd.read_parquet(Path(__file__).resolve().parent.parent / "data" / "ecg.parquet")
    own = ecg[["timestamp", "ecg_mv"]].head(1500)
    own.to_csv(tmp_path / "heart.csv", index=False)
    args = [
        "train",
        "stocks",
        "--set",
        f"data.path={tmp_path / 'heart.csv'}",
        "--set",
        'data.series_col=""',
        "--set",
        "data.timestamp_col=timestamp",
        "--set",
        "data.target_col=ecg_mv",
        "--set",
        "window.target=diff",
        "--set",
        "window.lookback=20",
        "--set",
        "model.hidden_size=8",
        "--set",
        "model.num_layers=1",
        "--set",
        "train.epochs=1",
        "--set",
        "baselines.statistical=[]",
        "--set",
        "register.gate_baselines=[naive]",
        "--set",
        "register.experiment=e2e-one",
        "--set",
        "register.model_name=e2e-one",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    run = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("e2e-one").experiment_id])[0]
    assert run.data.params["data.series_name"] == "heart" and run.data.params["data.series"] == "[]"
    assert "test_mae.heart" in run.data.metrics
    ecg[["timestamp", "ecg_mv"]].iloc[1500:1560].sample(frac=1, random_state=0).to_csv(
        tmp_path / "recent.csv", index=False
    )
    out = tmp_path / "next.parquet"
    result = CliRunner().invoke(cli, ["predict", "e2e-one", "-i", str(tmp_path / "recent.csv"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    got = pd.read_parquet(out)
    assert len(got) == 1 and "record" not in got.columns and np.isfinite(got.forecast).all()
    assert got.timestamp.iloc[0] > pd.Timestamp(ecg.timestamp.iloc[1559])
