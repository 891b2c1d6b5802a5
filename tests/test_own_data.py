"""A new user's own data and folder: a model name of its own, bundled defaults that work
from anywhere (the installed package's files), the user's paths read from where the user is."""

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from rnnpipe.cli import cli
from rnnpipe.config import load_config
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.pipelines.lm.artefact import LMConfig
from rnnpipe.pipelines.monitor.config import MonitorConfig
from rnnpipe.pipelines.reviews.config import ReviewsConfig
from rnnpipe.settings import bundled_dir, describe_source, resolve_data_path

REPO = Path(__file__).resolve().parent.parent


def test_own_data_gets_a_model_name_of_its_own():
    assert load_config(ForecastConfig).register.model_name == "stocks-forecaster"
    assert (
        load_config(ForecastConfig, overrides=["data.path=my prices.csv"]).register.model_name == "my-prices-forecaster"
    )
    assert (
        load_config(ReviewsConfig, overrides=["data.path=own/tickets.jsonl"]).register.model_name == "tickets-sentiment"
    )
    assert load_config(MonitorConfig, overrides=["data.path=icu/"]).register.model_name == "icu-classifier"
    assert load_config(LMConfig, overrides=["data.path=corpus.parquet"]).register.model_name == "corpus-lm"
    # ... and its runs an experiment of that name, apart from the bundled sample's
    assert load_config(ForecastConfig).register.experiment == "stocks"
    own = load_config(ForecastConfig, overrides=["data.path=prices.csv"]).register
    assert own.experiment == own.model_name == "prices-forecaster"
    assert load_config(MonitorConfig, overrides=["data.path=icu/"]).register.experiment == "icu-classifier"
    given = load_config(ForecastConfig, overrides=["data.path=prices.csv", "register.experiment=mine"]).register
    assert given.experiment == "mine" and given.model_name == "prices-forecaster"
    # a name the user gives stands, even the bundled one (the gate's other-data rule guards that)
    named = load_config(ForecastConfig, overrides=["data.path=p.csv", "register.model_name=stocks-forecaster"])
    assert named.register.model_name == "stocks-forecaster"
    # the bundled sample named explicitly is the bundled model
    assert (
        load_config(ForecastConfig, overrides=["data.path=data/stocks.parquet"]).register.model_name
        == "stocks-forecaster"
    )


def test_bundled_defaults_mean_the_installed_files_whatever_the_folder(tmp_path, monkeypatch):
    """From a folder of one's own with RNNPIPE_HOME there: the defaults (stocks, reviews and
    their vectors, glucose) are the package's files; a file of the same name in the user's
    folder is read only when the user names it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNPIPE_HOME", str(tmp_path))
    (tmp_path / "data").mkdir()
    pd.DataFrame({"Date": ["2024-01-01"], "Close": [1.0]}).to_csv(tmp_path / "data" / "stocks.parquet")
    for cfg, paths in (
        (load_config(ForecastConfig), ["data.path"]),
        (load_config(LMConfig), ["data.path", "data.test_path"]),
        (load_config(ReviewsConfig, overrides=["data.path=mine.csv"]), ["embed.path"]),
        (load_config(ReviewsConfig), ["data.path", "data.test_path", "embed.path"]),
        (load_config(MonitorConfig), ["data.path"]),
    ):
        for key in paths:
            section, name = key.split(".")
            value = Path(getattr(getattr(cfg, section), name))
            assert value.is_absolute() and value.parent == bundled_dir() and value.exists(), (key, value)
    assert load_config(ReviewsConfig, overrides=["data.path=mine.csv"]).data.path == "mine.csv"
    # named by the user: read from where the user is; a bundled name not here: the bundled file
    assert resolve_data_path("data/stocks.parquet") == Path("data/stocks.parquet")
    assert resolve_data_path("data/word_vectors.parquet") == bundled_dir() / "word_vectors.parquet"
    assert resolve_data_path("elsewhere/x.csv") == Path("elsewhere/x.csv")
    assert describe_source(bundled_dir() / "glucose.parquet") == "bundled:glucose.parquet"
    assert describe_source("data/stocks.parquet") == str(tmp_path / "data" / "stocks.parquet")


@pytest.mark.slow
def test_own_data_keeps_the_bundled_champion_and_its_jobs(prefect_harness, tmp_path, stocks):
    """The reported sequence: the bundled model is champion; a one-series CSV is trained as
    the README's "Your own data" says; the bundled champion still predicts the bundled file.
    Given the bundled name on purpose, the own model is refused by the other-data rule."""
    small = [
        "window.lookback=20",
        "train.epochs=1",
        "model.hidden_size=8",
        "model.num_layers=1",
        "baselines.statistical=[]",
        "register.gate_baselines=[naive]",
        "register.experiment=own-data",
    ]

    def train(*sets):
        result = CliRunner().invoke(cli, ["-q", "train", "stocks", *[a for s in [*small, *sets] for a in ("--set", s)]])
        assert result.exit_code == 0, result.output[-3000:]
        return [x for x in result.output.splitlines() if re.match(r"[\w-]+ v\d+ -> ", x)]

    bundled = train()
    assert bundled[0].startswith("stocks-forecaster v1 -> "), bundled
    champion = "stocks-forecaster@champion"
    from rnnpipe.registry import resolve_model

    before = resolve_model(champion).version
    one = stocks[stocks.Ticker == "IBM"][["Date", "Close"]].tail(300)
    one.to_csv(tmp_path / "ibm_prices.csv", index=False)
    own = train(f"data.path={tmp_path / 'ibm_prices.csv'}", "data.series_col=''")
    assert own[0].startswith("ibm-prices-forecaster v1 -> "), own
    assert resolve_model(champion).version == before
    named = train(
        f"data.path={tmp_path / 'ibm_prices.csv'}", "data.series_col=''", "register.model_name=stocks-forecaster"
    )
    (line,) = named
    assert "-> challenger" in line and "[other-data]" in line and "bundled:stocks.parquet" in line, named
    assert resolve_model(champion).version == before
    out = tmp_path / "forecasts.parquet"
    result = CliRunner().invoke(cli, ["-q", "predict", champion, "-i", "data/stocks.parquet", "-o", str(out)])
    assert result.exit_code == 0, result.output[-3000:]
    assert set(pd.read_parquet(out).Ticker) >= {"AAPL", "IBM", "MSFT"}
    # a misspelt name is said to be one, not a missing alias
    typo = CliRunner().invoke(
        cli, ["predict", "stocks-forcaster@champion", "-i", "data/stocks.parquet", "-o", str(tmp_path / "typo.parquet")]
    )
    assert typo.exit_code == 2 and "no registered model named 'stocks-forcaster'" in typo.output
    assert "did you mean 'stocks-forecaster'?" in typo.output


@pytest.mark.slow
def test_an_installed_wheel_trains_every_pipeline_from_a_folder_of_ones_own(tmp_path):
    """A wheel built from the repo, installed apart from the checkout, run from an empty
    folder with RNNPIPE_HOME there: the bundled defaults (the stocks and glucose samples, the
    reviews' vectors) come from the installed package, every bundled file is in it, and the
    user's own file is read from the folder."""
    dist, site, work = tmp_path / "dist", tmp_path / "site", tmp_path / "work"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("rnnpipe-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    for name in ("stocks", "glucose", "reviews_train", "reviews_test", "word_vectors", "ecg", "weather", "electricity"):
        assert (site / "rnnpipe" / "data" / f"{name}.parquet").exists(), name
    for name in ("weather-day-ahead", "electricity-day-ahead", "glucose-forecast"):
        assert (site / "rnnpipe" / "configs" / f"{name}.toml").exists(), name
    own = pd.read_parquet(REPO / "data" / "reviews_train.parquet").head(240)
    # the bundled samples (stocks, glucose) and the reported case (own texts, the bundled vectors)
    runs = {
        "stocks": [
            "window.lookback=20",
            "train.epochs=1",
            "model.hidden_size=8",
            "baselines.statistical=[]",
            "baselines.gbm=false",
            "register.gate_baselines=[naive]",
        ],
        "reviews": ["data.path=my_reviews.csv", "train.epochs=1", "model.hidden_size=8", "text.max_len=40"],
        "monitor": ["train.epochs=1", "model.hidden_size=8", "forecast.enabled=false"],
        "lm": [
            "data.path=my_reviews.csv",
            "data.test_path=''",
            "train.epochs=1",
            "model.embed_dim=16",
            "model.hidden_size=16",
            "model.num_layers=1",
            "stream.bptt=20",
        ],
    }
    # each pipeline in a folder of its own (its own RNNPIPE_HOME), all four at once
    procs, logs = {}, contextlib.ExitStack()
    for pipeline, sets in runs.items():
        home = work / pipeline
        home.mkdir(parents=True)
        own.to_csv(home / "my_reviews.csv", index=False)
        env = {**os.environ, "PYTHONPATH": str(site), "RNNPIPE_HOME": str(home), "PREFECT_HOME": str(home / ".prefect")}
        env.pop("PREFECT_API_URL", None)
        env.pop("MLFLOW_TRACKING_URI", None)
        procs[pipeline] = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from rnnpipe import cli; print('code:', cli.__file__, file=sys.stderr); cli.main()",
                *([] if pipeline == "stocks" else ["-q"]),
                "train",
                pipeline,
                *[a for s in sets for a in ("--set", s)],
            ],
            cwd=home,
            env=env,
            stdout=logs.enter_context((tmp_path / f"{pipeline}.out").open("w")),  # files: no pipe fills up
            stderr=logs.enter_context((tmp_path / f"{pipeline}.err").open("w")),
        )
    for proc in procs.values():
        proc.wait(timeout=600)
    logs.close()
    for pipeline, proc in procs.items():
        stdout, stderr = (tmp_path / f"{pipeline}.out").read_text(), (tmp_path / f"{pipeline}.err").read_text()
        assert proc.returncode == 0, (pipeline, stderr[-3000:])
        assert f"code: {site / 'rnnpipe' / 'cli' / '__init__.py'}" in stderr  # the wheel's, not the checkout's
        if pipeline == "stocks":  # the default output: what a user needs, each thing once
            out = stdout + stderr
            assert len(re.findall(r"stocks-forecaster v1 -> \w+", out)) == 1, out[-3000:]
            for noise in ("dedicated server", "Validating input example", "Traceback", "MLflow run ", "epoch 1/1"):
                assert (noise in out) == (noise in ("MLflow run ", "epoch 1/1")), (noise, out[-3000:])
        home = work / pipeline
        assert (home / "mlruns" / "mlflow.db").exists() and not (home / "data").exists(), pipeline
    # the documented configs, named as the docs name them, from a folder without configs/
    env = {**os.environ, "PYTHONPATH": str(site), "RNNPIPE_HOME": str(work / "stocks")}
    shown = subprocess.run(
        [sys.executable, "-m", "rnnpipe.cli", "config", "stocks", "--config", "configs/weather-day-ahead.toml"],
        cwd=work / "stocks",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert 'model_name = "weather-forecaster"' in shown.stdout and "horizon = 24" in shown.stdout, shown.stdout
