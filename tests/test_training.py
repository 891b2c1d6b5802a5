"""The fit loop on a learnable synthetic series: it must beat the naive forecast clearly."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from rnnpipe.config import load_config
from rnnpipe.features.splits import chronological_split
from rnnpipe.pipelines.forecast.artefact import ForecastPipeline
from rnnpipe.pipelines.forecast.config import ForecastConfig
from rnnpipe.pipelines.forecast.metrics import forecast_metrics
from rnnpipe.pipelines.forecast.prepare import prepare
from rnnpipe.series import to_series_frame
from rnnpipe.training import fit, read_checkpoint_meta, select_device


def synthetic(n_series=3, n=500, seed=0) -> pd.DataFrame:
    """Noisy seasonal series (period 12): persistence is poor, a model that learns the cycle
    is far better."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    frames = []
    for s in range(n_series):
        level = 50 + 10 * s + 5 * np.sin(2 * np.pi * t / 12 + s) + rng.normal(0, 0.3, n)
        frames.append(pd.DataFrame({"Ticker": f"S{s}", "Date": pd.date_range("2020-01-01", periods=n), "Close": level}))
    return pd.concat(frames, ignore_index=True)


CFG = [
    "window.lookback=24",
    "window.horizon=2",
    "window.target=diff",
    "model.hidden_size=32",
    "model.num_layers=1",
    "model.dropout=0",
    "train.epochs=25",
    "train.batch_size=64",
    "train.lr=3e-3",
    "train.weight_decay=0",
    "train.patience=6",
    "data.series=[]",
]


def _prepared(overrides=()):
    cfg = load_config(ForecastConfig, overrides=CFG + list(overrides))
    frame = to_series_frame(synthetic(), timestamp_col="Date", series_col="Ticker", value_cols=["Close"])
    return cfg, prepare(frame, chronological_split(frame), cfg)


def test_learns_a_seasonal_series_and_beats_naive_clearly():
    cfg, p = _prepared()
    pipe = ForecastPipeline(cfg, p.preprocessor)
    result = fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, progress=False)
    ends = p.ends["test"]
    pred = pipe.forecast_windows(p.frame, ends, p.inputs)
    actual = p.frame.target[ends[:, None] + np.arange(1, 3)]
    m = forecast_metrics(pred, actual, p.frame.target[ends], np.zeros(len(ends), dtype=int).astype(str))
    assert m["test_mae_vs_naive"] < 0.4, m
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert {"train_loss", "val_loss", "lr", "samples_per_s"} <= set(result.history[0])


def test_training_is_reproducible_and_ends_on_best_weights():
    cfg, p = _prepared(["train.epochs=4"])
    runs = []
    for _ in range(2):
        pipe = ForecastPipeline(cfg, p.preprocessor)
        runs.append((pipe, fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, progress=False)))
    (a, ra), (b, rb) = runs
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    # the starting model (here: the linear part fitted alone) is a candidate too, as epoch 0
    assert ra.best_val_loss == min([ra.initial_val_loss] + [h["val_loss"] for h in ra.history])
    assert ra.best_epoch == (
        0 if ra.best_val_loss == ra.initial_val_loss else min(ra.history, key=lambda h: h["val_loss"])["epoch"]
    )


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    cfg, p = _prepared(["train.epochs=4", "train.lr_schedule=none"])
    straight = ForecastPipeline(cfg, p.preprocessor)
    fit(straight.model, p.windows("train"), p.windows("val"), cfg.train, progress=False)

    ckpt = tmp_path / "c.pt"
    first = ForecastPipeline(cfg, p.preprocessor)
    short = dataclasses.replace(cfg.train, epochs=2)  # "interrupted" after 2 epochs
    fit(
        first.model,
        p.windows("train"),
        p.windows("val"),
        short,
        progress=False,
        checkpoint_path=ckpt,
        checkpoint_meta={"key": "k", "mlflow_run_id": "r1"},
    )
    assert read_checkpoint_meta(ckpt) == {"key": "k", "mlflow_run_id": "r1"}
    resumed = ForecastPipeline(cfg, p.preprocessor)
    result = fit(
        resumed.model,
        p.windows("train"),
        p.windows("val"),
        cfg.train,
        progress=False,
        checkpoint_path=ckpt,
        checkpoint_meta={"key": "k"},
        resume=True,
    )
    assert result.resumed_from_epoch == 2 and [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    for x, y in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(x, y)


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path):
    from rnnpipe.errors import ModelError

    cfg, p = _prepared(["train.epochs=1"])
    pipe = ForecastPipeline(cfg, p.preprocessor)
    fit(
        pipe.model,
        p.windows("train"),
        p.windows("val"),
        cfg.train,
        progress=False,
        checkpoint_path=tmp_path / "c.pt",
        checkpoint_meta={"key": "a"},
    )
    with pytest.raises(ModelError, match="another config"):
        fit(
            pipe.model,
            p.windows("train"),
            p.windows("val"),
            cfg.train,
            progress=False,
            checkpoint_path=tmp_path / "c.pt",
            checkpoint_meta={"key": "b"},
            resume=True,
        )


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        from rnnpipe.errors import ConfigError

        with pytest.raises(ConfigError, match="CUDA is not available"):
            select_device("cuda")


def test_a_labelled_training_says_whose_lines_they_are(caplog):
    """Folds of a backtest train side by side: each log line of a training starts with its label."""
    import logging

    cfg, p = _prepared(["train.epochs=2"])
    pipe = ForecastPipeline(cfg, p.preprocessor)
    with caplog.at_level(logging.INFO, logger="rnnpipe.training"):
        fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, progress=False, label="fold 2")
    lines = [r.getMessage() for r in caplog.records if r.name == "rnnpipe.training"]
    assert any(m.startswith("fold 2: epoch 1/2 ") for m in lines) and all(m.startswith("fold 2: ") for m in lines)
