"""Batch prediction on a real Dask LocalCluster (2 workers, loopback): the input's parts on
the workers, one output folder committed with `_SUCCESS` and a rename (issue 14, item 2)."""

import json
import re

import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from rnnpipe.cli import cli
from rnnpipe.io import read_output

pytestmark = pytest.mark.slow


def predict(model, src, dst, *extra):
    return CliRunner().invoke(cli, ["predict", model, "-i", str(src), "-o", str(dst), "--chunk-rows", "64", *extra])


def on_dask(model, src, dst, *extra):
    """The job's output folder: Parquet parts, or CSV parts for a folder named *.csv."""
    result = predict(model, src, dst, "--runner", "dask", "--workers", "2", *extra)
    assert result.exit_code == 0, result.output
    kind = "csv" if dst.suffix == ".csv" else "parquet"
    assert sorted(p.name for p in dst.iterdir()) == sorted(
        ["_SUCCESS", *(f"part-{i:05d}.{kind}" for i in range(json.loads((dst / "_SUCCESS").read_text())["parts"]))]
    )
    return read_output(dst)


def test_dask_workers_predict_the_same_rows_as_the_local_runner(models, inputs, tmp_path):
    name, version = models["reviews"]
    local = predict(f"{name}/{version}", inputs / "reviews_in", tmp_path / "local.parquet")
    assert local.exit_code == 0, local.output
    want = pd.read_parquet(tmp_path / "local.parquet")
    # 4 files, 4 parts; --split-gpus places workers on GPUs (none here: each keeps --device)
    got = on_dask(f"{name}/{version}", inputs / "reviews_in", tmp_path / "scored", "--split-gpus", "--device", "cpu")
    assert json.loads((tmp_path / "scored" / "_SUCCESS").read_text())["parts"] == 4
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    job = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("batch-predictions").experiment_id], max_results=1
    )[0]
    assert job.data.params["runner"] == "dask" and job.data.params["split_gpus"] == "True"
    # the parts' drift counts add up to the local job's report
    local_job = MlflowClient().search_runs(
        [job.info.experiment_id], filter_string="params.runner = 'local'", max_results=1
    )[0]
    assert job.data.tags["drift_status"] in ("ok", "warn", "drift")
    for key in ("drift_psi.tokens", "drift_ks.unknown_share", "drift_psi.prediction.label"):
        assert job.data.metrics[key] == pytest.approx(local_job.data.metrics[key], abs=1e-9), key
    again = predict(f"{name}/{version}", inputs / "reviews_in", tmp_path / "scored", "--runner", "dask")
    assert again.exit_code == 2 and "exists; pass --overwrite" in again.output


def test_a_series_model_gets_whole_series_when_series_span_files(models, inputs, tmp_path):
    name, version = models["stocks"]
    prices = pd.read_csv(inputs / "prices.csv")
    (tmp_path / "halves").mkdir()
    for i, half in enumerate((prices.iloc[::2], prices.iloc[1::2])):  # every series in both files
        half.to_parquet(tmp_path / "halves" / f"part-{i}.parquet")
    local = predict(f"{name}/{version}", inputs / "prices.csv", tmp_path / "local.parquet")
    assert local.exit_code == 0, local.output
    cols = ["Ticker", "step", "Date", "forecast"]
    want = pd.read_parquet(tmp_path / "local.parquet")[cols].sort_values(["Ticker", "step"]).reset_index(drop=True)
    got = on_dask(f"{name}/{version}", tmp_path / "halves", tmp_path / "fc.csv")  # CSV parts
    got = got[cols].assign(Date=pd.to_datetime(got.Date)).sort_values(["Ticker", "step"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_a_failing_part_leaves_no_output_and_names_its_file(models, inputs, tmp_path, monkeypatch):
    """One part fails on a worker (a series too short to forecast): the job fails with the
    model's reason and the file, and leaves nothing behind. An input this small is refused
    before the job starts; one past `PRECHECK_BYTES` is checked as its parts are read."""
    from rnnpipe import batch_jobs

    name, version = models["stocks"]
    prices = pd.read_csv(inputs / "prices.csv")
    src = tmp_path / "in"
    src.mkdir()
    prices[prices.Ticker == "AAPL"].to_parquet(src / "a.parquet")
    prices[prices.Ticker == "IBM"].tail(5).to_parquet(src / "b.parquet")
    result = predict(f"{name}/{version}", src, tmp_path / "out", "--runner", "dask", "--workers", "2")
    assert result.exit_code == 2 and "'IBM' has 5 rows of history" in result.output, result.output
    assert "Flow run" not in result.output and result.output.count("error:") == 1
    monkeypatch.setattr(batch_jobs, "PRECHECK_BYTES", 0)  # as for a large input: the parts check
    result = predict(f"{name}/{version}", src, tmp_path / "out", "--runner", "dask", "--workers", "2")
    assert result.exit_code == 2, result.output
    assert "b.parquet" in result.output and "'IBM' has 5 rows of history" in result.output
    assert "Traceback" not in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["in"]  # no output, no temporary folder


def test_a_job_killed_mid_way_leaves_no_output_and_the_next_one_cleans_up(models, tmp_path):
    """SIGKILL to the job and its workers while parts are being written: no OUTDIR appears;
    the hidden temporary folder stays until the next job into the same OUTDIR removes it."""
    import os
    import signal
    import time

    name, version = models["reviews"]
    src = tmp_path / "big"
    reviews = _reviews_in_four_files(src)
    dst = tmp_path / "out"
    log = tmp_path / "job.log"
    with log.open("w") as out:
        proc = _dask_job(f"{name}/{version}", src, dst, out)
    deadline = time.monotonic() + 180

    def writing():
        return [f for d in tmp_path.glob(".out.*.tmp") for f in d.iterdir() if f.name.startswith(".part-")]

    while not writing() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1)  # the workers' nannies go with the group
    assert not dst.exists()
    # the cluster's scheduler and workers, started by then, say nothing unless something is wrong
    said = log.read_text()
    assert "Task run 'plan-parts" in said and not re.findall(
        r"INFO\s+\|\s+distributed\.|distributed\.\S+ - INFO", said
    ), said
    left = list(tmp_path.glob(".out.*.tmp"))
    assert left
    got = on_dask(f"{name}/{version}", src, dst)
    assert len(got) == len(reviews) and not any(p.exists() for p in left)


def _dask_job(model, src, dst, stdout):
    """`rnnpipe predict` on a 2-worker Dask LocalCluster, in its own process group, at the
    default verbosity, on the test session's Prefect API; output and errors to `stdout`."""
    import os
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    env.pop("DASK_LOGGING__DISTRIBUTED", None)
    args = [
        "predict",
        model,
        "-i",
        str(src),
        "-o",
        str(dst),
        "--chunk-rows",
        "20",
        "--runner",
        "dask",
        "--workers",
        "2",
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "rnnpipe.cli", *args],
        env=env,
        start_new_session=True,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _reviews_in_four_files(folder):
    from conftest import REPO

    folder.mkdir()
    reviews = pd.read_parquet(REPO / "data" / "reviews_train.parquet").rename(columns={"review": "text"})
    for i in range(4):
        reviews.iloc[i::4].to_parquet(folder / f"part-{i}.parquet")
    return reviews


def test_a_worker_killed_mid_job_never_leaves_output_that_looks_complete(models, tmp_path):
    """SIGKILL to one Dask worker while parts are being written: its nanny restarts it and the
    scheduler runs its parts again, so the job either completes with every row once, or fails
    and leaves no OUTDIR (that the next job into it succeeds is the test above's)."""
    import os
    import signal
    import subprocess
    import time

    import psutil

    name, version = models["reviews"]
    reviews = _reviews_in_four_files(tmp_path / "big")
    dst = tmp_path / "out"
    proc = _dask_job(f"{name}/{version}", tmp_path / "big", dst, subprocess.PIPE)
    deadline = time.monotonic() + 180

    def workers():
        return [
            c
            for c in psutil.Process(proc.pid).children(recursive=True)
            if "spawn_main" in " ".join(c.cmdline()) or "forkserver" in " ".join(c.cmdline())
        ]

    def writing():
        return [f for d in tmp_path.glob(".out.*.tmp") for f in d.iterdir() if f.name.startswith(".part-")]

    while not writing() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before a worker could be killed"
    victims = workers()
    assert len(victims) >= 2
    os.kill(victims[0].pid, signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    if proc.returncode == 0:
        assert (dst / "_SUCCESS").exists(), output
        got = pd.read_parquet(dst)
        assert len(got) == len(reviews) and got.review_id.is_unique
    else:
        assert not dst.exists(), output
        assert "Traceback" not in output


def test_a_device_this_machine_lacks_fails_before_the_job(models, inputs, tmp_path):
    import torch

    name, version = models["reviews"]
    ref, src, dst = f"{name}/{version}", inputs / "reviews_in", tmp_path / "out.parquet"
    bad = predict(ref, src, dst, "--device", "gpu")
    assert bad.exit_code == 2 and "expected auto, cpu, cuda, cuda:N or mps" in bad.output
    assert predict(ref, src, dst, "--split-gpus").exit_code == 2  # needs --runner dask
    if not torch.cuda.is_available():
        missing = predict(ref, src, dst, "--device", "cuda")
        assert missing.exit_code == 2 and "CUDA is not available" in missing.output
    assert not dst.exists()


def test_a_process_started_after_a_model_loads_imports_the_installed_rnnpipe(models):
    """MLflow puts a model's copy of the rnnpipe code first on sys.path to load it. A process
    started later inherits the path (Dask spawns its workers so), and must still import this
    rnnpipe, not the copy from the version that logged the model (mixed with this version's
    flows, a name added since failed to import and a Dask job hung)."""
    import os
    import subprocess
    import sys

    import rnnpipe
    from rnnpipe.registry import load_model

    name, version = models["stocks"]
    before = list(sys.path)
    load_model(f"models:/{name}/{version}")
    assert sys.path == before
    child = subprocess.run(
        [sys.executable, "-c", "import rnnpipe; print(rnnpipe.__file__)"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == rnnpipe.__file__
