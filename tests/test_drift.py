"""Drift reports: the statistics against scipy, counts that merge and stay bounded, and batch
jobs of every kind that has a reference profile: a channel shifted by one standard deviation
(or texts of another domain) is `drift` with that feature named first, the unshifted data `ok`."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from rnnpipe.config import DriftConfig, load_config
from rnnpipe.drift import DriftCounter, profile

REPO = Path(__file__).resolve().parents[1]


def counted(prof, features, chunks=5):
    c = DriftCounter(prof)
    n = len(next(iter(features.values())))
    for idx in np.array_split(np.arange(n), chunks):
        c.update({k: np.asarray(v)[idx] for k, v in features.items()}, {})
    return c


def test_ks_and_psi_on_the_reference_grid_agree_with_scipy_and_flag_a_one_sd_shift():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 20_000)
    prof = profile({"x": ref}, {}, DriftConfig())
    assert len(json.dumps(prof)) < 10_000  # kilobytes
    for shift, expected in ((0.0, "ok"), (1.0, "drift")):
        new = rng.normal(shift, 1, 50_000)
        row = counted(prof, {"x": new}).report().rows[0]
        assert row["ks"] == pytest.approx(stats.ks_2samp(ref, new).statistic, abs=0.012)
        assert row["status"] == expected
    assert row["psi"] > 0.5  # the usual PSI of a one-sd shift of a normal is about 0.9


def test_counts_merge_as_one_job_and_hold_no_rows():
    rng = np.random.default_rng(1)
    prof = profile({"x": rng.normal(size=5000), "c": rng.choice(list("ab"), 5000)}, {}, DriftConfig(), ("c",))
    new = {"x": rng.normal(0.3, 1, 9000), "c": rng.choice(list("abz"), 9000)}
    whole = counted(prof, new, chunks=1)
    parts = [counted(prof, {k: v[i::3] for k, v in new.items()}, chunks=2) for i in range(3)]
    merged = parts[0].merge(parts[1]).merge(parts[2])
    assert merged.report().table() == whole.report().table()
    assert whole.counts[("features", "", "x")].counts.size <= 102  # the grid, whatever the input size
    cat = next(r for r in whole.report().rows if r["feature"] == "c")
    assert cat["psi"] > 0.25 and cat["status"] == "drift"  # a class never seen in training


def test_missing_values_and_too_few_rows():
    rng = np.random.default_rng(2)
    prof = profile({"x": rng.normal(size=2000)}, {}, DriftConfig(min_rows=50))
    holes = rng.normal(size=1000)
    holes[:400] = np.nan
    assert counted(prof, {"x": holes}).report().rows[0]["status"] == "drift"  # 40% missing, none before
    few = counted(prof, {"x": rng.normal(5, 1, 20)}, chunks=1).report()
    assert few.rows[0]["status"] == "too few" and few.status == "ok"
    assert "not judged" in few.line()


def test_thresholds_start_above_how_far_the_training_datas_own_parts_stray():
    """A seasonal channel: its training year's cold and warm months differ from the whole year
    by far more than the PSI thresholds. A batch of one such month is what the model learned
    from (`ok`, where the thresholds alone say `drift`); a batch beyond every month drifts."""
    rng = np.random.default_rng(3)
    season = np.sin(np.linspace(0, 2 * np.pi, 12_000, endpoint=False))
    year = 10 * season + rng.normal(0, 2, 12_000)  # in time order, as profiles take a series
    calibrated = profile({"temp": year}, {}, DriftConfig())
    plain = profile({"temp": year}, {}, DriftConfig(blocks=0))
    natural = calibrated["features"]["temp"]["psi_natural"]
    assert natural > 1.0 and plain["features"]["temp"]["psi_natural"] == 0.0
    winter = 10 * season[8_000:9_500] + rng.normal(0, 2, 1_500)  # a cold spell of the same kind
    rows = [counted(p, {"temp": winter}).report().rows[0] for p in (calibrated, plain)]
    assert rows[0]["psi"] == pytest.approx(rows[1]["psi"]) and rows[0]["psi"] > 0.25
    assert [r["status"] for r in rows] == ["ok", "drift"]
    assert rows[0]["psi_natural"] == pytest.approx(natural)
    colder = winter - 10  # colder than any month of the training year
    assert counted(calibrated, {"temp": colder}).report().status == "drift"
    # readings without a season: parts of the reference stray by sampling noise alone, which
    # `natural_psi` subtracts, so the one-sd shift above is judged against the thresholds
    flat = profile({"x": rng.normal(0, 1, 20_000)}, {}, DriftConfig())["features"]["x"]["psi_natural"]
    assert 0.0 <= flat < 0.01


def shifted_channel(df: pd.DataFrame, column: str) -> pd.DataFrame:
    out = df.copy()
    out[column] = out[column] + out[column].std()
    return out


def batch(model: str, df: pd.DataFrame, tmp_path: Path, name: str) -> dict:
    from rnnpipe.flows.predict import batch_predict

    path = tmp_path / f"{name}.parquet"
    df.to_parquet(path)
    return batch_predict(model, str(path), str(tmp_path / f"{name}-out.parquet"))


def report_of(out: dict) -> dict:
    client = MlflowClient()
    run = client.get_run(out["job_run_id"])
    report = json.loads(Path(client.download_artifacts(run.info.run_id, "drift/report.json")).read_text())
    assert run.data.tags["drift_status"] == report["status"]
    return report


def test_one_series_that_moves_is_named_where_the_pooled_figures_hide_it():
    from rnnpipe.drift import MAX_GROUPS

    rng = np.random.default_rng(1)
    groups = {f"s{i}": {"x": rng.normal(0, 1, 2000)} for i in range(10)}
    prof = profile({"x": np.concatenate([g["x"] for g in groups.values()])}, {}, DriftConfig(), groups=groups)
    assert sorted(prof["groups"]) == sorted(groups) and len(json.dumps(prof)) < 30_000
    ids = np.repeat([f"s{i}" for i in range(10)], 1000)
    x = rng.normal(0, 1, 10_000)
    x[ids == "s3"] += 1.0
    whole = DriftCounter(prof)
    whole.update({"x": x}, {}, ids)
    report = whole.report()
    pooled = next(r for r in report.rows if not r["group"])
    assert pooled["status"] == "ok"  # a tenth of the rows moved: diluted in the pooled figures
    assert report.status == "drift" and report.rows[0]["group"] == "s3" and "of series 's3'" in report.line()
    assert [r["status"] for r in report.rows if r["group"] not in ("", "s3")] == ["ok"] * 9
    parts = DriftCounter(prof)  # a Dask job's parts add up to the same counts
    for idx in np.array_split(np.arange(len(x)), 3):
        part = DriftCounter(prof)
        part.update({"x": x[idx]}, {}, ids[idx])
        parts.merge(part)
    assert parts.report().table() == report.table()
    many = {f"s{i}": {"x": rng.normal(0, 1, 100 + i)} for i in range(MAX_GROUPS + 5)}
    kept = profile({"x": rng.normal(0, 1, 100)}, {}, DriftConfig(), groups=many)["groups"]
    assert len(kept) == MAX_GROUPS and "s0" not in kept  # the largest series are kept


def test_a_forecasting_batch_with_one_channel_shifted_drifts_on_that_channel(prefect_harness, tmp_path):
    from rnnpipe.flows.forecast import train_stocks
    from rnnpipe.pipelines.forecast.config import ForecastConfig

    rng = np.random.default_rng(3)
    n = 600
    df = pd.concat(
        [
            pd.DataFrame(
                {
                    "Ticker": t,
                    "Date": pd.bdate_range("2010-01-01", periods=n),
                    "Close": 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n))),
                    "Volume": rng.normal(1000, 100, n),
                }
            )
            for t in ("A", "B")
        ],
        ignore_index=True,
    )
    path = tmp_path / "history.csv"
    df.to_csv(path, index=False)
    cfg = load_config(
        ForecastConfig,
        overrides=[
            f"data.path={path}",
            "data.series=[]",
            "data.features=[Volume]",
            "window.lookback=10",
            "model.hidden_size=8",
            "model.num_layers=1",
            "train.epochs=1",
            "baselines.statistical=[]",
            "register.gate_baselines=[naive]",
            "register.experiment=drift",
            "register.model_name=drift-stocks",
        ],
    )
    from rnnpipe.config import to_dict

    train_stocks(to_dict(cfg))
    client = MlflowClient()
    version = client.get_model_version_by_alias("drift-stocks", "champion")
    prof = json.loads(Path(client.download_artifacts(version.run_id, "model/artifacts/profile.json")).read_text())
    assert set(prof["features"]) == {"Close (log_return)", "Volume", "step seconds"}
    assert prof["meta"]["train_rows"] < len(df)  # the training part only

    same = report_of(batch("drift-stocks@champion", df, tmp_path, "same"))
    assert same["status"] == "ok", same
    # the same rows as 100 short histories of 12 rows (a job forecasting many series from their
    # last days): a series' first row has no change, and is not a missing value
    short = df.assign(Ticker=df.Ticker + "-" + (df.groupby("Ticker").cumcount() // 12).astype(str))
    pieces = report_of(batch("drift-stocks@champion", short, tmp_path, "short"))
    assert pieces["status"] == "ok", [(f["feature"], f["status"], f["missing"]) for f in pieces["features"]]
    moved = report_of(batch("drift-stocks@champion", shifted_channel(df, "Volume"), tmp_path, "moved"))
    assert moved["status"] == "drift"
    assert moved["features"][0]["feature"] == "Volume" and moved["features"][0]["status"] == "drift"
    pooled = {f["feature"]: f for f in moved["features"] if not f["group"]}
    assert pooled["Close (log_return)"]["status"] == "ok"
    assert {f["group"] for f in moved["features"]} == {"", "A", "B"}  # each series on its own too
    # on demand, for scripts: the table (with the series column) and exit 1 at --fail-on
    from click.testing import CliRunner

    from rnnpipe.cli import cli

    cmd = ["drift", "drift-stocks@champion", "-i", str(tmp_path / "moved.parquet"), "--fail-on", "drift"]
    result = CliRunner().invoke(cli, cmd)
    assert result.exit_code == 1, result.output
    header = result.output.splitlines()[0].split()
    assert header[:2] == ["feature", "group"] and "psi_natural" in header
    assert result.output.strip().splitlines()[-1].startswith("drift: drift (")


def test_monitor_and_reviews_batches_drift_on_shifted_readings_and_foreign_texts(models, inputs, tmp_path):
    vitals = pd.read_parquet(inputs / "vitals.parquet")
    assert report_of(batch("ops-monitor@champion", vitals, tmp_path, "vitals"))["status"] == "ok"
    moved = report_of(batch("ops-monitor@champion", shifted_channel(vitals, "glucose"), tmp_path, "vitals-moved"))
    assert moved["status"] == "drift" and moved["features"][0]["feature"] == "glucose"

    reviews = pd.read_parquet(REPO / "data" / "reviews_test.parquet").head(300).rename(columns={"review": "text"})
    same = report_of(batch("ops-reviews@champion", reviews[["text"]], tmp_path, "reviews"))
    assert same["status"] == "ok", same
    # another domain: the paragraphs of this project's documentation
    paragraphs = [p for f in sorted((REPO / "docs").glob("*.md")) for p in f.read_text().split("\n\n") if len(p) > 80]
    foreign = report_of(batch("ops-reviews@champion", pd.DataFrame({"text": paragraphs[:300]}), tmp_path, "docs"))
    assert foreign["status"] == "drift"
    assert foreign["features"][0]["feature"] == "unknown_share"


def test_language_model_prompts_drift_when_they_come_from_another_domain(models, tmp_path):
    """The language model's profile: openings of its validation texts, each prompt's unknown
    share and negative log-likelihood per token. Openings of unseen reviews read like them;
    openings of this project's documentation do not."""
    name, version = models["lm"]  # the tiny model loses to the n-gram: a version, not the champion
    rng = np.random.default_rng(0)

    def openings(texts):
        return pd.DataFrame({"prompt": [" ".join(t.split()[: int(rng.integers(3, 21))]) for t in texts]})

    reviews = pd.read_parquet(REPO / "data" / "reviews_test.parquet").review.head(300)
    same = report_of(batch(f"{name}/{version}", openings(reviews), tmp_path, "lm-reviews"))
    assert same["status"] in ("ok", "warn"), same  # the reference is the tiny model's ~45 validation texts
    assert {f["feature"] for f in same["features"]} == {"unknown_share", "prompt_nll"}
    paragraphs = [p for f in sorted((REPO / "docs").glob("*.md")) for p in f.read_text().split("\n\n") if len(p) > 80]
    foreign = report_of(batch(f"{name}/{version}", openings(paragraphs[:300]), tmp_path, "lm-docs"))
    assert foreign["status"] == "drift"
    assert foreign["features"][0]["feature"] in ("unknown_share", "prompt_nll")


def test_a_failing_drift_computation_never_fails_the_job_and_says_why():
    from rnnpipe.drift import Watch

    class Broken:
        def drift_values(self, inputs, outputs):
            raise ValueError("no such column")

    watch = Watch.of(Broken(), profile({"x": np.arange(200.0)}, {}, DriftConfig()))
    watch(pd.DataFrame({"x": [1.0]}), pd.DataFrame({"y": [1.0]}), None)  # no exception
    assert watch.counter is None and watch.error == "ValueError: no such column"
    watch.reset()
    assert watch.counter is not None and watch.error == ""
    assert Watch.of(Broken(), None) is None  # a model without a profile is not watched


def test_a_forecaster_that_parsed_input_still_pickles_for_another_process(stocks):
    """A backtest's refit-once model and a sweep's trials travel to Dask workers by pickle."""
    import pickle

    from rnnpipe.features.splits import chronological_split
    from rnnpipe.pipelines.forecast.artefact import ForecastPipeline
    from rnnpipe.pipelines.forecast.config import ForecastConfig
    from rnnpipe.pipelines.forecast.prepare import prepare
    from rnnpipe.series import to_series_frame

    history = stocks[stocks.Ticker == "IBM"].tail(200)
    frame = to_series_frame(history, timestamp_col="Date", series_col="Ticker", value_cols=["Close"])
    cfg = load_config(ForecastConfig, overrides=["data.series=[]", "window.lookback=20", "model.hidden_size=8"])
    pipe = ForecastPipeline(cfg, prepare(frame, chronological_split(frame, 0.7, 0.15), cfg).preprocessor)
    out = pipe.predict(history)  # leaves the parsed input for drift_values
    copy = pickle.loads(pickle.dumps(pipe))
    pd.testing.assert_frame_equal(copy.predict(history), out)
