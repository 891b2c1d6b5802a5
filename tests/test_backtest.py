"""Rolling-origin backtests: folds that never train on their origin or after it, fold 1's
model serving every fold with refit once, and the flow's parent and nested MLflow runs."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from rnnpipe.config import ConfigError, load_config, to_dict
from rnnpipe.errors import DataError
from rnnpipe.pipelines.forecast.backtest import combine_folds, fold_splits, run_fold
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.series import to_series_frame

SMALL = [
    "data.series=[]",
    "window.lookback=10",
    "model.hidden_size=8",
    "model.num_layers=1",
    "train.epochs=1",
    "train.batch_size=64",
    "baselines.statistical=[autoets]",
    "register.gate_baselines=[naive]",
    "backtest.folds=3",
    "backtest.step=20",
    "register.experiment=backtests",
]


def prices(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for i, name in enumerate(["A", "B"]):
        m = n - 40 * i  # series of different lengths
        parts.append(
            pd.DataFrame(
                {
                    "Ticker": name,
                    "Date": pd.bdate_range("2001-01-01", periods=m),
                    "Close": 50 * np.exp(np.cumsum(rng.normal(0, 0.01, m))),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def frame_of(df):
    return to_series_frame(df, timestamp_col="Date", series_col="Ticker", value_cols=["Close"])


def test_folds_are_consecutive_blocks_before_the_end_and_train_only_before_their_origin():
    cfg = load_config(ForecastConfig, overrides=SMALL)
    frame = frame_of(prices())
    splits = fold_splits(frame, cfg)
    assert len(splits) == 3
    for i in range(len(frame.series)):
        lo, hi = frame.bounds(i)
        origins = [s.bounds[i, 2] for s in splits]
        assert splits[-1].bounds[i, 3] == hi  # the last fold ends at the series' end
        assert np.diff(origins).tolist() == [20, 20]
        for s in splits:
            start, train_end, origin, end = s.bounds[i]
            assert start == lo and start < train_end < origin and end == origin + 20
    with pytest.raises(DataError, match="too few for backtest.folds=30"):
        fold_splits(frame, load_config(ForecastConfig, overrides=[*SMALL, "backtest.folds=30"]))
    with pytest.raises(ConfigError, match="backtest.refit"):
        load_config(ForecastConfig, overrides=[*SMALL, "backtest.refit=never"])


def test_a_fold_never_reads_its_origin_or_later():
    cfg = load_config(ForecastConfig, overrides=SMALL)
    df = prices()
    frame = frame_of(df)
    split = fold_splits(frame, cfg)[1]  # fold 2
    changed = df.copy()
    for i, name in enumerate(frame.series):  # every row at or after the fold's origin changes
        rows = changed.index[changed.Ticker == name][split.bounds[i, 2] - split.bounds[i, 0] :]
        changed.loc[rows, "Close"] *= 3.0
    a, pa, _ = run_fold(cfg, frame, 2, keep=True).trained
    b, pb, _ = run_fold(cfg, frame_of(changed), 2, keep=True).trained
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)
    assert pa.preprocessor.scaler_.to_dict() == pb.preprocessor.scaler_.to_dict()


def test_refit_once_scores_fold_ones_model_on_every_fold():
    cfg = load_config(ForecastConfig, overrides=[*SMALL, "backtest.refit=once"])
    frame = frame_of(prices())
    first = run_fold(cfg, frame, 1, keep=True)
    folds = [first] + [run_fold(cfg, frame, k, first.trained) for k in (2, 3)]
    assert len({f.train_rows for f in folds}) == 1  # one training part for all
    refit = run_fold(load_config(ForecastConfig, overrides=SMALL), frame, 3)
    assert refit.train_rows > folds[0].train_rows
    # fold 1 refit and fold 1 of refit-once are the same model on the same windows
    assert run_fold(cfg, frame, 1, first.trained).metrics["test_mae"] == pytest.approx(folds[0].metrics["test_mae"])
    overall = combine_folds(folds)
    assert overall["backtest_mae"] == pytest.approx(np.mean([f.metrics["test_mae"] for f in folds]))
    assert overall["backtest_mae_vs_naive"] == pytest.approx(overall["backtest_mae"] / overall["naive_backtest_mae"])
    assert {"backtest_mase", "autoets_backtest_mae", "backtest_pinball", "naive_backtest_coverage_80"} <= set(overall)


def test_the_backtest_flow_logs_a_parent_run_with_a_nested_run_per_fold(prefect_harness, tmp_path):
    from rnnpipe.flows.backtest import backtest
    from rnnpipe.flows.sweep import task_runner

    path = tmp_path / "prices.csv"
    prices().to_csv(path, index=False)
    cfg = load_config(ForecastConfig, overrides=[*SMALL, f"data.path={path}"])
    out = backtest.with_options(task_runner=task_runner("sequential"))(to_dict(cfg), runner="sequential")
    client = MlflowClient()
    parent = client.get_run(out["parent_run_id"])
    assert parent.data.tags["backtest"] == "true" and parent.info.status == "FINISHED"
    assert parent.data.metrics["backtest_mae"] == pytest.approx(out["metrics"]["backtest_mae"])
    assert {"naive_backtest_mae", "autoets_backtest_mae", "backtest_mase", "backtest_coverage_80"} <= set(
        parent.data.metrics
    )
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(int(c.data.tags["backtest_fold"]) for c in children) == [1, 2, 3]
    # named after the Prefect flow run, the folds after it; each names the data it read
    assert parent.info.run_name == parent.data.tags["prefect_flow_run_name"]
    assert sorted(c.info.run_name for c in children) == [f"{parent.info.run_name}-fold-{k}" for k in (1, 2, 3)]
    assert all(len(r.inputs.dataset_inputs) == 1 for r in [parent, *children])
    assert all("test_mae" in c.data.metrics and "naive_test_mae" in c.data.metrics for c in children)
    # a fold runs the forecaster's steps: the record of a `rnnpipe train stocks` run, unregistered
    for c in children:
        assert c.data.tags["pipeline"] == "stocks" and c.data.params["window.lookback"] == "10"
        assert [m.step for m in client.get_metric_history(c.info.run_id, "val_loss")] == [1]
        assert "metrics/all.json" in {a.path for a in client.list_artifacts(c.info.run_id, "metrics")}
        assert not client.list_artifacts(c.info.run_id, "model")
    rows = json.loads(open(client.download_artifacts(parent.info.run_id, "backtest/folds.json")).read())
    assert [r["fold"] for r in rows] == [1, 2, 3] and "autoets_mae" in rows[0]
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "backtest")} >= {"backtest/mae_by_fold.png"}
