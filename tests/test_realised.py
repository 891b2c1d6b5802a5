"""Realised accuracy of batch jobs: a classifier's labelled rows and a forecaster's forecasts
against actuals that arrive later, scored as the model was scored at registration, and
`degraded` when they fall beyond the margin."""

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import f1_score

from rnnpipe.flows.predict import batch_predict


def job_run(out: dict):
    return MlflowClient().get_run(out["job_run_id"])


def registered(name: str, version: str, score: str) -> float:
    """The version's test score: the run's model's, or for a baseline's version the baseline's."""
    mv = MlflowClient().get_model_version(name, version)
    prefix = f"{mv.tags['baseline']}_" if mv.tags.get("baseline") else ""
    return MlflowClient().get_run(mv.run_id).data.metrics[f"{prefix}test_{score}"]


def test_labelled_reviews_are_scored_against_the_registered_macro_f1(models, inputs, tmp_path):
    name, version = models["reviews"]
    reviews = pd.concat(pd.read_parquet(inputs / "reviews_in" / f"shard={k}") for k in range(4))
    src = tmp_path / "labelled.parquet"
    reviews.to_parquet(src)
    out = batch_predict(f"{name}/{version}", str(src), str(tmp_path / "scored.parquet"))
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    expected = f1_score(scored["score"], scored["label"], average="macro", labels=sorted(scored["score"].unique()))
    run = job_run(out)
    assert run.data.metrics["realised_macro_f1"] == pytest.approx(expected)
    assert run.data.metrics["realised_rows"] == len(reviews)
    assert run.data.metrics["registered_macro_f1"] == pytest.approx(registered(name, version, "macro_f1"))
    assert out["realised"].startswith("realised: ") and run.data.tags["realised_status"] in ("ok", "degraded")

    # labels that contradict the model: the realised F1 falls far below the registered one
    classes = sorted(reviews["score"].unique())
    flipped = reviews.assign(score=np.where(scored["label"] == classes[0], classes[1], classes[0]))
    flipped.to_parquet(src)
    out = batch_predict(f"{name}/{version}", str(src), str(tmp_path / "scored.parquet"), overwrite=True)
    assert job_run(out).data.metrics["realised_macro_f1"] == 0.0
    assert job_run(out).data.tags["realised_status"] == "degraded" and "degraded" in out["realised"]

    # no label column: nothing to score, no realised line
    reviews[["text"]].to_parquet(src)
    out = batch_predict(f"{name}/{version}", str(src), str(tmp_path / "scored.parquet"), overwrite=True)
    assert out["realised"] == "" and "realised_status" not in job_run(out).data.tags


def test_forecasts_are_scored_against_actuals_that_arrive_later(models, inputs, tmp_path):
    name, version = models["stocks"]
    prices = pd.read_csv(inputs / "prices.csv")
    last = prices.groupby("Ticker").tail(1)
    history = prices.drop(last.index)
    src = tmp_path / "history.csv"
    history.to_csv(src, index=False)
    actuals = tmp_path / "actuals.csv"
    last.to_csv(actuals, index=False)
    out = batch_predict(f"{name}/{version}", str(src), str(tmp_path / "f.parquet"), actuals=str(actuals))
    forecasts = pd.read_parquet(tmp_path / "f.parquet")
    joined = forecasts.assign(Date=forecasts.Date.astype(str).str[:10]).merge(last, on=["Ticker", "Date"])
    assert len(joined) == 2  # one step ahead of each series' history is its last row
    run = job_run(out)
    assert run.data.metrics["realised_mae"] == pytest.approx((joined.forecast - joined.Close).abs().mean())
    assert run.data.metrics["realised_rows"] == 2
    assert run.data.metrics["registered_mae"] == pytest.approx(registered(name, version, "mae"))

    # actuals far from what the model can forecast: degraded
    last.assign(Close=last.Close * 3).to_csv(actuals, index=False)
    out = batch_predict(
        f"{name}/{version}", str(src), str(tmp_path / "f.parquet"), overwrite=True, actuals=str(actuals)
    )
    assert job_run(out).data.tags["realised_status"] == "degraded"


def test_actuals_without_the_needed_columns_are_refused_by_name(models, inputs, tmp_path):
    from click.testing import CliRunner

    from rnnpipe.cli import cli

    name, version = models["stocks"]
    bad = tmp_path / "actuals.csv"
    pd.DataFrame({"Ticker": ["AAPL"], "When": ["2013-01-02"], "Close": [1.0]}).to_csv(bad, index=False)
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            f"{name}/{version}",
            "-i",
            str(inputs / "prices.csv"),
            "-o",
            str(tmp_path / "o.parquet"),
            "--actuals",
            str(bad),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "column 'Date' not found" in result.output and str(bad) in result.output
    missing = CliRunner().invoke(
        cli, ["predict", "-i", str(inputs / "prices.csv"), "-o", str(tmp_path / "o.parquet"), "--actuals", "nope.csv"]
    )
    assert missing.exit_code == 2 and "--actuals nope.csv: no such file" in missing.output
