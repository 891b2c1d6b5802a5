import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from rnnpipe.cli import cli


@pytest.mark.parametrize("args", [[], ["train"], ["predict"], ["ui"], ["info"], ["config"]])
def test_help_everywhere(args):
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_config_shows_overrides():
    result = CliRunner().invoke(cli, ["config", "stocks", "--set", "model.cell=gru"])
    assert result.exit_code == 0 and 'cell = "gru"' in result.output


def test_user_errors_are_one_line_with_exit_code_2():
    result = CliRunner().invoke(cli, ["train", "stocks", "--set", "model.hiden_size=3"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: unknown config key 'model.hiden_size' (known: "
        "bidirectional, cell, dropout, encoder_lookback, hidden_size, highway, "
        "linear_lr_mult, num_layers, pooling, quantiles, recipe, stacked)"
    )


def test_info_prints_the_tracking_uri(home):
    result = CliRunner().invoke(cli, ["info", "--json"])
    data = json.loads(result.output)
    assert data["tracking_uri"] == f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"


@pytest.mark.slow
def test_bad_data_inside_the_flow_gives_no_traceback(tmp_path, stocks):
    """A bad value in the data reaches the user as one line, exit code 2, before any flow
    starts (the data is read and checked first): printed once, no Prefect lines."""
    bad = stocks[stocks.Ticker == "IBM"].head(100).astype({"Close": object})
    bad.loc[bad.index[41], "Close"] = "twelve"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    env = {**os.environ, "RNNPIPE_HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path / ".prefect")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnpipe.cli",
            "train",
            "stocks",
            "--set",
            f"data.path={tmp_path / 'bad.csv'}",
            "--set",
            "data.series=[]",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"error: {tmp_path / 'bad.csv'}, row 42 (line 43): column 'Close': 'twelve' is not a number" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Retries are exhausted" not in proc.stderr  # user errors are not retried
    assert proc.stderr.count("twelve") == 1 and "Flow run" not in proc.stderr


@pytest.mark.slow
def test_quiet_train_prints_the_result_and_a_link_to_the_run(tmp_path):
    env = {**os.environ, "RNNPIPE_HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path / ".prefect")}
    corpus = os.path.join(os.path.dirname(__file__), "bad_inputs", "stocks", "ok_unsorted.csv")
    sets = [
        f"data.path={corpus}",
        "window.lookback=20",
        "train.epochs=1",
        "model.hidden_size=8",
        "baselines.statistical=[]",
        "register.gate_baselines=[naive]",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "rnnpipe.cli", "-q", "train", "stocks", *[a for s in sets for a in ("--set", s)]],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert not [line for line in lines if "| INFO" in line], lines
    assert lines[0].startswith("ok-unsorted-forecaster v1 -> ")  # own data: a name of its own
    assert re.search(
        r"http://127\.0\.0\.1:5000/#/experiments/\d+/runs/[0-9a-f]{32}\?workflowType=machine_learning ", lines[1]
    ), lines[1]
    assert "rnnpipe ui" in lines[1]
    # the temporary Prefect API: no note about it, no link to a UI it lacks, every log line
    # sent before it stopped, and nothing of it left behind
    out = proc.stdout + proc.stderr
    assert "docs.prefect.io" not in out and "View at" not in out and "Error logging to API" not in out
    assert not list((tmp_path / ".prefect").glob("api-*.log"))
    assert not processes_with(f"PREFECT_HOME={tmp_path / '.prefect'}")  # the API inherited the command's


def processes_with(setting: str) -> list[int]:
    """The live processes whose environment holds `setting` (only this test's own, even with
    other tests' servers running beside it)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if setting.encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:  # gone, or not ours to read
            pass
    return found


def test_a_temporary_api_is_used_only_where_no_server_is_configured(monkeypatch):
    from rnnpipe.flows.api import flow_api

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    with flow_api() as ready:
        ready()  # returns at once: the configured server is the user's business
        assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:9/api"


def test_a_missing_data_file_fails_at_once_on_one_line():
    from click.testing import CliRunner

    from rnnpipe.cli import cli

    result = CliRunner().invoke(cli, ["train", "stocks", "--set", "data.path=does-not-exist.csv"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: data.path=does-not-exist.csv: no such file or folder"


def test_a_misspelt_column_fails_at_once_on_one_line_for_every_pipeline(tmp_path):
    from click.testing import CliRunner

    from rnnpipe.cli import cli

    for pipeline, setting in (
        ("stocks", "data.target_col=close"),
        ("monitor", "data.timestamp_col=time"),
        ("reviews", "data.label_col=stars"),
        ("lm", "data.text_col=body"),
    ):
        result = CliRunner().invoke(cli, ["train", pipeline, "--set", setting])
        column = setting.split("=")[1]
        assert result.exit_code == 2, (pipeline, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and f"column {column!r} not found ({setting};" in lines[0], lines
    # the bundled series column, absent from a user's file of one series: the line says what to set
    own = tmp_path / "sales.csv"
    pd.DataFrame({"Date": ["2024-01-01", "2024-01-02"], "sales": [1.0, 2.0]}).to_csv(own, index=False)
    result = CliRunner().invoke(cli, ["train", "stocks", "--set", f"data.path={own}", "--set", "data.target_col=sales"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "column 'Ticker' not found (data.series_col=Ticker;" in result.output
    assert result.output.strip().endswith("a file of one series: --set data.series_col=")


def test_a_busy_port_is_one_line_and_exit_2_for_serve_ui_and_schedule():
    import socket

    from click.testing import CliRunner

    from rnnpipe.cli import cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args in (
            ["serve", "any-model", "--port", str(port)],
            ["ui", "--port", str(port)],
            ["schedule", "--start-server", "--port", str(port)],
        ):
            result = CliRunner().invoke(cli, args)
            assert result.exit_code == 2, result.output
            assert result.output.strip().splitlines() == [
                f"error: port {port} on 127.0.0.1 is not free (Address already in use); pick another with --port"
            ]


def test_a_model_reference_before_anything_was_trained_fails_at_once(tmp_path, monkeypatch):
    """On a fresh clone (no MLflow store yet) `predict`, `serve` and a run that starts from a
    registered model say which pipeline to train, on one line, before MLflow is imported,
    and leave no empty store behind."""
    import socket

    monkeypatch.setenv("RNNPIPE_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # set by MLflow once a test used it
    src = tmp_path / "reviews.csv"
    src.write_text("text\nlovely tea\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cases = (
        (
            ["predict", "reviews-sentiment@champion", "-i", str(src), "-o", str(tmp_path / "out.parquet")],
            "reviews-sentiment@champion",
            "reviews",
        ),
        (["serve", "models:/reviews-lm/2", "--port", str(port)], "models:/reviews-lm/2", "lm"),
        (["train", "reviews", "--set", "pretrain.model=reviews-lm"], "reviews-lm", "lm"),
    )
    for args, spec, kind in cases:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [
            f"error: model {spec!r}: nothing is registered yet (no MLflow store at "
            f"{tmp_path / 'mlruns' / 'mlflow.db'}); train a model first, e.g. `rnnpipe train {kind}`"
        ]
    assert not (tmp_path / "mlruns").exists()
    code = (
        "import sys\nfrom rnnpipe.cli import cli\ntry:\n    cli.main(sys.argv[1:])\n"
        "except SystemExit as e:\n    print('mlflow' in sys.modules or 'torch' in sys.modules, e.code)"
    )
    for args, _, _ in cases[:2]:  # neither MLflow nor torch (the lm's settings are light)
        out = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            env=os.environ | {"RNNPIPE_HOME": str(tmp_path)},
        )
        assert out.stdout.strip().splitlines()[-1] == "False 2", (args, out.stdout + out.stderr)


def test_batch_jobs_find_the_bundled_sample_the_docs_name_from_any_folder(tmp_path, monkeypatch):
    """`rnnpipe predict -i data/stocks.parquet` and `rnnpipe drift -i data/stocks.parquet` (as
    the docs write them) from a folder without data/ read the installed sample: what stops
    them here is the empty store, not the input; a name that is not bundled is still refused."""
    monkeypatch.setenv("RNNPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    for args in (["predict", "-i", "data/stocks.parquet", "-o", "out.parquet"], ["drift", "-i", "data/stocks.parquet"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and "nothing is registered yet" in result.output, (args, result.output)
    missing = CliRunner().invoke(cli, ["drift", "-i", "data/stocks-2027.parquet"])
    assert (missing.exit_code, missing.output.strip()) == (2, "error: data/stocks-2027.parquet: no such file or folder")


def test_printed_links_use_the_port_of_the_running_ui(tmp_path, monkeypatch):
    """`rnnpipe ui --port N` says where it runs while it runs; links printed meanwhile use it."""
    import json

    from rnnpipe import cli as cli_module

    monkeypatch.setenv("RNNPIPE_HOME", str(tmp_path))
    assert cli_module._running_ui() is None
    marker = cli_module._ui_file()
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"url": "http://127.0.0.1:5077", "pid": os.getpid()}))
    assert cli_module._running_ui() == "http://127.0.0.1:5077"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    marker.write_text(json.dumps({"url": "http://127.0.0.1:5077", "pid": int(dead.stdout)}))
    assert cli_module._running_ui() is None  # a UI that stopped without tidying up


def test_ui_runs_quietly_says_where_and_stops_on_ctrl_c(tmp_path):
    """The real MLflow UI: no line per request (that is -v), the running port for printed
    links while it runs, and Ctrl-C stops it with 130 and no traceback."""
    import json
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RNNPIPE_LOG_LEVEL")}
    env["RNNPIPE_HOME"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnpipe.cli", "ui", "--port", str(port)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline, up = time.monotonic() + 120, False
        while not up and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    up = r.status == 200
            except OSError:
                time.sleep(0.5)
        assert up, proc.stdout.read() if proc.poll() is not None else "the UI did not answer"
        for path in ("/", "/ajax-api/2.0/mlflow/experiments/search?max_results=5"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                assert r.status == 200, path
        marker = tmp_path / ".rnnpipe" / "ui.json"
        assert json.loads(marker.read_text())["url"] == f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Traceback" not in out and "GET /" not in out, out
    # ours (where, how to open it) and MLflow's one line on who may connect
    assert len(out.strip().splitlines()) <= 3, out
    assert not marker.exists()


@pytest.mark.slow
def test_sigterm_during_training_stops_it_in_a_few_lines(tmp_path, inputs):
    """A training stopped by SIGTERM (a scheduler's stop, `kill`): its own exit code, the
    run marked as stopped, and no tracebacks from the temporary Prefect API going away."""
    import signal

    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    env.update(RNNPIPE_HOME=str(tmp_path), PREFECT_HOME=str(tmp_path / ".prefect"))
    args = [
        "train",
        "stocks",
        "--set",
        f"data.path={inputs / 'prices.csv'}",
        "--set",
        "data.series=[]",
        "--set",
        "window.lookback=20",
        "--set",
        "model.hidden_size=8",
        "--set",
        "train.epochs=500",
        "--set",
        "train.patience=500",
        "--set",
        "baselines.statistical=[]",
        "--set",
        "baselines.gbm=false",
        "--set",
        "register.gate_baselines=[naive]",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnpipe.cli", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    lines = []
    try:
        for line in proc.stdout:  # until the second epoch is done: mid-training
            lines.append(line)
            if "epoch 2/" in line:
                break
        assert proc.poll() is None, "".join(lines)
        os.kill(proc.pid, signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143 and "stopped (SIGTERM); `rnnpipe train ... --resume`" in rest, "".join(lines) + rest
    assert "Traceback" not in rest and "onnect" not in rest, rest
    assert len(rest.strip().splitlines()) <= 6, rest
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("prices-forecaster").experiment_id])
    assert run.info.status == "KILLED"  # stopped, not failed: --resume continues it


def test_runner_dask_without_the_dask_extra_says_how_to_install_it(monkeypatch, tmp_path):
    """Dask is an extra (`rnnpipe[dask]`): without it, --runner dask is refused before anything
    starts, with the install command; the other runners do not need it."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "prefect_dask" else real(name, *a)
    )
    for args in (["predict", "-i", "x.csv", "-o", str(tmp_path / "o")], ["sweep", "stocks"], ["backtest", "stocks"]):
        result = CliRunner().invoke(cli, [*args, "--runner", "dask"])
        assert result.exit_code == 2 and "pip install 'rnnpipe[dask]'" in result.output, (args, result.output)
        assert "prefect_dask not installed" in result.output


def test_a_scheduled_jobs_output_is_parquet_or_csv_before_any_server_starts():
    from rnnpipe.config import load_config
    from rnnpipe.errors import ConfigError
    from rnnpipe.schedule_config import ScheduleConfig

    assert load_config(ScheduleConfig, overrides=["predict.output=scored.csv"]).predict.output == "scored.csv"
    with pytest.raises(ConfigError, match=r"predict.output='scored.txt': rnnpipe writes Parquet or CSV"):
        load_config(ScheduleConfig, overrides=["predict.output=scored.txt"])
    load_config(ScheduleConfig, overrides=["predict.enabled=false", "predict.output=scored.txt"])  # no batch job


def test_a_schedule_checks_its_files_before_any_server_and_names_them_absolutely(tmp_path, monkeypatch, stocks):
    """A missing batch input or a misspelt column of a retrain's data fails before the server
    starts; a relative path means the file where `rnnpipe schedule` was started, whichever
    process later runs the retrain."""
    from click.testing import CliRunner

    from rnnpipe.cli import cli
    from rnnpipe.cli.operate import _scheduled_config

    monkeypatch.chdir(tmp_path)
    stocks[stocks.Ticker == "IBM"][["Date", "Close"]].tail(200).rename(columns={"Date": "day"}).to_csv(
        "sales.csv", index=False
    )
    for sets, message in (
        (["predict.input=nope.csv"], "error: predict.input='nope.csv': nope.csv: no such file or folder"),
        (['train.overrides=["data.path=sales.csv"]'], "error: sales.csv: column 'Date' not found"),
    ):
        result = CliRunner().invoke(cli, ["schedule", "--start-server", *[a for x in sets for a in ("--set", x)]])
        assert result.exit_code == 2 and result.output.startswith(message), result.output
        assert len(result.output.strip().splitlines()) == 1 and "Prefect" not in result.output
    own = ["data.path=sales.csv", "data.series_col=", "data.timestamp_col=day"]
    assert _scheduled_config("stocks", own).data.path == str(tmp_path / "sales.csv")
    assert _scheduled_config("stocks", []).data.path.endswith("stocks.parquet")  # the bundled sample
