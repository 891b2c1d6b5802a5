"""The early-warning pieces: thresholds, metrics, baselines, and the pipeline on raw readings."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rnnpipe.config import load_config
from rnnpipe.errors import ConfigError, DataError
from rnnpipe.pipelines.monitor.artefact import MonitorPipeline, evaluate_monitor, prepare_monitor
from rnnpipe.pipelines.monitor.baselines import window_summary
from rnnpipe.pipelines.monitor.config import MonitorConfig
from rnnpipe.pipelines.monitor.evaluation import alert_lead_times, choose_threshold, classification_metrics
from rnnpipe.series import to_series_frame
from rnnpipe.training import fit


def test_threshold_maximises_f1_or_reaches_recall():
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.9])
    t = choose_threshold(y, s)
    assert t == pytest.approx(0.35)  # F1 = 8/9, the best here
    assert classification_metrics(y, s, t)["test_f1"] == pytest.approx(8 / 9)
    assert choose_threshold(y, s, "recall", 0.75) == pytest.approx(0.6)


def test_alert_lead_time_counts_steps_before_onset():
    events = np.array([0, 0, 0, 0, 1, 1, 0, 0, 0, 1.0])
    ends = np.arange(10)
    alerts = np.zeros(10, bool)
    alerts[2] = True  # two steps before the first onset; none before the second
    leads = alert_lead_times(events, np.array([0, 10]), ends, alerts, horizon=3)
    assert leads.tolist() == [2, 0]


def test_window_summary_statistics():
    x = np.arange(10, dtype=float)[:, None]
    f = window_summary(x, np.array([4]), 5)
    assert f.shape == (1, 6) and f[0].tolist() == pytest.approx([4, 2, 0, 4, 1, np.std([0, 1, 2, 3, 4])], rel=1e-12)


def patients(n=4, hours=30, seed=0):
    """Synthetic glucose-like readings every 5 min with dips below 70 that are announced by a
    falling trend, so an early warning is learnable."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n):
        steps = hours * 12
        g = 105 + 40 * np.sin(np.arange(steps) * 2 * np.pi / (3 * 12) + p) + rng.normal(0, 3, steps)
        t = pd.date_range("2024-01-01", periods=steps, freq="5min") + pd.to_timedelta(rng.integers(0, 40, steps), "s")
        keep = np.ones(steps, bool)
        keep[100 + 5 * p : 112 + 5 * p] = False  # a 1-hour hole
        rows.append(pd.DataFrame({"pid": f"p{p}", "ts": t[keep], "glucose": g[keep]}))
    return pd.concat(rows, ignore_index=True)


SMALL = [
    "data.series_col=pid",
    "data.timestamp_col=ts",
    "window.lookback=12",
    "window.horizon=3",
    "model.hidden_size=8",
    "train.epochs=3",
    "train.batch_size=64",
]


def test_pipeline_on_raw_readings_of_two_patients():
    cfg = load_config(MonitorConfig, overrides=SMALL)
    df = patients()
    frame = to_series_frame(df, timestamp_col="ts", series_col="pid", value_cols=["glucose"], nan_policy="keep")
    p = prepare_monitor(frame, cfg)
    assert p.split_kind == "grouped by patient"
    pipe = MonitorPipeline(cfg, p.preprocessor)

    def loss(pred, y):
        return torch.nn.functional.binary_cross_entropy_with_logits(pred, y[:, 0])

    fit(pipe.model, p.windows("train"), p.windows("val"), cfg.train, loss_fn=loss, progress=False)
    metrics = evaluate_monitor(pipe, p)
    for name in ("", "rule_", "logreg_", "majority_"):
        assert {f"{name}test_f1", f"{name}test_f1_onset", f"{name}test_pr_auc_onset"} <= set(metrics)
    assert metrics["majority_test_f1"] == 0.0  # the majority class is "no event"

    recent = df[df.pid.isin(["p0", "p1"])].groupby("pid").tail(20)
    out = pipe.predict(recent.sample(frac=1, random_state=0))
    assert list(out.pid) == ["p0", "p1"] and out.note.eq("").all()
    assert ((out.risk > 0) & (out.risk < 1)).all()
    assert (out.alert == (out.risk >= pipe.threshold)).all()
    blank = recent.copy()
    blank.loc[blank.pid == "p1", "glucose"] = np.nan  # one patient's channel missing throughout
    got = pipe.predict(blank)
    assert got.note.tolist() == ["", "no reading of 'glucose'"] and np.isnan(got.risk[1]) and not got.alert[1]
    with pytest.raises(DataError, match=r"column 'glucose' \(one of data.channels\) has no values"):
        pipe.predict(blank.assign(glucose=np.nan))
    too_short = pipe.predict(df.groupby("pid").tail(5))
    assert too_short.risk.isna().all() and too_short.note.str.contains("needs 12 steps").all()
    weights = pipe.explain(recent)
    assert len(weights) == 2 * 12
    np.testing.assert_allclose(weights.groupby("pid").attention.sum(), 1.0, rtol=1e-5)


def test_bad_monitor_inputs_are_named():
    df = patients()
    frame = to_series_frame(df, timestamp_col="ts", series_col="pid", value_cols=["glucose"], nan_policy="keep")
    with pytest.raises(ConfigError, match="channel 'spo2' is not among"):
        prepare_monitor(frame, load_config(MonitorConfig, overrides=SMALL + ["data.event=spo2 < 90"]))
    with pytest.raises(DataError, match="training windows hold no event"):
        prepare_monitor(frame, load_config(MonitorConfig, overrides=SMALL + ["data.event=glucose < 0"]))
    with pytest.raises(DataError, match=r"column 'hr' not found"):
        to_series_frame(df, timestamp_col="ts", series_col="pid", value_cols=["glucose", "hr"])
    with pytest.raises(DataError, match=r"column 'patient' not found"):
        to_series_frame(df, timestamp_col="ts", series_col="patient", value_cols=["glucose"])


def test_bundled_ecg_has_its_anomalies_only_in_the_last_part():
    """Real data, real limit: the MIT-BIH excerpt's anomalies lie in one block at the end, so a
    chronological split leaves the training part without events, and the pipeline says so."""
    from rnnpipe.pipelines.monitor.data import load_monitor_data

    cfg = load_config(
        MonitorConfig,
        overrides=[
            f"data.path={Path(__file__).resolve().parent.parent / 'data' / 'ecg.parquet'}",
            "data.series_col=record",
            "data.channels=ecg_mv",
            'data.event=""',
            "data.label_col=anomaly",
            "resample.step=2777778ns",
            "resample.max_gap=20ms",
            "window.lookback=72",
            "window.horizon=18",
            "forecast.enabled=false",
        ],
    )
    with pytest.raises(DataError, match="training windows hold no event .* label = anomaly"):
        prepare_monitor(load_monitor_data(cfg), cfg)


def early_events(steps=1500, event_rows=range(200, 260, 6), seed=0):
    """One patient's heart rate every minute with a 0/1 label column whose labelled minutes all
    lie early in the recording: a chronological split leaves val and test without events."""
    rng = np.random.default_rng(seed)
    hr = 70 + 5 * np.sin(np.arange(steps) / 30) + rng.normal(0, 1, steps)
    label = np.zeros(steps)
    for r in event_rows:
        label[r : r + 3] = 1
    return pd.DataFrame(
        {"pid": "p0", "ts": pd.date_range("2024-01-01", periods=steps, freq="1min"), "hr": hr, "label": label}
    )


def three_patients() -> pd.DataFrame:
    """Three patients as `early_events`, split as groups with seed 0 (p2 trains, p0
    validates, p1 tests); p1 has no event, so the test part holds none."""
    return pd.concat(
        [early_events(event_rows=[] if s == 1 else range(200, 260, 6), seed=s).assign(pid=f"p{s}") for s in range(3)],
        ignore_index=True,
    )


EARLY = [
    "data.series_col=pid",
    "data.timestamp_col=ts",
    "data.channels=hr",
    'data.event=""',
    "data.label_col=label",
    "resample.step=1min",
    "resample.max_gap=5min",
    "window.lookback=12",
    "window.horizon=3",
    "forecast.enabled=false",
]


def test_a_split_without_events_in_val_or_test_is_refused_before_training():
    frame = to_series_frame(
        early_events(),
        timestamp_col="ts",
        series_col="pid",
        value_cols=["hr", "label"],
        nan_policy="keep",
        source="hr.csv",
    )
    with pytest.raises(DataError) as err:
        prepare_monitor(frame, load_config(MonitorConfig, overrides=EARLY))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("hr.csv: the val part holds 0 onset event windows")
    assert "split.min_events=5" in msg and "val 0 (onset 0), test 0 (onset 0)" in msg
    assert "split.val_start / split.test_start" in msg and "split by patient" in msg
    # patients split as groups, the test patient without events: another draw of patients is
    # advised, not the split the run already made
    frame = to_series_frame(
        three_patients(), timestamp_col="ts", series_col="pid", value_cols=["hr", "label"], nan_policy="keep"
    )
    with pytest.raises(DataError) as err:
        prepare_monitor(frame, load_config(MonitorConfig, overrides=EARLY))
    msg = str(err.value)
    assert "grouped by patient split" in msg and "split.seed" in msg and "split by patient" not in msg, msg
    # events in val but not in test: the test part is named, on all windows when the gate's
    # metric is not an onset metric
    late = early_events(event_rows=list(range(200, 260, 6)) + list(range(1100, 1160, 6)))
    frame = to_series_frame(
        late, timestamp_col="ts", series_col="pid", value_cols=["hr", "label"], nan_policy="keep", source="hr.csv"
    )
    with pytest.raises(DataError, match=r"the test part holds 0 event windows .* the gate's test_f1 is computed"):
        prepare_monitor(frame, load_config(MonitorConfig, overrides=EARLY + ["register.metric=test_f1"]))
    # cut dates that put events in every part are accepted
    spread = early_events(event_rows=[r for a in (100, 1000, 1300) for r in range(a, a + 60, 6)])
    frame = to_series_frame(spread, timestamp_col="ts", series_col="pid", value_cols=["hr", "label"], nan_policy="keep")
    p = prepare_monitor(
        frame,
        load_config(
            MonitorConfig, overrides=EARLY + ["split.val_start=2024-01-01T15:00", "split.test_start=2024-01-01T20:00"]
        ),
    )
    assert p.split_kind.startswith("chronological at") and p.counts()["test"]["onset_positive"] >= 5


def test_thresholds_are_finite_or_refused():
    with pytest.raises(DataError, match="no event among the validation windows"):
        choose_threshold(np.zeros(3), np.ones(3))
    m = classification_metrics(np.zeros(4), np.array([0.1, 0.2, 0.9, 0.3]), 0.5)
    assert np.isnan(m["test_f1"]) and np.isnan(m["test_recall"]) and m["test_precision"] == 0
    assert np.isnan(classification_metrics(np.zeros(4), np.zeros(4), 0.5)["test_precision"])


@pytest.mark.slow
def test_an_error_found_inside_the_flow_is_printed_once(prefect_harness, tmp_path):
    """Some bad input shows only once the flow has read it (here: a split whose test patient
    has no event). Prefect's console lines about that failure (the exception, the task's and
    the flow's final states) are left out: `rnnpipe train` prints it once."""
    import os
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    three_patients().to_csv(tmp_path / "icu.csv", index=False)
    sets = [f"data.path={tmp_path / 'icu.csv'}", *EARLY]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    args = [sys.executable, "-m", "rnnpipe.cli", "train", "monitor", *[a for x in sets for a in ("--set", x)]]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    # Prefect's own lines at the default verbosity: the run's start, not its failure
    assert proc.stderr.count("the test part holds 0 onset event windows") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Failed(" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: "), proc.stderr
