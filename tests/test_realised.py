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

    # actuals far from what the model can forecast: degraded (the output written as CSV this
    # time, which the score reads back as it was written)
    last.assign(Close=last.Close * 3).to_csv(actuals, index=False)
    out = batch_predict(f"{name}/{version}", str(src), str(tmp_path / "f.csv"), actuals=str(actuals))
    assert job_run(out).data.tags["realised_status"] == "degraded", job_run(out).data.tags


def test_monitor_alerts_are_scored_against_the_readings_that_came_after(models, inputs, tmp_path):
    """Each patient cut at several times: the readings up to a cut are a batch input (one
    prediction at the cut), the readings after it arrive later as `--actuals`. Every judged
    prediction's outcome is the training label of the same window on the patient's whole
    series (the training path, not the realised code), and the realised F1 is sklearn's."""
    import mlflow

    name, version = models["monitor"]
    vitals = pd.read_parquet(inputs / "vitals.parquet").sort_values(["pid", "ts"])
    history, after = [], []
    for pid, g in vitals.groupby("pid"):
        for k, cut in enumerate(range(40, len(g) - 12, 9)):
            history.append(g.iloc[:cut].assign(pid=f"{pid}@{k}"))
            after.append(g.iloc[cut : cut + 8].assign(pid=f"{pid}@{k}"))
    src, arrived = tmp_path / "readings.parquet", tmp_path / "arrived.csv"
    pd.concat(history).to_parquet(src)
    pd.concat(after).to_csv(arrived, index=False)
    out = batch_predict(f"{name}/{version}", str(src), str(tmp_path / "risk.parquet"), actuals=str(arrived))
    run = job_run(out)

    pipe = mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model().pipeline
    whole = pipe._grid(vitals)
    _, labels = pipe.preprocessor.targets(whole)
    row_of = {
        (str(s), t): i
        for i, (s, t) in enumerate(zip(np.repeat(whole.series, np.diff(whole.offsets)), whole.timestamps, strict=True))
    }
    pred = pd.read_parquet(tmp_path / "risk.parquet").dropna(subset=["risk"])
    truth = np.array([labels[row_of[(p.split("@")[0], t)]] for p, t in zip(pred.pid, pred.ts, strict=True)])
    judged = ~np.isnan(truth)
    assert judged.sum() >= 20 and truth[judged].sum() >= 3  # the cuts see events and quiet spells
    assert run.data.metrics["realised_rows"] == judged.sum()
    assert run.data.metrics["realised_event_rows"] == truth[judged].sum()
    expected = f1_score(truth[judged].astype(int), pred.alert.to_numpy()[judged].astype(int))
    assert run.data.metrics["realised_f1"] == pytest.approx(expected)
    assert run.data.metrics["registered_f1"] == pytest.approx(registered(name, version, "f1"))
    assert run.data.tags["realised_status"] in ("ok", "degraded") and "realised_precision" in run.data.metrics

    # readings that never show the event: no judged alert can be right
    calm = pd.concat(after).assign(glucose=120.0)
    calm.to_csv(arrived, index=False)
    out = batch_predict(
        f"{name}/{version}", str(src), str(tmp_path / "risk.parquet"), overwrite=True, actuals=str(arrived)
    )
    metrics = job_run(out).data.metrics
    assert metrics["realised_event_rows"] == 0 and "realised_f1" not in metrics  # F1 is undefined without events

    # actuals whose values cannot be read: the job's predictions stand, and the run says why
    broken = pd.concat(after, ignore_index=True).astype({"ts": str})
    broken.loc[3, "ts"] = "not a time"
    broken.to_csv(arrived, index=False)
    out = batch_predict(
        f"{name}/{version}", str(src), str(tmp_path / "risk.parquet"), overwrite=True, actuals=str(arrived)
    )
    assert out["realised"].startswith("realised: not computed (")
    assert job_run(out).data.tags["realised_status"] == "error" and (tmp_path / "risk.parquet").exists()


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
