"""Deployments the Prefect way: `prefect deploy --all` of the repository's `prefect.yaml`
against a real Prefect server, and a real `prefect worker` that runs a retrain."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from mlflow.tracking import MlflowClient
from test_operate import free_port, stop_group
from test_retrain_on_evidence import api, flow_state

from rnnpipe.registry import configure_tracking


@pytest.mark.slow
def test_prefect_yaml_deploys_every_flow_and_a_worker_runs_a_retrain(inputs, tmp_path, home, monkeypatch):
    """`prefect deploy --all` from the checkout and `prefect worker start --pool rnnpipe`, as
    Prefect users run production flows: a retrain run triggered on the deployment runs on the
    worker, and its MLflow run is linked to the flow run."""
    from rnnpipe.prefect_server import PrefectServer

    prefect = str(Path(sys.executable).with_name("prefect"))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))  # a database of its own
    server = PrefectServer("127.0.0.1", free_port())
    server.start()
    env = {**os.environ, "PREFECT_API_URL": server.api_url, "PREFECT_HOME": str(tmp_path / "prefect")}
    worker = None
    try:

        def cli(*args: str, timeout: float = 120) -> str:
            done = subprocess.run([prefect, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            return done.stdout

        cli("work-pool", "create", "rnnpipe", "--type", "process")
        cli("--no-prompt", "deploy", "--all", timeout=300)
        deployed = {d["name"]: d for d in api(f"{server.api_url}/deployments/filter", b"{}")}
        assert set(deployed) == {"stocks-retrain", "monitor-retrain", "reviews-retrain", "lm-retrain", "batch-predict"}
        assert all(d["work_pool_name"] == "rnnpipe" for d in deployed.values())
        assert deployed["batch-predict"]["parameters"]["retrain_deployment"] == "train-stocks/stocks-retrain"

        config = {
            "data": {"path": str(inputs / "prices.csv"), "series": []},
            "window": {"lookback": 20},
            "model": {"hidden_size": 8, "num_layers": 1},
            "train": {"epochs": 1},
            "baselines": {"statistical": []},
            "register": {"experiment": "deployed", "model_name": "deployed-stocks", "gate_baselines": ["naive"]},
        }
        out = cli("deployment", "run", "train-stocks/stocks-retrain", "--param", f"config={json.dumps(config)}")
        run_id = next(w for w in out.split() if len(w) == 36 and w.count("-") == 4)
        worker = subprocess.Popen(
            [prefect, "worker", "start", "--pool", "rnnpipe"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline, state = time.monotonic() + 300, ""
        while time.monotonic() < deadline and state not in ("COMPLETED", "FAILED", "CRASHED"):
            assert worker.poll() is None, worker.stdout.read()[-3000:]
            state = flow_state(server.api_url, run_id)
            time.sleep(2)
        assert state == "COMPLETED", state
        configure_tracking()
        runs = MlflowClient().search_runs(
            [MlflowClient().get_experiment_by_name("deployed").experiment_id],
            filter_string=f"tags.prefect_flow_run_id = '{run_id}'",
        )
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        assert MlflowClient().get_registered_model("deployed-stocks").name == "deployed-stocks"
    finally:
        if worker is not None:
            stop_group(worker, 30)
        server.stop()
