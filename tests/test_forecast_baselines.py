"""Forecast scores and the statistical baselines: MASE and sMAPE on hand-computed cases, and
StatsForecast models that see only the training part and, from an origin, only the past."""

from types import SimpleNamespace

import numpy as np
import pytest

from rnnpipe.config import ConfigError, load_config
from rnnpipe.features.splits import Split
from rnnpipe.pipelines.forecast.baselines import StatisticalForecast
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.pipelines.forecast.metrics import forecast_metrics, mase_scales
from rnnpipe.series import SeriesFrame


def frame_of(*series_values):
    values = np.concatenate([np.asarray(v, dtype=np.float64) for v in series_values])[:, None]
    offsets = np.cumsum([0] + [len(v) for v in series_values])
    ts = np.arange(len(values)).astype("datetime64[D]").astype("datetime64[ns]")
    names = [f"S{i}" for i in range(len(series_values))]
    return SeriesFrame(names, offsets, ts, values, ["y"], "mem", "fp")


def test_mase_scale_is_the_training_parts_naive_mae():
    f = frame_of([1, 2, 4, 7, 11, 100, 200], [5, 5, 6, 6, 8, 8])
    split = Split(np.array([[0, 5, 6, 7], [7, 11, 12, 13]]))
    assert mase_scales(f, split) == {"S0": pytest.approx((1 + 2 + 3 + 4) / 4), "S1": pytest.approx(1 / 3)}
    assert mase_scales(f, split, season=2) == {
        "S0": pytest.approx((3 + 5 + 7) / 3),
        "S1": pytest.approx(1.0),
    }  # 6-5, 6-5


def test_mase_and_smape_on_a_hand_computed_case():
    actual = np.array([[10.0], [12.0], [1.0], [3.0]])
    pred = np.array([[11.0], [12.0], [2.0], [1.0]])
    last = np.array([9.0, 10.0, 1.0, 1.0])
    series = ["A", "A", "B", "B"]
    m = forecast_metrics(pred, actual, last, series, "test", scales={"A": 2.0, "B": 0.5})
    assert m["test_mae.A"] == pytest.approx(0.5) and m["test_mae.B"] == pytest.approx(1.5)
    assert m["test_mase.A"] == pytest.approx(0.25) and m["test_mase.B"] == pytest.approx(3.0)
    assert m["test_mase"] == pytest.approx((0.25 + 3.0) / 2)  # the mean of the series' MASE (M4)
    assert m["naive_test_mase.A"] == pytest.approx(1.5 / 2.0)  # |10-9|, |12-10| -> 1.5
    smape = 100 * np.mean([2 * 1 / 21, 0.0, 2 * 1 / 3, 2 * 2 / 4])
    assert m["test_smape"] == pytest.approx(smape)
    no_scales = forecast_metrics(pred, actual, last, series, "test")
    assert "test_mase" not in no_scales and "test_smape" in no_scales


def _prepared(frame, horizon):
    return SimpleNamespace(frame=frame, preprocessor=SimpleNamespace(horizon=horizon))


@pytest.mark.parametrize("name", ["autoets", "autotheta"])
def test_statistical_baselines_see_the_training_part_only_and_never_the_future(name):
    rng = np.random.default_rng(0)
    y = 100 + np.cumsum(rng.normal(0, 1, 160))
    split = Split(np.array([[0, 100, 130, 160]]))
    base = StatisticalForecast(name, history=0).fit(frame_of(y), split)
    changed = y.copy()
    changed[100:] += rng.normal(0, 20, 60)  # val and test differ wildly
    other = StatisticalForecast(name, history=0).fit(frame_of(changed), split)
    ends = np.array([95, 99])  # origins inside the training part: the same history
    np.testing.assert_allclose(
        base.forecast(_prepared(frame_of(y), 3), ends), other.forecast(_prepared(frame_of(changed), 3), ends)
    )
    # from a test origin, the forecast reads the history up to it and nothing after
    later = y.copy()
    later[141:] = 0.0
    fa = base.forecast(_prepared(frame_of(y), 3), np.array([140]))
    fb = (
        StatisticalForecast(name, history=0)
        .fit(frame_of(later), split)
        .forecast(_prepared(frame_of(later), 3), np.array([140]))
    )
    np.testing.assert_allclose(fa, fb)
    assert fa.shape == (1, 3) and np.isfinite(fa).all() and abs(fa[0, 0] - y[140]) < 10


def test_seasonal_naive_repeats_the_last_season_and_short_series_fall_back_to_naive():
    y = np.tile([1.0, 5.0, 9.0], 12)
    split = Split(np.array([[0, 24, 30, 36], [36, 38, 39, 40]]))
    f = frame_of(y, [3.0, 4.0, 5.0, 6.0])
    sn = StatisticalForecast("seasonalnaive", season=3).fit(f, split)
    out = sn.forecast(_prepared(f, 4), np.array([29, 38]))
    np.testing.assert_allclose(out[0], [1.0, 5.0, 9.0, 1.0])  # y[29] = 9: then 1, 5, 9, 1
    assert sn.fallback_series == ["S1"]  # 2 training points: the naive forecast
    np.testing.assert_allclose(out[1], [5.0] * 4)


def test_gate_baselines_must_be_scored_in_the_run():
    cfg = load_config(ForecastConfig)
    assert cfg.register.gate_baselines == ["naive", "autoets", "autotheta", "gbm"]
    assert cfg.register.naive_margin == 0.0  # champion means best of what was scored
    with pytest.raises(ConfigError, match="'gbm' is not scored"):
        load_config(ForecastConfig, overrides=["baselines.gbm=false"])
    with pytest.raises(ConfigError, match="autoarima"):
        load_config(ForecastConfig, overrides=['register.gate_baselines=["naive", "autoarima"]'])
    with pytest.raises(ConfigError, match="unknown model 'prophet'"):
        load_config(ForecastConfig, overrides=['baselines.statistical=["prophet"]'])
    with pytest.raises(ConfigError, match="season"):
        load_config(ForecastConfig, overrides=["window.season=1"])


def test_history_cap_reads_only_the_last_points_before_the_origin():
    rng = np.random.default_rng(1)
    y = 50 + np.cumsum(rng.normal(0, 1, 200))
    split = Split(np.array([[0, 120, 160, 200]]))
    model = StatisticalForecast("autotheta", history=40).fit(frame_of(y), split)
    early = y.copy()
    early[:150] += 7.0  # long before the origin, outside the last 40 points
    a = model.forecast(_prepared(frame_of(y), 2), np.array([189]))
    b = model.forecast(_prepared(frame_of(early), 2), np.array([189]))
    np.testing.assert_allclose(a, b)


@pytest.mark.parametrize("name", ["autoets", "autotheta"])
def test_from_each_origin_a_model_reads_at_most_forward_history_points(name):
    """baselines.forward_history: the points before the window a fitted model reads from an
    origin change nothing; with the whole history (0), AutoTheta's trend line, re-estimated
    on its input, moves with them (AutoETS's state forgets them within the window anyway)."""
    rng = np.random.default_rng(1)
    y = 100 + np.cumsum(rng.normal(0, 1, 300))
    split = Split(np.array([[0, 200, 250, 300]]))
    older = y.copy()
    older[:190] += np.linspace(0, 40, 190)  # only points more than 60 before origin 260 differ
    for forward, same in ((60, True), *([(0, False)] if name == "autotheta" else [])):
        model = StatisticalForecast(name, history=0, forward_history=forward).fit(frame_of(y), split)
        a = model.forecast(_prepared(frame_of(y), 3), np.array([260]))
        b = model.forecast(_prepared(frame_of(older), 3), np.array([260]))
        assert np.allclose(a, b) == same, (forward, a, b)
