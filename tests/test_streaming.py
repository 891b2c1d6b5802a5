"""Synthetic vitals and training streamed shard by shard."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from rnnpipe.config import load_config
from rnnpipe.errors import ConfigError, DataError
from rnnpipe.pipelines.monitor.artefact import MonitorPipeline, evaluate_monitor, prepare_monitor
from rnnpipe.pipelines.monitor.config import MonitorConfig
from rnnpipe.pipelines.monitor.data import load_monitor_data, streamed
from rnnpipe.pipelines.monitor.streaming import StreamedMonitor
from rnnpipe.synth import CHANNELS, write_synthetic_vitals

VITALS = [
    "data.channels=" + ",".join(CHANNELS),
    'data.event=""',
    "data.label_col=deterioration",
    "resample.step=1min",
    "resample.max_gap=5min",
    "window.lookback=30",
    "window.horizon=15",
    "model.hidden_size=8",
    "train.epochs=1",
    "train.batch_size=256",
    "forecast.enabled=false",
]


@pytest.fixture(scope="module")
def vitals(tmp_path_factory):
    out = tmp_path_factory.mktemp("v") / "vitals"
    summary = write_synthetic_vitals(out, patients=30, hours=6, seed=1, patients_per_file=10)
    return out, summary


def test_generator_is_seeded_partitioned_and_plausible(vitals, tmp_path):
    out, summary = vitals
    assert summary["shards"] == 3 and len(list(out.rglob("*.parquet"))) == 3
    df = pd.read_parquet(out)
    assert df.patient_id.nunique() == 30 and len(df) == summary["rows"]
    assert 0.9 * 30 * 360 < len(df) < 30 * 360  # some readings are missing, by design
    assert df.spo2.between(60, 100).all() and df.heart_rate.between(20, 250).all()
    assert set(df.deterioration.unique()) <= {0, 1} and df.deterioration.any()
    write_synthetic_vitals(tmp_path / "again", patients=30, hours=6, seed=1, patients_per_file=10)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "again"), df)
    with pytest.raises(ConfigError, match="exists"):
        write_synthetic_vitals(out, patients=1, hours=1)


def _configs(path, *extra):
    memory = load_config(MonitorConfig, overrides=VITALS + [f"data.path={path}", "data.streaming=false", *extra])
    streamed = load_config(MonitorConfig, overrides=VITALS + [f"data.path={path}", "data.streaming=true", *extra])
    return memory, streamed


def test_streamed_preparation_windows_and_evaluation_equal_the_in_memory_path(vitals):
    out, _ = vitals
    cm, cs = _configs(out)
    pm = prepare_monitor(load_monitor_data(cm), cm)
    seen = []
    ps = prepare_monitor(load_monitor_data(cs), cs, on_shard=lambda *a: seen.append(a))
    assert isinstance(ps, StreamedMonitor) and not isinstance(pm, StreamedMonitor)
    assert seen == [("read", 1, 3), ("read", 2, 3), ("read", 3, 3)]
    # the same patients in each part, the same windows, the same scaler (the sample holds
    # every training patient here)
    assert ps.counts() == pm.counts() and ps.patients == pm.patients
    n_train = int((pm.split.part("train")[:, 1] > pm.split.part("train")[:, 0]).sum())
    assert ps.sample["patients"] == ps.sample["of_patients"] == n_train
    assert ps.preprocessor.to_dict() == pm.preprocessor.to_dict()
    for part in ("train", "val"):
        a, b = list(pm.windows(part).batches(100)), list(ps.windows(part).batches(100))
        assert len(a) == len(b) and all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b))
        assert len(ps.windows(part)) == len(pm.windows(part))
    # shuffled: the same windows, in another order, batches still full across shard ends
    g = torch.Generator().manual_seed(0)
    sizes, total = [], 0.0
    for x, y in ps.windows("train").batches(100, shuffle=True, generator=g):
        sizes.append(len(y))
        total += float(x.double().sum())
    assert all(n == 100 for n in sizes[:-1]) and sum(sizes) == len(pm.windows("train"))
    assert total == pytest.approx(sum(float(x.double().sum()) for x, _ in pm.windows("train").batches(512)))
    # one model, scored shard by shard: the metrics of the whole part in memory
    pipe = MonitorPipeline(cm, pm.preprocessor)
    m_memory, m_streamed = evaluate_monitor(pipe, pm), evaluate_monitor(pipe, ps)
    assert m_streamed.keys() == m_memory.keys()
    for k, v in m_memory.items():
        assert m_streamed[k] == pytest.approx(v, rel=1e-9, nan_ok=True), k


def test_a_sweep_trial_streams_too(vitals):
    from rnnpipe.pipelines.monitor.steps import MonitorSteps
    from rnnpipe.steps import train_kind, trial_context

    out, _ = vitals
    _, cs = _configs(out)
    trained = train_kind(MonitorSteps(), cs, trial_context())
    assert np.isfinite(trained.metrics["test_f1"]) and trained.fingerprint
    assert set(trained.input_example.columns) >= {"patient_id", "timestamp", *CHANNELS}
    assert trained.pipeline.predict(trained.input_example)["risk"].notna().any()


def test_a_smaller_fitting_sample_is_seeded_and_its_scaler_close(vitals):
    out, _ = vitals
    _, full = _configs(out)
    _, small = _configs(out, "data.stream_sample_rows=3000")
    pf = prepare_monitor(load_monitor_data(full), full)
    ps = prepare_monitor(load_monitor_data(small), small)
    assert 0 < ps.sample["patients"] < pf.sample["patients"] and ps.sample["readings"] < pf.sample["readings"]
    again = prepare_monitor(load_monitor_data(small), small)
    assert again.preprocessor.to_dict() == ps.preprocessor.to_dict()  # seeded: the same sample
    a, b = pf.preprocessor.scaler_, ps.preprocessor.scaler_
    # a sample of n patients puts the centres about (spread between patients) / sqrt(n) off
    # (README): with ~9 of 21 patients here, within half a standard deviation
    assert np.all(np.abs(a.center_pooled_ - b.center_pooled_) < 0.5 * a.scale_pooled_)
    assert np.all(np.abs(np.log(a.scale_pooled_ / b.scale_pooled_)) < np.log(1.5))
    assert ps.counts() == pf.counts()  # counts and labels never depend on the sample


def test_streaming_is_chosen_by_config_and_size_and_refuses_what_it_cannot_do(vitals, tmp_path):
    out, summary = vitals
    cm, cs = _configs(out)
    assert not streamed(cm.data, out) and streamed(cs.data, out)
    auto = load_config(MonitorConfig, overrides=VITALS + [f"data.path={out}"])
    assert auto.data.streaming == "auto" and not streamed(auto.data, out)
    auto.data.stream_above_rows = summary["rows"] - 1
    assert streamed(auto.data, out)
    csv = tmp_path / "vitals.csv"
    pd.read_parquet(out).to_csv(csv, index=False)
    assert not streamed(auto.data, csv)  # a row count needs Parquet metadata
    with pytest.raises(ConfigError, match="split in time"):
        load_config(
            MonitorConfig,
            overrides=VITALS + ["data.streaming=true", "split.val_start=2024-01-01", "split.test_start=2024-01-02"],
        )
    with pytest.raises(ConfigError, match="expected true, false or auto"):
        load_config(MonitorConfig, overrides=VITALS + ["data.streaming=sometimes"])
    # a bad value is found by the pass over the shards, naming its file and row
    bad_value = tmp_path / "bad_value"
    shutil.copytree(out, bad_value)
    f = sorted(bad_value.rglob("*.parquet"))[1]
    df = pd.read_parquet(f)
    df.loc[17, "spo2"] = np.inf
    df.to_parquet(f)
    with pytest.raises(DataError, match=r"shard=0001.*row 18: column 'spo2' is infinite"):
        _, bad_cfg = _configs(bad_value)
        prepare_monitor(load_monitor_data(bad_cfg), bad_cfg)
    # a patient whose readings lie in two files cannot be streamed: both files are named
    split = tmp_path / "split"
    df = pd.read_parquet(out).drop(columns="shard")
    for k, (lo, hi) in enumerate([(0, len(df) // 2), (len(df) // 2, len(df))]):
        (split / f"shard={k}").mkdir(parents=True)
        df.iloc[lo:hi].to_parquet(split / f"shard={k}" / "part-0.parquet")
    _, bad = _configs(split)
    with pytest.raises(DataError, match=r"has readings in .*shard=0.* and in .*shard=1"):
        load_monitor_data(bad)


@pytest.mark.slow
def test_a_streamed_run_equals_the_in_memory_run(prefect_harness, vitals):
    """The whole flow both ways on data small enough for both: with the training windows in
    order (train.shuffle=false) and a fitting sample holding every training patient, every
    logged metric and the registered model's answers are the same."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from prefect.artifacts import Artifact

    from rnnpipe.config import to_dict
    from rnnpipe.flows.monitor import train_monitor

    out, _ = vitals
    extra = ["train.shuffle=false", "train.epochs=2", "register.experiment=streamed"]
    cm, cs = _configs(out, *extra, "register.model_name=in-memory")
    cs.register.model_name, cs.forecast.enabled = "streamed", True
    runs = {name: train_monitor(config=to_dict(c)) for name, c in (("memory", cm), ("streamed", cs))}
    client = MlflowClient()
    data = {k: client.get_run(r["run_id"]).data for k, r in runs.items()}
    timing = ("samples_per_s", "epoch_time_s", "_s")
    metrics = {k: {m: v for m, v in d.metrics.items() if not m.endswith(timing)} for k, d in data.items()}
    assert len(metrics["memory"]) > 100 and metrics["streamed"].keys() == metrics["memory"].keys()
    for m, v in metrics["memory"].items():
        assert metrics["streamed"][m] == pytest.approx(v, rel=1e-6, nan_ok=True), m
    for m in ("val_loss", "train_loss"):
        h = [[x.value for x in client.get_metric_history(r["run_id"], m)] for r in runs.values()]
        assert h[0] == pytest.approx(h[1], rel=1e-6)
    tags = data["streamed"].tags
    assert tags["streamed"].startswith("3 shards") and tags["forecast"] == "skipped: streamed data set"
    assert "streamed" not in data["memory"].tags
    assert Artifact.get("monitor-shards").data == pytest.approx(100.0)
    models = {k: mlflow.pyfunc.load_model(f"models:/{r['model_name']}/{r['version']}") for k, r in runs.items()}
    recent = pd.read_parquet(out).groupby("patient_id").tail(40)
    a, b = (models[k].predict(recent) for k in ("memory", "streamed"))
    assert a["risk"].notna().sum() > 20
    np.testing.assert_allclose(a["risk"], b["risk"], rtol=1e-5)
    assert (a["alert"] == b["alert"]).all()
    # the drift reference: the streamed run profiles its shards as the in-memory run its grid
    prof = {k: m.unwrap_python_model().profile for k, m in models.items()}
    assert prof["streamed"]["meta"]["streamed"] and not prof["memory"]["meta"]["streamed"]
    assert prof["streamed"]["meta"]["train_steps"] == prof["memory"]["meta"]["train_steps"]
    for kind in ("features", "predictions"):
        assert prof["streamed"][kind].keys() == prof["memory"][kind].keys()
        for name, ref in prof["memory"][kind].items():
            got = prof["streamed"][kind][name]
            assert got["n"] == ref["n"] and got["missing"] == pytest.approx(ref["missing"]), name
            assert got["mean"] == pytest.approx(ref["mean"], rel=1e-5) and got["edges"] == pytest.approx(ref["edges"])


def test_a_dataset_partitioned_by_patient_streams_like_it_reads(tmp_path):
    """Hive folders by patient (`pid=p1/part-0.parquet`): the patient column is the partition
    key, kept when each shard is read on its own."""
    from test_monitor import SMALL, patients

    for pid, g in patients(n=5).groupby("pid"):
        (tmp_path / f"pid={pid}").mkdir()
        g.drop(columns="pid").to_parquet(tmp_path / f"pid={pid}" / "part-0.parquet")
    cm = load_config(MonitorConfig, overrides=SMALL + [f"data.path={tmp_path}", "data.streaming=false"])
    cs = load_config(MonitorConfig, overrides=SMALL + [f"data.path={tmp_path}", "data.streaming=true"])
    pm, ps = prepare_monitor(load_monitor_data(cm), cm), prepare_monitor(load_monitor_data(cs), cs)
    assert ps.shards.patients == [[f"p{i}"] for i in range(5)] and ps.counts() == pm.counts()
    pipe = MonitorPipeline(cm, pm.preprocessor)
    m_memory, m_streamed = evaluate_monitor(pipe, pm), evaluate_monitor(pipe, ps)
    for k, v in m_memory.items():
        assert m_streamed[k] == pytest.approx(v, rel=1e-9, nan_ok=True), k
