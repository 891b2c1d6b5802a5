"""Inputs known in advance (calendar, known features), the residual recipe and the gradient
boosting baseline of the forecasters."""

import json

import numpy as np
import pandas as pd
import pytest

from rnnpipe.config import load_config
from rnnpipe.errors import ConfigError, DataError
from rnnpipe.features import calendar
from rnnpipe.features.splits import chronological_split
from rnnpipe.pipelines.forecast.artefact import ForecastPipeline, history_example
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.pipelines.forecast.evaluation import evaluate_forecasts
from rnnpipe.pipelines.forecast.prepare import prepare
from rnnpipe.series import to_series_frame
from rnnpipe.training import fit


def test_calendar_features_are_cyclical_encodings_of_the_timestamp():
    t = pd.to_datetime(["2024-01-01 00:00", "2024-01-01 06:00", "2024-01-01 12:00", "2024-01-07 00:00"])
    x = calendar.calendar_features(t, ["time_of_day", "day_of_week"])
    assert x.shape == (4, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], [0, 1, 0, 0], atol=1e-6)  # sin of the time of day
    np.testing.assert_allclose(x[:, 1], [1, 0, -1, 1], atol=1e-6)  # cos
    np.testing.assert_allclose(x[3, 2:], [np.sin(2 * np.pi * 6 / 7), np.cos(2 * np.pi * 6 / 7)], atol=1e-6)  # Sunday
    assert calendar.column_names(["day_of_year"]) == ["day_of_year_sin", "day_of_year_cos"]


def test_auto_calendar_follows_the_step_and_the_span():
    day = pd.Timedelta(days=1)
    assert calendar.choose("auto", "h", 365 * day) == ["time_of_day", "day_of_week"]
    assert calendar.choose("auto", "30min", 10 * day) == ["time_of_day"]  # under two weeks
    assert calendar.choose("auto", "D", 1000 * day) == ["day_of_week", "day_of_year"]
    assert calendar.choose("auto", "B", 5000 * day) == []  # trading days: none
    assert calendar.choose(["auto"], "2777778ns", pd.Timedelta(seconds=20)) == []  # 20 s of ECG
    assert calendar.choose(["none"], "h") == [] and calendar.choose([], "h") == []
    assert calendar.choose(["day_of_week"], "B") == ["day_of_week"]  # asked for: given
    with pytest.raises(ConfigError, match="unknown feature 'hour'"):
        load_config(ForecastConfig, overrides=["data.calendar=hour"])
    with pytest.raises(ConfigError, match="known_features: 'Close' is also the target"):
        load_config(ForecastConfig, overrides=["data.known_features=Close"])


def hourly(n: int = 1500, seed: int = 0, known_target: bool = True) -> pd.DataFrame:
    """One hourly series; `plan` is i.i.d. noise known in advance, and the target is the plan
    of the same hour (plus a little noise) when `known_target`, else a daily cycle."""
    rng = np.random.default_rng(seed)
    time = pd.date_range("2024-01-01", periods=n, freq="h")
    plan = rng.normal(0, 1, n)
    daily = np.sin(2 * np.pi * time.hour / 24)
    y = 50 + (5 * plan if known_target else 3 * daily) + rng.normal(0, 0.05, n)
    return pd.DataFrame({"id": "s", "time": time, "y": y, "plan": plan})


def config_for(path, *extra) -> ForecastConfig:
    return load_config(
        ForecastConfig,
        overrides=[
            f"data.path={path}",
            "data.series_col=id",
            "data.series=[]",
            "data.timestamp_col=time",
            "data.target_col=y",
            "window.target=level",
            "window.lookback=12",
            "window.horizon=3",
            "model.hidden_size=8",
            "model.num_layers=1",
            "train.epochs=2",
            "baselines.statistical=[]",
            "register.gate_baselines=[naive]",
            *extra,
        ],
    )


def trained(cfg):
    from rnnpipe.pipelines.forecast.data import load_forecast_data

    frame = load_forecast_data(cfg)
    p = prepare(frame, chronological_split(frame, 0.7, 0.15), cfg)
    pipe = ForecastPipeline(cfg, p.preprocessor)
    result = fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, progress=False)
    return frame, p, pipe, result


def test_calendar_inputs_come_from_timestamps_only(tmp_path):
    a = hourly(known_target=False)
    b = a.assign(y=a.y[::-1].to_numpy())  # the same hours, other targets
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    a.to_parquet(paths[0])
    b.to_parquet(paths[1])
    preps = []
    for path in paths:
        cfg = config_for(path, "data.calendar=[time_of_day,day_of_week]")
        frame = to_series_frame(pd.read_parquet(path), timestamp_col="time", series_col="id", value_cols=["y"])
        preps.append(prepare(frame, chronological_split(frame, 0.7, 0.15), cfg))
    pa, pb = preps
    assert pa.preprocessor.calendar_ == ["time_of_day", "day_of_week"]
    np.testing.assert_array_equal(pa.inputs[:, 1:], pb.inputs[:, 1:])  # every calendar column
    np.testing.assert_array_equal(pa.future, pb.future)
    assert not np.array_equal(pa.inputs[:, 0], pb.inputs[:, 0])
    expected = calendar.calendar_features(pd.read_parquet(paths[0]).time, ["time_of_day", "day_of_week"])
    np.testing.assert_array_equal(pa.future, expected)


def test_a_known_columns_future_values_reach_the_model_at_the_right_steps(tmp_path):
    path = tmp_path / "plan.parquet"
    df = hourly(known_target=True)
    df.to_parquet(path)
    known = config_for(path, "data.known_features=[plan]", "data.calendar=none")
    past = config_for(path, "data.features=[plan]", "data.calendar=none")
    maes = {}
    for name, cfg in (("known", known), ("past", past)):
        _, p, pipe, _ = trained(cfg)
        maes[name] = evaluate_forecasts(pipe, p, ("test",), statistical=())["test"].metrics["test_mae"]
    assert maes["known"] < 0.1, maes  # the plan of each step is its target: forecast almost exactly
    assert maes["past"] > 2.0, maes  # known only up to the window's end, the plan is noise
    # predicting: the history, then one row per forecast step with the plan, the target empty
    frame, p, pipe, _ = trained(known)
    example = history_example(frame, known, n_series=1)
    assert example.y.tail(3).isna().all() and example.plan.notna().all()
    out = pipe.predict(example)
    expected = 50 + 5 * df.plan.tail(3).to_numpy()
    np.testing.assert_allclose(out.forecast, expected, atol=0.3)
    assert list(pd.DatetimeIndex(out.time)) == list(df.time.tail(3))
    # the same rows as a CSV that `rnnpipe predict` reads: the model's columns come as text,
    # the empty targets as "" (taken for history before: the known values were then missing)
    from rnnpipe.batch_input import open_input

    example.to_csv(tmp_path / "example.csv", index=False)
    dataset, columns, _ = open_input(tmp_path / "example.csv", "auto", pipe.batch_spec)
    as_read = dataset.to_table(columns=columns).to_pandas()
    assert as_read.y.tail(3).eq("").all(), as_read.tail(3)
    pd.testing.assert_frame_equal(pipe.predict(as_read), out, check_dtype=False)


def test_missing_future_rows_name_the_series_the_column_and_the_steps(tmp_path):
    path = tmp_path / "plan.parquet"
    hourly().to_parquet(path)
    cfg = config_for(path, "data.known_features=[plan]", "data.calendar=none", "train.epochs=1")
    frame, _, pipe, _ = trained(cfg)
    example = history_example(frame, cfg, n_series=1)
    steps = [str(t) for t in example.time.tail(3)]
    with pytest.raises(
        DataError,
        match=rf"series 's': no future value of 'plan' \(data.known_features\) at 3 of "
        rf"the 3 forecast steps \({steps[0]}, .*send a row for each",
    ):
        pipe.predict(example.iloc[:-3])  # the history alone
    with pytest.raises(DataError, match=rf"at 1 of the 3 forecast steps \({steps[1]}\)"):
        pipe.predict(example.drop(example.index[-2]))
    bad = example.copy()
    bad.loc[bad.index[-1], "plan"] = np.nan  # a future row without its plan: the row is named
    with pytest.raises(DataError, match=r"column 'plan' is empty"):
        pipe.predict(bad)
    # the check `rnnpipe predict` runs before its flow starts finds the missing step too, from
    # the saved model's files alone (its time step is in the saved preprocessor)
    from rnnpipe.pipelines.forecast.data import check_history

    model = tmp_path / "model"
    pipe.save(model / "pipeline")
    saved_config = json.loads((model / "pipeline" / "config.json").read_text())
    example.drop(example.index[-2]).to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(DataError, match=rf"series 's': no future value of 'plan' .* at 1 of the 3 .*\({steps[1]}\)"):
        check_history(saved_config, tmp_path / "gap.csv", saved=lambda name: model / name)
    example.to_csv(tmp_path / "whole.csv", index=False)
    check_history(saved_config, tmp_path / "whole.csv", saved=lambda name: model / name)
    # a file of one series (no series column): the line names the file, and no series
    one = {**saved_config, "data": {**saved_config["data"], "series_col": "", "series_name": "one"}}
    example.drop(example.index[-2]).drop(columns="id").to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(DataError, match=r"one\.csv: no future value of 'plan' \(data\.known_features\) at 1 of"):
        check_history(one, tmp_path / "one.csv", saved=lambda name: model / name)


def test_residual_recipe_starts_at_the_linear_fit_and_keeps_it(tmp_path):
    path = tmp_path / "cycle.parquet"
    hourly(known_target=False).to_parquet(path)
    cfg = config_for(path, "model.recipe=residual")
    _, p, pipe, result = trained(cfg)
    part = pipe.model.linear_part
    assert not any(q.requires_grad for q in part.parameters())  # fixed at its closed-form fit
    assert result.warm_start["residual_scale_mean"] > 0
    assert result.initial_val_loss == pytest.approx(result.warm_start["warm_start_val_loss"], rel=1e-4)
    assert result.best_val_loss <= result.initial_val_loss
    joint = config_for(path, "model.recipe=joint")
    _, _, jp, _ = trained(joint)
    assert jp.model.residual_scale is None and all(q.requires_grad for q in jp.model.linear_part.parameters())


def test_gbm_is_fitted_on_training_windows_and_reads_nothing_after_the_window(tmp_path):
    from rnnpipe.pipelines.forecast.baselines import GradientBoostingForecast

    path = tmp_path / "plan.parquet"
    hourly(known_target=False).to_parquet(path)
    cfg = config_for(path, "data.known_features=[plan]", "train.epochs=1")
    _, p, _, _ = trained(cfg)
    gbm = GradientBoostingForecast(12, 3, True, season=24, seed=0).fit(p)
    # the test part's targets changed: the same model (nothing of them was read in fitting)
    test_rows = np.arange(p.split.bounds[0, 2] + 1, len(p.targets))
    changed = type(p)(p.frame, p.split, p.preprocessor, p.ends, p.inputs.copy(), p.targets.copy(), p.future.copy())
    changed.targets[test_rows] += 100.0
    changed.inputs[test_rows, 0] += 100.0
    again = GradientBoostingForecast(12, 3, True, season=24, seed=0).fit(changed)
    val = p.ends["val"]
    np.testing.assert_array_equal(gbm.predict(p.inputs, p.future, val), again.predict(p.inputs, p.future, val))
    # a window's features: its own rows and the known inputs of its steps, nothing after
    ends = p.ends["train"][:50]
    later = p.inputs.copy()
    later[ends.max() + 1 :, 0] += 7.0  # targets after the last window
    np.testing.assert_array_equal(gbm._design(p.inputs, p.future, ends), gbm._design(later, p.future, ends))


def test_every_forecasting_run_scores_gradient_boosting(tmp_path):
    path = tmp_path / "cycle.parquet"
    hourly(known_target=False).to_parquet(path)
    cfg = config_for(path, "window.season=24", "register.gate_baselines=[naive,gbm]")
    _, p, pipe, _ = trained(cfg)
    from rnnpipe.pipelines.forecast.artefact import baseline_settings

    m = evaluate_forecasts(pipe, p, **baseline_settings(cfg))["test"].metrics
    assert {"gbm_test_mae", "gbm_test_mase", "test_mae_vs_gbm", "gbm_fit_s"} <= set(m)
    assert m["gbm_test_mae"] < m["naive_test_mae"]  # a daily cycle: boosting on the calendar learns it
