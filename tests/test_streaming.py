"""Synthetic vitals and training streamed shard by shard."""

import numpy as np
import pandas as pd
import pytest
import torch

from rnnpipe.config import MonitorConfig, load_config
from rnnpipe.errors import ConfigError
from rnnpipe.monitor import MonitorPipeline
from rnnpipe.streaming import ShardStream, _load_part, fit_streaming_preprocessor, part_of, shard_files
from rnnpipe.synth import CHANNELS, write_synthetic_vitals
from rnnpipe.training import fit

VITALS = ["data.channels=" + ",".join(CHANNELS), 'data.event=""', "data.label_col=deterioration",
          "resample.step=1min", "resample.max_gap=5min", "window.lookback=30", "window.horizon=15",
          "model.hidden_size=8", "train.epochs=1", "train.batch_size=256", "forecast.enabled=false"]


@pytest.fixture(scope="module")
def vitals(tmp_path_factory):
    out = tmp_path_factory.mktemp("v") / "vitals"
    summary = write_synthetic_vitals(out, patients=30, hours=6, seed=1, patients_per_file=10)
    return out, summary


def test_generator_is_seeded_partitioned_and_plausible(vitals, tmp_path):
    out, summary = vitals
    assert summary["shards"] == 3 and len(shard_files(out)) == 3
    df = pd.read_parquet(out)
    assert df.patient_id.nunique() == 30 and len(df) == summary["rows"]
    assert 0.9 * 30 * 360 < len(df) < 30 * 360  # some readings are missing, by design
    assert df.spo2.between(60, 100).all() and df.heart_rate.between(20, 250).all()
    assert set(df.deterioration.unique()) <= {0, 1} and df.deterioration.any()
    write_synthetic_vitals(tmp_path / "again", patients=30, hours=6, seed=1, patients_per_file=10)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "again"), df)
    with pytest.raises(ConfigError, match="exists"):
        write_synthetic_vitals(out, patients=1, hours=1)


def test_streamed_parts_are_disjoint_and_train(vitals):
    out, _ = vitals
    cfg = load_config(MonitorConfig, overrides=VITALS + [f"data.path={out}"])
    parts = {}
    for f in shard_files(out):
        for part in ("train", "val", "test"):
            frame = _load_part(f, cfg, part)
            for s in (frame.series if frame else []):
                assert part_of(s, 0.7, 0.15) == part
                parts.setdefault(s, set()).add(part)
    assert len(parts) == 30 and all(len(p) == 1 for p in parts.values())

    pre = fit_streaming_preprocessor(out, cfg)
    train = ShardStream(out, cfg, pre, "train")
    val = ShardStream(out, cfg, pre, "val")
    x, y = next(train.batches(64))
    assert x.shape == (64, 30, 10) and set(torch.unique(y).tolist()) <= {0.0, 1.0}
    n = sum(len(b[1]) for b in train.batches(512))
    assert abs(n - len(train)) / n < 0.5  # the length is an estimate from one shard
    assert sum(len(b[1]) for b in ShardStream(out, cfg, pre, "train", stride=4).batches(512)) == pytest.approx(n / 4, rel=0.02)
    pipe = MonitorPipeline(cfg, pre)
    loss = lambda p, t: torch.nn.functional.binary_cross_entropy_with_logits(p, t[:, 0])
    result = fit(pipe.model, train, val, cfg.train, loss_fn=loss, progress=False)
    assert np.isfinite(result.history[0]["val_loss"]) and result.history[0]["samples_per_s"] > 0
