"""The thread settings a job resolves (not its speed: that is bench/bench_contention.py)."""

import os

import pytest
import torch

from rnnpipe import threads
from rnnpipe.config import load_config
from rnnpipe.errors import ConfigError
from rnnpipe.pipelines.forecast.config import ForecastConfig


@pytest.fixture(autouse=True)
def _restore():
    before = torch.get_num_threads()
    yield
    threads.share(None)
    threads._governor = None
    torch.set_num_threads(before)


def test_parse_accepts_auto_and_whole_numbers():
    assert threads.parse("auto") == "auto"
    assert threads.parse(" AUTO ") == "auto"
    assert threads.parse("3") == 3
    assert threads.parse(2) == 2
    for bad in ("0", "-1", "two", "1.5", ""):
        with pytest.raises(ConfigError, match="train.threads"):
            threads.parse(bad)


def test_config_key_is_checked_before_anything_runs():
    assert load_config(ForecastConfig, overrides=["train.threads=2"]).train.threads == "2"
    with pytest.raises(ConfigError, match=r"train.threads='0': expected auto or a whole number"):
        load_config(ForecastConfig, overrides=["train.threads=0"])


def test_resolve_caps_at_the_cores_and_a_workers_share():
    assert threads.resolve("auto", cpus=4) == 4
    assert threads.resolve(8, cpus=4) == 4  # never more than the cores
    assert threads.resolve(3, cpus=4) == 3
    with threads.worker_share(1):  # a sweep worker with one core of its own
        assert threads.resolve("auto", cpus=4) == 1
        assert threads.resolve(4, cpus=4) == 1
    assert threads.resolve("auto", cpus=4) == 4  # a trial run in this process leaves no cap behind


def test_a_trial_run_in_process_leaves_the_process_uncapped(tmp_path, monkeypatch):
    from rnnpipe import sweep

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    result = sweep.run_trial(
        "stocks",
        {"data": {"path": str(tmp_path / "missing.csv")}},
        {},
        0,
        experiment="share",
        parent_run_id="",
        threads=1,
    )
    assert not result.ok  # the missing file fails the trial ...
    assert threads.resolve("auto", cpus=4) == 4  # ... and its one-core share ended with it


def test_available_cpus_reads_the_affinity_and_a_cgroup_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    assert threads.available_cpus(tmp_path) == affinity  # no quota files
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.available_cpus(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: one thread
    assert threads.available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")  # cgroup v1, 1.5 CPUs
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.available_cpus(tmp_path) == min(affinity, 2)
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # v1: no quota
    assert threads.available_cpus(tmp_path) == affinity


def test_governor_keeps_the_cores_others_leave_free():
    g = threads.ThreadGovernor(limit=2)
    g.cpus = [0, 1]
    assert g.target(0.0) == 2
    assert g.target(0.2) == 2  # a little background work: both cores
    assert g.target(0.9) == 1  # another job on one core
    assert g.target(2.0) == 1  # never below one
    # other processes' use = the cores' busy time minus this process's own CPU time
    assert g.others((0.0, 10.0, 5.0), (1.0, 11.5, 6.0)) == pytest.approx(0.5)
    assert g.others((0.0, 10.0, 5.0), (1.0, 12.0, 7.0)) == pytest.approx(0.0)
    assert g.others((0.0, None, 5.0), (1.0, 12.0, 7.0)) is None


def test_apply_sets_torch_and_a_fixed_number_does_not_adapt():
    assert threads.apply(1) == 1
    assert torch.get_num_threads() == 1
    assert threads._governor is None
    threads.share(1)
    assert threads.apply("auto") == 1 and threads._governor is None  # one thread: nothing to adapt
    threads.share(None)
    n = threads.apply("auto")
    assert n == threads.available_cpus() and torch.get_num_threads() == n
    assert (threads._governor is not None) == (n > 1)
