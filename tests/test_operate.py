"""Operating the models (issue: serving, batch prediction, schedules) with real servers on
loopback, started and stopped here: one tiny model of each pipeline, served by `rnnpipe serve`
and run through `rnnpipe predict`, and a scheduled run on a real `prefect server`."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import REPO
from mlflow.tracking import MlflowClient

from rnnpipe.cli import cli
from rnnpipe.registry import configure_tracking

pytestmark = pytest.mark.slow
LINEAGE = ["model_name", "model_version", "model_alias", "mlflow_run_id"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_batch(model, src, dst, chunk_rows):
    result = CliRunner().invoke(
        cli, ["predict", model, "-i", str(src), "-o", str(dst), "--chunk-rows", str(chunk_rows)]
    )
    assert result.exit_code == 0, result.output
    return pd.read_parquet(dst)


def test_batch_prediction_chunks_keeps_keys_and_lineage_and_is_idempotent(models, inputs, tmp_path):
    name, version = models["reviews"]
    out = run_batch(f"{name}/{version}", inputs / "reviews_in", tmp_path / "scored.parquet", 64)
    src = pd.read_parquet(inputs / "reviews_in")
    assert len(out) == 400
    assert list(out.columns[:3]) == ["review_id", "product", "score"]  # input keys first
    assert {"label", "prob_great", "prob_other", "note", *LINEAGE} <= set(out.columns)
    assert sorted(out.review_id) == sorted(src.review_id) and out.review_id.is_unique
    run_id = MlflowClient().get_model_version(name, version).run_id
    assert (out.model_name == name).all() and (out.model_version == version).all()
    assert (out.mlflow_run_id == run_id).all() and (out.model_alias == "").all()
    again = run_batch(f"{name}/{version}", inputs / "reviews_in", tmp_path / "again.parquet", 100)
    pd.testing.assert_frame_equal(out, again)  # other chunking, same result
    # the job left an MLflow run pointing back at its Prefect flow run
    jobs = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("batch-predictions").experiment_id])
    assert jobs[0].data.metrics["rows_in"] == 400 and jobs[0].data.tags["prefect_flow_run_id"]
    assert jobs[0].info.run_name == jobs[0].data.tags["prefect_flow_run_name"]  # one name in both UIs
    (read,) = jobs[0].inputs.dataset_inputs
    assert read.dataset.source.endswith("reviews_in") or "reviews_in" in read.dataset.source
    assert [t.value for t in read.tags if t.key == "mlflow.data.context"] == ["inference"]

    # series models get whole series even when a series spans several chunks
    name, version = models["stocks"]
    fc = run_batch(f"{name}/{version}", inputs / "prices.csv", tmp_path / "fc.parquet", 40)
    assert sorted(fc.Ticker) == ["AAPL", "IBM"] and (fc.model_version == version).all()


def test_a_losing_language_model_registers_its_ngram_and_a_missing_alias_lists_the_versions(models, inputs, tmp_path):
    """The tiny language model loses to its n-gram, so the n-gram is registered beside it as the
    champion (a version that serves prompts like the model); asking for an alias the model does
    not have lists its versions (read from the store, and through MLflow's client)."""
    import mlflow

    from rnnpipe.errors import ModelError
    from rnnpipe.localstore import not_registered
    from rnnpipe.pipelines.lm.artefact import NgramPipeline
    from rnnpipe.registry import load_pipeline, resolve_model

    name, version = models["lm"]
    champion = resolve_model(f"{name}@champion")
    mv = MlflowClient().get_model_version(name, champion.version)
    assert mv.tags["baseline"] == "ngram" and int(champion.version) == int(version) + 1, mv.tags
    assert isinstance(load_pipeline(champion, "lm"), NgramPipeline)
    pins = Path(mlflow.artifacts.download_artifacts(f"{champion.uri}/requirements.txt")).read_text().split()
    assert any(p.startswith("nltk==") for p in pins) and any(p.startswith("torch==") for p in pins), pins
    out = tmp_path / "continued.csv"
    pd.DataFrame({"prompt": ["this tea is", "do not buy"]}).to_csv(tmp_path / "prompts.csv", index=False)
    result = CliRunner().invoke(cli, ["-q", "predict", name, "-i", str(tmp_path / "prompts.csv"), "-o", str(out)])
    assert result.exit_code == 0, result.output[-3000:]
    got = pd.read_csv(out)
    assert got.model_version.tolist() == [int(champion.version)] * 2 and got.n_tokens.min() > 0

    listed = f"its versions: v{champion.version} @baseline @champion, v{version} @challenger (name one, e.g. {name}/"
    args = ["predict", f"{name}@newest", "-i", str(tmp_path / "prompts.csv"), "-o", str(tmp_path / "o.csv")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and result.output.count("error:") == 1, result.output
    assert "has no alias @newest in the registry" in result.output and listed in result.output, result.output
    with pytest.raises(ModelError, match=re.escape(listed)):
        resolve_model(f"{name}/99")
    # a model none of whose versions passed the gate says so
    none = not_registered("m@champion", "sqlite:///x.db", ["m"], {"1": ["challenger"], "2": []})
    assert str(none).endswith("no version passed the gate; its versions: v2, v1 @challenger (name one, e.g. m/2)")


def test_batch_prediction_takes_what_training_takes_in_any_order(models, inputs, tmp_path):
    """Rows in random order, newest first, and a dataset partitioned by month (each series in
    several files) give the same forecasts as the sorted file (issue 13 item 1)."""
    name, version = models["stocks"]
    prices = pd.read_csv(inputs / "prices.csv")
    expected = run_batch(f"{name}/{version}", inputs / "prices.csv", tmp_path / "sorted.parquet", 1000)
    prices.sample(frac=1, random_state=0).to_csv(tmp_path / "shuffled.csv", index=False)
    prices.iloc[::-1].to_parquet(tmp_path / "newest_first.parquet")
    for month, g in prices.groupby(prices.Date.str[:7]):
        (tmp_path / "by_month" / f"month={month}").mkdir(parents=True)
        g.to_parquet(tmp_path / "by_month" / f"month={month}" / "part-0.parquet")
    cols = ["Ticker", "step", "Date", "forecast", "q0.1", "q0.9"]
    want = expected[cols].sort_values(["Ticker", "step"]).reset_index(drop=True)
    for src in ("shuffled.csv", "newest_first.parquet", "by_month"):
        got = run_batch(f"{name}/{version}", tmp_path / src, tmp_path / f"{src}.out.parquet", 50)
        pd.testing.assert_frame_equal(got[cols].sort_values(["Ticker", "step"]).reset_index(drop=True), want, obj=src)
    assert not list(tmp_path.glob(".*.regroup")) and not list(tmp_path.glob(".*.tmp"))
    # a header and no rows: the file is named
    prices.head(0).to_csv(tmp_path / "empty.csv", index=False)
    result = CliRunner().invoke(
        cli, ["predict", f"{name}/{version}", "-i", str(tmp_path / "empty.csv"), "-o", str(tmp_path / "empty.parquet")]
    )
    assert result.exit_code == 2 and "empty.csv" in result.output and "no rows" in result.output
    assert not (tmp_path / "empty.parquet").exists()


def test_batch_job_killed_leaves_no_output_and_the_next_run_cleans_up(models, inputs, tmp_path):
    # killed with SIGKILL while writing: the final file never appears
    from prefect.settings import PREFECT_API_URL

    name, version = models["reviews"]
    big = tmp_path / "big.parquet"
    pd.read_parquet(REPO / "data" / "reviews_train.parquet").rename(columns={"review": "text"}).to_parquet(big)
    dst = tmp_path / "killed.parquet"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rnnpipe.cli",
            "predict",
            f"{name}/{version}",
            "-i",
            str(big),
            "-o",
            str(dst),
            "--chunk-rows",
            "20",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".killed.parquet.*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.3)
    assert proc.poll() is None, "the job ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not dst.exists()
    left = list(tmp_path.glob(".killed.parquet.*"))
    assert left  # the dead job's temp file, until the next job into the same output
    mine = tmp_path / f".killed.parquet.{os.getpid()}.x.tmp"  # a live job's: never touched
    mine.write_text("in use")
    run_batch(f"{name}/{version}", inputs / "reviews_in", dst, 100)
    assert dst.exists() and not any(p.exists() for p in left) and mine.exists()


def wait_until_serving(port: int, proc: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{what}: server not ready")


def post(url, body: bytes):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def split_json(df: pd.DataFrame) -> bytes:
    return json.dumps(
        {"dataframe_split": json.loads(df.to_json(orient="split", index=False, date_format="iso"))}
    ).encode()


def test_served_models_answer_like_batch_prediction_and_refuse_bad_payloads(models, inputs, tmp_path):
    prices = pd.read_csv(inputs / "prices.csv")
    vitals = pd.read_parquet(inputs / "vitals.parquet").groupby("pid").tail(40)
    vitals.to_parquet(tmp_path / "recent.parquet")
    texts = pd.DataFrame({"text": ["Delicious and fresh, will buy again!", "", "stale and bland", "très bon"]})
    texts.to_parquet(tmp_path / "texts.parquet")
    prompts = pd.DataFrame({"prompt": ["this tea is", "", "my dog"]})
    prompts.to_parquet(tmp_path / "prompts.parquet")
    cases = {
        "stocks": (prices[["Ticker", "Date", "Close"]], inputs / "prices.csv"),
        "monitor": (vitals, tmp_path / "recent.parquet"),
        "reviews": (texts, tmp_path / "texts.parquet"),
        "lm": (prompts, tmp_path / "prompts.parquet"),
    }
    servers = {}
    try:
        for key, (name, version) in models.items():  # start all three, then wait
            port = free_port()
            servers[key] = (
                port,
                subprocess.Popen(
                    [sys.executable, "-m", "rnnpipe.cli", "serve", f"{name}/{version}", "--port", str(port)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,
                ),
            )
        for key, (port, proc) in servers.items():
            wait_until_serving(port, proc, key)
        for key, (port, _) in servers.items():
            df, path = cases[key]
            url = f"http://127.0.0.1:{port}/invocations"
            status, body = post(url, split_json(df))
            assert status == 200, body
            served = pd.DataFrame(body["predictions"])
            if key == "stocks":  # the quantile forecasts beside the point forecast, never crossing
                assert {"forecast", "q0.1", "q0.5", "q0.9"} <= set(served.columns)
                assert (served["q0.1"] <= served["q0.5"]).all() and (served["q0.5"] <= served["q0.9"]).all()
            batch = run_batch("/".join(models[key]), path, tmp_path / f"{key}.parquet", 1000)
            batch = batch[[c for c in served.columns]]
            for col in served.columns:
                if pd.api.types.is_float_dtype(batch[col]):
                    np.testing.assert_allclose(served[col].astype(float), batch[col], rtol=1e-6, err_msg=col)
                elif pd.api.types.is_datetime64_any_dtype(batch[col]):
                    assert (pd.to_datetime(served[col]) == batch[col]).all(), col
                else:
                    assert served[col].tolist() == batch[col].tolist(), col
            assert post(url, b"{not json")[0] == 400
            status, body = post(url, json.dumps({"dataframe_split": {"columns": ["nope"], "data": [[1]]}}).encode())
            # the reason first, in one short line: the model's own check, not a dump of the frame
            assert status == 400 and body["message"].startswith("input: column ") and "not found" in body["message"]
            assert len(body["message"]) < 300 and "\n" not in body["message"], body["message"]
        # a client's own column names (which MLflow's schema enforcement drops before the model
        # sees them) are named in the answer, with the one it most likely meant
        reviews_url = f"http://127.0.0.1:{servers['reviews'][0]}/invocations"
        for sent in ("Text", "body"):
            status, body = post(reviews_url, split_json(texts.rename(columns={"text": sent})))
            assert status == 400 and f"sent: {sent}" in body["message"], body
            assert f"did you mean {sent!r}" in body["message"], body["message"]
        # the training data's own text column is accepted as well, served as in a batch job
        status, body = post(reviews_url, split_json(texts.rename(columns={"text": "review"})))
        assert status == 200 and body == post(reviews_url, split_json(texts))[1], body
        status, body = post(
            f"http://127.0.0.1:{servers['stocks'][0]}/invocations",
            split_json(prices[["Ticker", "Date", "Close"]].rename(columns={"Close": "Price"})),
        )
        assert status == 400 and body["message"].startswith("input: column 'Close' not found"), body
        assert "sent: Ticker, Date, Price" in body["message"] and "did you mean 'Price'" in body["message"]
        # a series too short for the model: 400 with the reason, not a 500
        status, body = post(f"http://127.0.0.1:{servers['stocks'][0]}/invocations", split_json(prices.head(5)))
        assert status == 400 and "rows of history" in body["message"]
        bad = prices.head(80).astype({"Close": object})
        bad.loc[bad.index[3], "Close"] = "n/a"  # a text in a number column: named with its row
        status, body = post(f"http://127.0.0.1:{servers['stocks'][0]}/invocations", split_json(bad))
        assert status == 400 and body["message"].startswith("input row 3: column 'Close': 'n/a' is not a number")
        # the language model's generation settings come from the request's params
        lm_url = f"http://127.0.0.1:{servers['lm'][0]}/invocations"
        body = json.loads(split_json(prompts))
        status, short = post(lm_url, json.dumps({**body, "params": {"max_new_tokens": 2, "temperature": 0.0}}).encode())
        assert status == 200, short
        assert all(p["n_tokens"] <= 2 for p in short["predictions"])
        assert all(p["n_tokens"] == 2 or p["note"] == "" for p in short["predictions"])  # or stopped at the end
        greedy = post(
            lm_url, json.dumps({**body, "params": {"max_new_tokens": 2, "temperature": 0.0, "seed": 5}}).encode()
        )
        assert greedy[1]["predictions"] == short["predictions"]  # temperature 0 ignores the seed
        status, bad = post(lm_url, json.dumps({**body, "params": {"top_p": 5.0}}).encode())
        assert status == 400 and "top_p" in bad["message"]
        # the empty review gets a clear answer, with JSON null where there is no label
        status, body = post(f"http://127.0.0.1:{servers['reviews'][0]}/invocations", split_json(texts))
        assert body["predictions"][1]["label"] is None and body["predictions"][1]["note"].startswith("empty text")
    finally:
        # Ctrl-C stops a server with 130, SIGTERM with 143, as every rnnpipe command
        for i, (_, proc) in enumerate(servers.values()):
            os.killpg(proc.pid, signal.SIGINT if i == 0 else signal.SIGTERM)
        codes = [proc.wait(30) for _, proc in servers.values()]
    assert codes == [130] + [143] * (len(codes) - 1), codes


def start_schedule(config) -> subprocess.Popen:
    """`rnnpipe schedule --config CONFIG` in its own process group (the server its config names)."""
    env = {**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "rnnpipe.cli", "schedule", "--config", str(config)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stop_group(proc: subprocess.Popen, timeout: float) -> None:
    """Teardown: Ctrl-C to the process group, as in a terminal; SIGKILL if it is still there
    after `timeout` seconds."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def test_schedule_runs_a_deployment_on_a_real_prefect_server(inputs, tmp_path, monkeypatch, home):
    from rnnpipe.prefect_server import PrefectServer

    monkeypatch.setenv("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", "2")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))  # a database of its own: no other test's runs
    server = PrefectServer("127.0.0.1", free_port())
    server.start()
    # the UI in the browser is told to call this server's API, not the default port 4200
    with urllib.request.urlopen(f"{server.ui_url}/ui-settings", timeout=10) as r:
        assert json.loads(r.read())["api_url"] == server.api_url
    runner = None
    try:
        (tmp_path / "schedule.toml").write_text(f"""
[server]
port = {server.port}
[train]
pipelines = ["stocks"]
interval_s = 15
overrides = ["data.path={inputs / "prices.csv"}", "data.series=[]", "window.lookback=20",
             "model.hidden_size=8", "train.epochs=1", "register.experiment=scheduled",
             "register.model_name=scheduled-stocks", "baselines.statistical=[]",
             "register.gate_baselines=['naive']"]
[predict]
enabled = false
""")
        runner = start_schedule(tmp_path / "schedule.toml")
        body = json.dumps({"flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}}}).encode()
        deadline, done = time.monotonic() + 300, []
        while time.monotonic() < deadline and not done:
            assert runner.poll() is None, runner.stdout.read()
            req = urllib.request.Request(
                f"{server.api_url}/flow_runs/filter", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                done = json.loads(r.read())
            time.sleep(2)
        assert done, "no scheduled run finished in time"
        assert done[0]["state"]["type"] == "COMPLETED", done[0]["state"]
        configure_tracking()  # the same store as the scheduled run's (RNNPIPE_HOME)
        runs = MlflowClient().search_runs(
            [MlflowClient().get_experiment_by_name("scheduled").experiment_id],
            filter_string=f"tags.prefect_flow_run_id = '{done[0]['id']}'",
        )
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        assert runs[0].data.tags["prefect_flow_run_name"] == done[0]["name"] == runs[0].info.run_name
        with urllib.request.urlopen(
            urllib.request.Request(
                f"{server.api_url}/deployments/filter", data=b"{}", headers={"Content-Type": "application/json"}
            ),
            timeout=10,
        ) as r:
            (dep,) = json.loads(r.read())
        assert dep["global_concurrency_limit"]["limit"] == 1
        assert dep["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
        # the next retrain, caught in flight by Ctrl-C (the terminal signals the whole group)
        body = json.dumps({"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}}).encode()
        deadline, live, mlflow_run = time.monotonic() + 120, [], []
        while time.monotonic() < deadline and not mlflow_run:
            req = urllib.request.Request(
                f"{server.api_url}/flow_runs/filter", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                live = json.loads(r.read())
            if live:
                mlflow_run = MlflowClient().search_runs(
                    [MlflowClient().get_experiment_by_name("scheduled").experiment_id],
                    filter_string=f"tags.prefect_flow_run_id = '{live[0]['id']}'",
                )
            time.sleep(0.5)
        assert mlflow_run, "no second retrain started"
        os.killpg(runner.pid, signal.SIGINT)
        try:
            rc = runner.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            pytest.fail("rnnpipe schedule did not stop within 120 s of SIGINT:\n" + runner.stdout.read()[-4000:])
        out = runner.stdout.read()
        assert rc == 130, out[-3000:]
        with urllib.request.urlopen(f"{server.api_url}/flow_runs/{live[0]['id']}", timeout=10) as r:
            state = json.loads(r.read())["state"]["type"]
        status = MlflowClient().get_run(mlflow_run[0].info.run_id).info.status
        assert (state, status) in (("CANCELLED", "KILLED"), ("COMPLETED", "FINISHED")), out[-3000:]
        assert state == "CANCELLED" or "cancelled" not in out  # a run that finished first is left alone
    finally:
        if runner is not None and runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
        server.stop()
    assert not server.healthy() and server.proc.returncode is not None


def serve(model: str) -> tuple[int, subprocess.Popen]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnpipe.cli", "serve", model, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until_serving(port, proc, model)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return port, proc


def test_a_forecaster_that_loses_leaves_its_baseline_as_a_servable_champion(prefect_harness, tmp_path):
    """A pure daily cycle: the seasonal naive forecast is exact, so the recurrent model loses
    to it; the baseline is registered as a version of the same model, becomes champion and
    serves raw history through a real `rnnpipe serve`."""
    from rnnpipe.config import load_config, to_dict
    from rnnpipe.flows.forecast import train_stocks
    from rnnpipe.pipelines.forecast.config import ForecastConfig

    t = np.arange(600)
    df = pd.DataFrame(
        {"time": pd.date_range("2024-01-01", periods=600, freq="h"), "load": 100 + 10 * np.sin(2 * np.pi * t / 12)}
    )
    df.to_csv(tmp_path / "cycle.csv", index=False)
    cfg = load_config(
        ForecastConfig,
        overrides=[
            f"data.path={tmp_path / 'cycle.csv'}",
            'data.series_col=""',
            "data.series_name=cycle",
            "data.series=[]",
            "data.timestamp_col=time",
            "data.target_col=load",
            "window.lookback=24",
            "window.horizon=3",
            "window.season=12",
            "window.target=diff",
            "model.hidden_size=8",
            "model.num_layers=1",
            "train.epochs=1",
            "baselines.statistical=[]",
            "baselines.gbm=false",
            "register.gate_baselines=[seasonalnaive]",
            "register.experiment=ops-baseline",
            "register.model_name=ops-cycle",
        ],
    )
    summary = train_stocks(config=to_dict(cfg))
    assert summary["alias"] == "challenger" and "loses to the seasonalnaive baseline" in summary["reason"]
    assert summary["baseline_alias"] == "champion" and "the seasonalnaive baseline itself" in summary["baseline_reason"]
    configure_tracking()
    mv = MlflowClient().get_model_version_by_alias("ops-cycle", "champion")
    assert str(mv.version) == summary["baseline_version"] and mv.tags["baseline"] == "seasonalnaive"
    port, proc = serve("ops-cycle@champion")
    try:
        history = df.tail(40)
        status, body = post(f"http://127.0.0.1:{port}/invocations", split_json(history))
        assert status == 200, body
        served = pd.DataFrame(body["predictions"])
        assert list(served.columns) == ["step", "time", "forecast", "q0.1", "q0.5", "q0.9"]
        expected = 100 + 10 * np.sin(2 * np.pi * (600 + np.arange(3) - 12) / 12)  # one season back
        np.testing.assert_allclose(served.forecast, expected, atol=1e-6)
        assert (pd.to_datetime(served.time) == pd.date_range("2024-01-26", periods=3, freq="h")).all()
        status, body = post(f"http://127.0.0.1:{port}/invocations", split_json(history.head(5)))
        assert status == 400 and "rows of history" in body["message"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
