"""Prediction intervals: the pinball loss and coverage on hand-computed cases, quantiles that
never cross, a band fitted on training windows and calibrated on validation only, and the
naive-with-empirical-quantiles baseline that reads train and val only."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from rnnpipe.config import ConfigError, load_config
from rnnpipe.features.splits import chronological_split
from rnnpipe.pipelines.forecast.artefact import ForecastPipeline
from rnnpipe.pipelines.forecast.baselines import NaiveQuantiles
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.pipelines.forecast.evaluation import evaluate_forecasts
from rnnpipe.pipelines.forecast.metrics import quantile_metrics
from rnnpipe.pipelines.forecast.prepare import prepare
from rnnpipe.series import to_series_frame
from rnnpipe.training import fit

SMALL = [
    "data.series=[]",
    "window.lookback=20",
    "model.hidden_size=8",
    "model.num_layers=1",
    "train.epochs=2",
    "train.batch_size=128",
    "baselines.statistical=[]",
    "register.gate_baselines=[naive]",
]


def test_pinball_coverage_and_width_on_a_hand_computed_case():
    actual = np.array([[10.0], [20.0]])
    bands = np.array([[[8.0, 10.0, 12.0]], [[21.0, 22.0, 23.0]]])
    m = quantile_metrics(bands, actual, (0.1, 0.5, 0.9), ["A", "B"], "test")
    # row 1: 0.1*2, 0, 0.1*2; row 2 (below every quantile): 0.9*1, 0.5*2, 0.1*3
    assert m["test_pinball"] == pytest.approx((0.2 + 0 + 0.2 + 0.9 + 1.0 + 0.3) / 6)
    assert m["test_pinball.B"] == pytest.approx((0.9 + 1.0 + 0.3) / 3)
    assert m["test_coverage_80"] == 0.5 and m["test_coverage_80.A"] == 1.0
    assert m["test_interval_width"] == pytest.approx(3.0)
    assert m["test_share_below_q0.1"] == 0.5 and m["test_share_below_q0.5"] == 1.0
    # at the median alone, the pinball loss is half the absolute error
    median = quantile_metrics(bands[:, :, 1:2], actual, (0.5,), ["A", "B"], "test", name="naive")
    assert median["naive_test_pinball"] == pytest.approx(np.mean(np.abs(actual - bands[:, :, 1])) / 2)


def regimes(n: int = 2400, seed: int = 0, calm: float = 0.004, wild: float = 0.03) -> pd.DataFrame:
    """Prices whose daily log returns switch between a calm and a wild regime every 150 days."""
    rng = np.random.default_rng(seed)
    sigma = np.where((np.arange(n) // 150) % 2 == 0, calm, wild)
    close = 100 * np.exp(np.cumsum(rng.normal(0, sigma)))
    return pd.DataFrame({"Ticker": "S", "Date": pd.bdate_range("2000-01-03", periods=n), "Close": close})


def trained(df: pd.DataFrame, *overrides: str):
    cfg = load_config(ForecastConfig, overrides=[*SMALL, *overrides])
    frame = to_series_frame(df, timestamp_col="Date", series_col="Ticker", value_cols=["Close"])
    p = prepare(frame, chronological_split(frame), cfg)
    pipe = ForecastPipeline(cfg, p.preprocessor)
    result = fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, progress=False)
    return pipe, p, result


@pytest.fixture(scope="module")
def regime_model():
    return trained(regimes())


def test_the_band_is_calibrated_on_validation_and_widens_with_volatility(regime_model):
    pipe, p, result = regime_model
    assert result.band["band_val_pinball_calibrated"] <= result.band["band_val_pinball_static"] * 1.001
    evs = evaluate_forecasts(pipe, p, ("val", "test"), statistical=())
    val = evs["val"].metrics
    for q in (0.1, 0.5, 0.9):  # recalibrated on val: each level's share holds there
        assert val[f"val_share_below_q{q:g}"] == pytest.approx(q, abs=0.02)
    test = evs["test"]
    assert abs(test.metrics["test_coverage_80"] - 0.8) < 0.06, test.metrics["test_coverage_80"]
    # a band that reads the window's volatility: wider in the wild regime, and better than
    # persistence with one band for all days
    band = test.bands[""][:, 0]
    width = band[:, -1] - band[:, 0]
    days = np.searchsorted(p.frame.timestamps, test.timestamps)
    wild = (days // 150) % 2 == 1
    assert width[wild].mean() > 2 * width[~wild].mean()
    assert test.metrics["test_pinball"] < test.metrics["naive_test_pinball"]


def test_quantiles_never_cross_after_decoding(regime_model):
    pipe, p, _ = regime_model
    with torch.no_grad():  # an adversarial band: q0.1 above q0.9 before sorting
        pipe.model.band_head.bias.copy_(torch.tensor([1.0, 0.0, -1.0]))
    try:
        point, bands = pipe.predict_windows(p.frame, p.ends["test"], p.inputs)
        assert bands.shape == (len(point), 1, 3)
        assert (np.diff(bands, axis=-1) >= 0).all()
        history = regimes().tail(30)
        out = pipe.predict(history)
        assert list(out.columns[-3:]) == ["q0.1", "q0.5", "q0.9"]
        assert (out["q0.1"] <= out["q0.5"]).all() and (out["q0.5"] <= out["q0.9"]).all()
    finally:
        pipe.model.band_head.bias.zero_()


def test_the_band_never_reads_the_test_part():
    df = regimes(n=900, seed=3)
    changed = df.copy()
    cut = int(len(df) * 0.85)  # the default split: test is the last 15%
    changed.loc[cut + 5 :, "Close"] *= np.exp(np.random.default_rng(1).normal(0, 0.2, len(df) - cut - 5))
    a, pa, _ = trained(df)
    b, pb, _ = trained(changed)
    assert np.array_equal(pa.ends["val"], pb.ends["val"])
    _, band_a = a.predict_windows(pa.frame, pa.ends["val"], pa.inputs)
    _, band_b = b.predict_windows(pb.frame, pb.ends["val"], pb.inputs)
    np.testing.assert_allclose(band_a, band_b, rtol=1e-6)


def test_naive_quantiles_are_the_train_and_val_errors_of_persistence():
    df = regimes(n=900, seed=5)
    cfg = load_config(ForecastConfig, overrides=SMALL)
    frame = to_series_frame(df, timestamp_col="Date", series_col="Ticker", value_cols=["Close"])
    p = prepare(frame, chronological_split(frame), cfg)
    base = NaiveQuantiles((0.1, 0.9)).fit(p)
    log_changes = np.diff(np.log(frame.target))  # row t -> t+1
    seen = np.concatenate([p.ends["train"], p.ends["val"]])
    np.testing.assert_allclose(base.levels_[0, 0], np.quantile(log_changes[seen], [0.1, 0.9]))
    point, band = base.forecast_with_quantiles(p, p.ends["test"])
    last = frame.target[p.ends["test"]]
    np.testing.assert_allclose(point[:, 0], last)
    np.testing.assert_allclose(band[:, 0, 1], last * np.exp(base.levels_[0, 0, 1]))


def test_quantile_settings_are_checked_and_can_be_turned_off(tmp_path):
    for bad in ("[0.5]", "[0.9,0.1]", "[0.1,1.0]"):
        with pytest.raises(ConfigError, match="quantiles"):
            load_config(ForecastConfig, overrides=[f"model.quantiles={bad}"]).validate()
    pipe, p, result = trained(regimes(n=600), "model.quantiles=[]", "train.epochs=1")
    assert result.band == {} and pipe.quantiles == ()
    test = evaluate_forecasts(pipe, p, ("test",), statistical=())["test"]
    assert "test_pinball" not in test.metrics and "naive_test_pinball" not in test.metrics
    assert "q0.1" not in pipe.predict(regimes(n=600).tail(25)).columns
    # an artefact saved before quantile heads existed (no model.quantiles) still loads
    path = pipe.save(tmp_path / "old")
    cfg = json.loads((path / "config.json").read_text())
    del cfg["model"]["quantiles"]
    (path / "config.json").write_text(json.dumps(cfg))
    assert ForecastPipeline.load(path).quantiles == ()
