"""Retraining on evidence, against a real Prefect server and `rnnpipe schedule`: the scheduled
batch job starts the retrain deployment when its drift report says `drift`, and not when the
data look like the training data; the retrain's MLflow run says why it ran."""

import json
import os
import time
import urllib.error
import urllib.request

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from test_monitor import SMALL
from test_operate import free_port, start_schedule, stop_group

from rnnpipe.registry import configure_tracking

MODEL = "evidence-monitor"


def api(url: str, body: bytes | None = None):
    """A Prefect API answer. A SQLite-backed server busy with a flow run on 2 cores can take
    longer than a read timeout now and then (seen once in CI): wait, and ask again twice."""
    for attempt in range(3):
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())
        except (TimeoutError, urllib.error.URLError):
            if attempt == 2:
                raise
            time.sleep(5)


def flow_runs(url: str, **filters) -> list[dict]:
    return api(f"{url}/flow_runs/filter", json.dumps({"flow_runs": filters}).encode())


def flow_state(url: str, flow_run_id: str) -> str:
    return api(f"{url}/flow_runs/{flow_run_id}")["state"]["type"]


def job_runs() -> list:
    client = MlflowClient()
    exp = client.get_experiment_by_name("batch-predictions")
    if exp is None:
        return []
    return [
        r
        for r in client.search_runs([exp.experiment_id], filter_string=f"tags.model_name = '{MODEL}'")
        if r.info.status == "FINISHED" and "drift_status" in r.data.tags
    ]


@pytest.mark.slow
def test_the_scheduled_batch_job_retrains_once_on_drift_and_not_on_unshifted_data(
    prefect_harness, inputs, tmp_path, monkeypatch, home
):
    from rnnpipe.config import load_config, to_dict
    from rnnpipe.flows.monitor import train_monitor
    from rnnpipe.pipelines.monitor.config import MonitorConfig
    from rnnpipe.prefect_server import PrefectServer

    overrides = [
        *SMALL,
        f"data.path={inputs / 'vitals.parquet'}",
        "forecast.enabled=false",
        "train.epochs=1",
        "register.experiment=evidence",
        f"register.model_name={MODEL}",
    ]
    train_monitor(config=to_dict(load_config(MonitorConfig, overrides=overrides)))
    vitals = pd.read_parquet(inputs / "vitals.parquet")
    batch = tmp_path / "batch.parquet"
    vitals.to_parquet(batch)

    monkeypatch.setenv("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", "2")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))  # a database of its own: no other test's runs
    server = PrefectServer("127.0.0.1", free_port())
    server.start()
    quoted = ", ".join(json.dumps(o) for o in overrides)
    (tmp_path / "schedule.toml").write_text(f"""
[server]
port = {server.port}
[train]
pipelines = ["monitor"]
cron = "0 0 1 1 *"
overrides = [{quoted}]
[predict]
model = "{MODEL}@champion"
input = "{batch}"
output = "{tmp_path / "scored.parquet"}"
interval_s = 8
retrain_on = ["drift"]
""")
    runner = start_schedule(tmp_path / "schedule.toml")
    configure_tracking()
    try:
        # a batch job on data like the training data: no retrain
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not job_runs():
            assert runner.poll() is None, runner.stdout.read()
            time.sleep(2)
        (calm,) = job_runs()[:1] or [None]
        assert calm is not None, "no scheduled batch job finished in time"
        assert calm.data.tags["drift_status"] == "ok" and "retrain_flow_run_id" not in calm.data.tags
        # the readings move by one standard deviation: the next job starts one retrain
        shifted = vitals.assign(glucose=vitals.glucose + vitals.glucose.std())
        shifted.to_parquet(tmp_path / "next.parquet")
        os.replace(tmp_path / "next.parquet", batch)
        deadline, drifted = time.monotonic() + 240, []
        while time.monotonic() < deadline and not drifted:  # its job run ends before the retrain starts
            drifted = [r for r in job_runs() if "retrain_flow_run_id" in r.data.tags]
            time.sleep(2)
        assert drifted, "no batch job on the shifted data started a retrain in time"
        trigger = drifted[-1]  # the first one (runs are listed newest first)
        assert trigger.data.tags["drift_status"] == "drift"
        retrain_id = trigger.data.tags["retrain_flow_run_id"]
        deadline, state = time.monotonic() + 240, ""
        while time.monotonic() < deadline and state not in ("COMPLETED", "FAILED", "CRASHED"):
            state = flow_state(server.api_url, retrain_id)
            time.sleep(2)
        assert state == "COMPLETED", state
        retrains = MlflowClient().search_runs(
            [MlflowClient().get_experiment_by_name("evidence").experiment_id],
            filter_string=f"tags.prefect_flow_run_id = '{retrain_id}'",
        )
        assert len(retrains) == 1
        assert trigger.info.run_id in retrains[0].data.tags["retrain_reason"]
        assert "drift: drift" in retrains[0].data.tags["retrain_reason"]
        # every finished job: a retrain exactly when it saw drift; never from the calm data
        done = [j for j in job_runs() if flow_state(server.api_url, j.data.tags["prefect_flow_run_id"]) == "COMPLETED"]
        done = [MlflowClient().get_run(j.info.run_id) for j in done]  # tags set after the job's run ended
        for job in done:
            assert ("retrain_flow_run_id" in job.data.tags) == (job.data.tags["drift_status"] == "drift")
        # ... and every retrain on evidence was started by a job that saw drift, named in its reason
        drift_jobs = {j.info.run_id for j in job_runs() if j.data.tags["drift_status"] == "drift"}
        for retrain in flow_runs(server.api_url, tags={"all_": ["on-evidence"]}):
            reason = retrain["parameters"]["reason"]
            assert reason.split(" ")[2] in drift_jobs, reason  # "batch job <run id> on ..."
    finally:
        stop_group(runner, 120)
        server.stop()
