"""Tuning with Optuna: the search space and its checks, a study through the Prefect flow
(trials as nested MLflow runs, the best settings written and retrained behind the gate), a
trial stopped by the pruner from the fit loop's epoch callback, and a study killed mid-way
(SIGKILL to the command and its workers) that resumes with --study, keeping every finished
trial."""

import os
import signal
import subprocess
import sys
import time
import tomllib

import optuna
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from rnnpipe.cli import cli
from rnnpipe.config import load_config, to_dict
from rnnpipe.errors import ConfigError
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.tune import StudySpec, open_study, run_tune_trial, storage_url
from rnnpipe.tune_space import default_space, parse_space

SPACE = {"model.hidden_size": "int 4 16 log", "train.lr": "float 0.001 0.02 log", "model.cell": "choice lstm gru"}


def test_every_kind_has_a_default_space_that_checks():
    for kind in ("stocks", "monitor", "reviews", "lm"):
        params = parse_space(kind, default_space(kind))
        assert {p.key for p in params} >= {"model.hidden_size", "train.lr", "model.cell"}, kind


@pytest.mark.parametrize(
    "space, message",
    [
        ({"model.hiden_size": "int 8 64"}, "unknown config key 'model.hiden_size' for stocks; did you mean"),
        ({"model.hidden_size": "float 8 64"}, "model.hidden_size is an integer setting: use int, not float"),
        ({"model.hidden_size": "int 8.5 64"}, "an int range needs whole numbers"),
        ({"train.lr": "float 0 0.1 log"}, "a log range must be above 0"),
        ({"train.lr": "float 0.1 0.01"}, "LOW must be below HIGH"),
        ({"model.cell": "choice lstm transformer"}, "'transformer' is not a valid setting"),
        ({"model.cell": "int 1 2"}, "model.cell holds 'lstm', not a number: use choice"),
        ({"train.lr": "between 0.1 and 1"}, 'expected "int LOW HIGH [log]"'),
        ({}, "tune.space is empty"),
    ],
)
def test_a_bad_space_is_named(space, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_space("stocks", space)


def test_the_cli_refuses_a_bad_space_or_another_studys_space_in_one_line(tmp_path):
    bad = tmp_path / "space.toml"
    bad.write_text('[tune.space]\n"model.hiden_size" = "int 8 64"\n')
    out = CliRunner().invoke(cli, ["tune", "stocks", "--space", str(bad)])
    assert out.exit_code == 2 and "unknown config key 'model.hiden_size'" in out.output, out.output
    assert len(out.output.strip().splitlines()) == 1 and "Traceback" not in out.output
    # a study of that name made with another space: refused before any worker starts
    open_study(
        StudySpec(
            "taken", "stocks", {"model.hidden_size": "int 8 64"}, "val_mae", "minimize", "median", 0, storage_url()
        )
    )
    good = tmp_path / "good.toml"
    good.write_text('[tune.space]\n"model.hidden_size" = "int 8 32"\n[train]\nepochs = 1\n')
    out = CliRunner().invoke(cli, ["tune", "stocks", "--config", str(good), "--study", "taken"])
    assert out.exit_code == 2 and "--study 'taken' was made with another space" in out.output, out.output


def test_a_study_is_measured_on_one_data_set(tmp_path, stocks):
    """A study on the bundled prices cannot be resumed on a file of one's own (its best trial
    would be chosen across data sets), and a run on one's own file gets a study of its own by
    default, named like its model: here the one made on the bundled prices, so it is refused."""
    from rnnpipe.tune import study_spec

    space = {**SPACE, "window.lookback": "int 20 80"}
    open_study(study_spec("stocks", load_config(ForecastConfig), "own-forecaster-tune", space, "median", ""))
    own, space_toml = tmp_path / "own.csv", tmp_path / "space.toml"
    stocks[stocks.Ticker == "IBM"].tail(300).to_csv(own, index=False)
    space_toml.write_text("[tune.space]\n" + "".join(f'"{k}" = "{v}"\n' for k, v in space.items()))
    out = CliRunner().invoke(cli, ["tune", "stocks", "--set", f"data.path={own}", "--space", str(space_toml)])
    assert out.exit_code == 2 and out.output.count("error:") == 1, out.output
    assert (
        "--study 'own-forecaster-tune' was measured on other data "
        f"(data.path = 'bundled:stocks.parquet', now '{own}')" in out.output
    ), out.output
    # settings the space varies may differ; the window it does not vary may not
    varied = load_config(ForecastConfig, overrides=["window.lookback=30", "train.lr=0.01"])
    assert open_study(study_spec("stocks", varied, "own-forecaster-tune", space, "median", "")) is not None
    other = load_config(ForecastConfig, overrides=["window.horizon=5"])
    with pytest.raises(ConfigError, match=r"measured on other data \(window.horizon = '1', now '5'\)"):
        open_study(study_spec("stocks", other, "own-forecaster-tune", space, "median", ""))


@pytest.fixture(scope="module")
def small(tmp_path_factory, stocks):
    path = tmp_path_factory.mktemp("tune") / "prices.parquet"
    stocks[stocks.Ticker.isin(["AAPL", "IBM"])].groupby("Ticker").tail(200).to_parquet(path)
    overrides = [
        f"data.path={path}",
        "data.series=[]",
        "model.num_layers=1",
        "model.hidden_size=8",
        "train.epochs=3",
        "train.batch_size=64",
        "baselines.statistical=[]",
        "baselines.gbm=false",
        "register.gate_baselines=[naive]",
        "register.experiment=tuning",
        "register.model_name=tuned-forecaster",
    ]
    return to_dict(load_config(ForecastConfig, overrides=overrides)), overrides


@pytest.mark.slow
def test_a_study_runs_trials_as_nested_runs_and_retrains_the_best_behind_the_gate(prefect_harness, small, tmp_path):
    from rnnpipe.flows.sweep import task_runner
    from rnnpipe.flows.tune import tune

    config, _ = small
    spec = StudySpec("flow-study", "stocks", SPACE, "val_mae", "minimize", "median", 0, storage_url())
    best_path = tmp_path / "best.toml"
    run = tune.with_options(task_runner=task_runner("sequential"))
    out = run("stocks", config, vars(spec), 3, 0.0, 1, 1, "sequential", str(best_path))
    assert out["counts"] == {"COMPLETE": 3} and out["epochs_trained"] > 0
    # trial 0 is the settings the study starts from (the base config, inside the space)
    study = optuna.load_study(study_name="flow-study", storage=storage_url())
    assert study.trials[0].user_attrs.get("base_settings") is True
    assert study.trials[0].params["model.cell"] == config["model"]["cell"]
    assert out["base_value"] == pytest.approx(study.trials[0].value)
    client = MlflowClient()
    parent = client.get_run(out["parent_run_id"])
    assert parent.data.tags["tune_study"] == "flow-study" and parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{out['parent_run_id']}'"
    )
    trials = [c for c in children if "tune_trial" in c.data.tags]
    assert len(trials) == 3 and {c.data.tags["tune_state"] for c in trials} == {"COMPLETE"}
    # each trial's run is what `rnnpipe train` logs, plus the settings the study chose
    best = next(c for c in trials if int(c.data.tags["tune_trial"]) == out["best_trial"])
    assert best.data.metrics["val_mae"] == pytest.approx(out["best_value"])
    assert int(best.data.params["model.hidden_size"]) == out["best_params"]["model.hidden_size"]
    assert {a.path for a in client.list_artifacts(best.info.run_id, "metrics")} >= {"metrics/all.json"}
    assert {a.path for a in client.list_artifacts(out["parent_run_id"], "tune")} >= {
        "tune/optimization_history.png",
        "tune/trials.json",
    }
    # the best settings as a config file `rnnpipe train --config` reproduces, and retrained
    # with them (nested under the study's run) through the gate into the registry
    written = tomllib.loads(best_path.read_text())
    assert written["model"]["hidden_size"] == out["best_params"]["model.hidden_size"]
    assert written["model"]["cell"] == out["best_params"]["model.cell"]
    retrained = client.get_run(out["retrained"]["run_id"])
    assert retrained.data.tags["mlflow.parentRunId"] == out["parent_run_id"]
    assert retrained.data.params["model.hidden_size"] == str(written["model"]["hidden_size"])
    assert client.get_model_version("tuned-forecaster", out["retrained"]["version"]).run_id == retrained.info.run_id
    # the seed, the data and the thread count are the trial's: the retrained model scores what
    # its trial scored, to the last digits (a sum over other threads rounds otherwise)
    assert written["train"]["threads"] == "1" and retrained.data.params["train.threads"] == "1"
    assert retrained.data.metrics["val_mae"] == pytest.approx(out["best_value"], rel=1e-9)


@pytest.mark.parametrize(("setting", "share", "used"), [("auto", 1, 1), ("auto", 2, 2), ("4", 2, 2), ("1", 2, 1)])
def test_the_best_is_retrained_with_the_threads_its_trial_had(setting, share, used):
    from rnnpipe.tune import trial_threads

    assert trial_threads({"train": {"threads": setting}}, share) == used


def test_a_trial_behind_is_pruned_from_the_epoch_callback(monkeypatch, small):
    import rnnpipe.tune as tune_module
    from rnnpipe.registry import Run, configure_tracking

    configure_tracking()
    config, _ = small
    # a pruner that stops any trial at its first report: the plumbing under test is the fit
    # loop's epoch callback -> trial.report -> should_prune -> a run marked pruned
    monkeypatch.setattr(tune_module, "make_pruner", lambda name, warmup=2: optuna.pruners.ThresholdPruner(upper=-1.0))
    spec = StudySpec("prune-study", "stocks", SPACE, "val_mae", "minimize", "median", 0, storage_url())
    open_study(spec)
    parent = Run.start("tuning", run_name="prune-parent")
    out = run_tune_trial(spec, config, 0, session="s", parent_run_id=parent.id, experiment="tuning")
    assert out.state == "PRUNED" and out.epochs == 1, out
    run = MlflowClient().get_run(out.run_id)
    assert run.data.tags["tune_state"] == "PRUNED" and run.info.status == "KILLED"
    study = optuna.load_study(study_name="prune-study", storage=storage_url())
    assert [t.state.name for t in study.trials] == ["PRUNED"]


@pytest.mark.slow
def test_a_study_killed_mid_way_resumes_and_keeps_its_finished_trials(small, home):
    """SIGKILL to `rnnpipe tune` and its process-pool workers once a trial has finished; the
    same command with --study finishes the study without losing one."""
    _, overrides = small
    sets = [a for o in overrides for a in ("--set", o)]
    cmd = [sys.executable, "-m", "rnnpipe.cli", "-q", "tune", "stocks", "--study", "killed", *sets]
    cmd += ["--set", "train.epochs=4", "--pruner", "none"]
    space = home / "killed-space.toml"
    space.write_text('[tune.space]\n"model.hidden_size" = "int 4 16 log"\n"train.lr" = "float 0.001 0.02 log"\n')
    cmd += ["--space", str(space)]
    proc = subprocess.Popen(
        [*cmd, "--trials", "6"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    storage = storage_url()
    done = []
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            time.sleep(1)
            try:
                study = optuna.load_study(study_name="killed", storage=storage)
            except Exception:  # not made yet (or its tables being made)
                continue
            done = [t.number for t in study.trials if t.state.name == "COMPLETE"]
            if done:
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and every worker of its pool
        proc.wait()
    assert done, "no trial finished before the deadline"
    kept = {
        t.number: t.value
        for t in optuna.load_study(study_name="killed", storage=storage).trials
        if t.state.name == "COMPLETE"
    }
    resume = [*cmd, "--runner", "sequential", "--trials", str(len(kept) + 1)]
    out = subprocess.run(resume, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name="killed", storage=storage)
    states = {t.number: t.state.name for t in study.trials}
    # every finished trial is still there with its value; trials the kill interrupted are FAIL
    assert all(states[n] == "COMPLETE" and study.trials[n].value == v for n, v in kept.items())
    assert sum(s == "COMPLETE" for s in states.values()) == len(kept) + 1
    assert "RUNNING" not in states.values()
    # and the killed session's MLflow runs (its parent, its interrupted trials) say KILLED
    from rnnpipe.registry import configure_tracking

    configure_tracking()
    client = MlflowClient()
    experiment = client.get_experiment_by_name("tuning").experiment_id
    runs = client.search_runs([experiment], filter_string="tags.tune_study = 'killed'")
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    assert any(r.info.status == "KILLED" for r in runs)


def _ask_twice(url: str, start_at: float) -> list[int]:
    import optuna

    from rnnpipe.tune import _quiet, _storage, asking

    _quiet()
    study = optuna.load_study(study_name="race", storage=_storage(url))
    time.sleep(max(0.0, start_at - time.time()))  # every process asks at the same moment
    ids = []
    for _ in range(2):
        with asking(url):
            ids.append(study.ask().number)
    return ids


def test_processes_asking_at_once_never_pop_the_same_enqueued_trial(tmp_path):
    """SQLite has no row locks: without the ask lock, two processes can both pop one enqueued
    trial (the base settings) and one of the two runs is lost (optuna issues 4002, 4621)."""
    import multiprocessing

    import optuna

    from rnnpipe.tune import _storage

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="race", storage=_storage(url))
    for x in range(6):
        study.enqueue_trial({"x": x})
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        start_at = time.time() + 8
        got = pool.starmap(_ask_twice, [(url, start_at)] * 3)
    ids = [i for ids in got for i in ids]
    assert len(set(ids)) == 6, got
    assert {t.state.name for t in study.get_trials()} == {"RUNNING"} and len(study.get_trials()) == 6
