"""The linear part of the heads (`model.highway=linear`): what it is, and what it buys."""

import numpy as np
import pandas as pd
import torch

from rnnpipe.config import load_config
from rnnpipe.features.splits import chronological_split
from rnnpipe.models import window_summary
from rnnpipe.pipelines.forecast.artefact import ForecastPipeline
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.pipelines.forecast.evaluation import evaluate_forecasts
from rnnpipe.pipelines.forecast.model import Forecaster
from rnnpipe.pipelines.forecast.prepare import prepare
from rnnpipe.pipelines.monitor.model import SequenceClassifier
from rnnpipe.series import to_series_frame
from rnnpipe.training import fit


def test_with_the_recurrent_part_at_zero_the_model_is_its_linear_part():
    torch.manual_seed(0)
    model = Forecaster(3, horizon=2, lookback=5, highway="linear", hidden_size=8)
    with torch.no_grad():
        model.linear_part.linear.weight.normal_()
        model.linear_part.linear.bias.normal_()
    x = torch.randn(4, 5, 3)
    w, b = model.linear_part.linear.weight, model.linear_part.linear.bias
    torch.testing.assert_close(model(x), x.flatten(1) @ w.T + b)
    assert (model.head.weight == 0).all()  # the recurrent head is still at zero

    clf = SequenceClassifier(2, lookback=6, highway="linear", hidden_size=4)
    lin = clf.linear_part
    with torch.no_grad():
        lin.center.normal_()
        lin.scale.uniform_(0.5, 2)
        lin.linear.weight.normal_()
    x = torch.randn(3, 6, 2)
    z = (window_summary(x) - lin.center) / lin.scale
    torch.testing.assert_close(clf(x), (z @ lin.linear.weight.T + lin.linear.bias).squeeze(-1))


def test_a_stacked_decoder_reads_the_linear_forecast_of_each_step_and_the_step():
    torch.manual_seed(0)
    plain = Forecaster(3, horizon=4, lookback=6, highway="linear", hidden_size=8)
    assert plain.decoder is None  # no known inputs, no season: nothing for a decoder to read
    model = Forecaster(3, horizon=4, lookback=6, highway="linear", hidden_size=8, stacked=True)
    assert model.decoder[0].in_features == 8 + 2  # the encoder's state, h / H, the linear forecast
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.normal_()
    x = torch.randn(5, 6, 3)
    z = model.encoder(x)
    lin = model.linear_part(x)
    out = model.recurrent_part(z, x=x, linear=lin)
    # the steps differ through h / H alone when the linear forecast is the same for each
    same = lin[:, :1].expand(-1, 4)
    steps = model.recurrent_part(z, x=x, linear=same) - model.head(z)
    assert not torch.allclose(steps[:, 0], steps[:, 1])
    # and another linear forecast changes the correction (a stacked model, not a blind sum)
    assert not torch.allclose(out, model.recurrent_part(z, x=x, linear=lin + 1.0))
    torch.testing.assert_close(model(x), out + lin)


def series(kind: str, n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """An AR(2) process, or a threshold AR whose two regimes no linear model can follow; both
    with N(0, 0.3) noise."""
    rng = np.random.default_rng(seed)
    x, e = np.zeros(n), rng.normal(0, 0.3, n)
    for t in range(2, n):
        if kind == "ar2":
            x[t] = 0.6 * x[t - 1] - 0.3 * x[t - 2] + e[t]
        else:
            x[t] = (-0.9 * x[t - 1] if x[t - 1] > 0 else 0.9 * x[t - 1] + 1.0) + e[t]
    return pd.DataFrame({"Ticker": "S", "Date": pd.date_range("2000-01-01", periods=n, freq="h"), "Close": x})


def hybrid_vs_ridge(kind: str) -> tuple[float, float]:
    cfg = load_config(
        ForecastConfig,
        overrides=[
            "data.series=[]",
            "window.lookback=8",
            "window.horizon=1",
            "window.target=level",
            "model.hidden_size=16",
            "model.num_layers=1",
            "model.dropout=0",
            "model.highway=linear",
            "train.epochs=20",
            "train.batch_size=64",
            "train.lr=3e-3",
            "train.weight_decay=0",
            "train.patience=5",
        ],
    )
    frame = to_series_frame(series(kind), timestamp_col="Date", series_col="Ticker", value_cols=["Close"])
    p = prepare(frame, chronological_split(frame), cfg)
    pipe = ForecastPipeline(cfg, p.preprocessor)
    fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, progress=False)
    m = evaluate_forecasts(pipe, p, ("test",))["test"].metrics
    return m["test_mae"], m["ridge_test_mae"]


def test_on_an_ar2_process_the_hybrid_matches_ridge():
    model, ridge = hybrid_vs_ridge("ar2")
    assert model <= 1.02 * ridge, (model, ridge)


def test_on_a_threshold_ar_the_hybrid_beats_ridge_clearly():
    model, ridge = hybrid_vs_ridge("tar")
    assert model <= 0.85 * ridge, (model, ridge)
