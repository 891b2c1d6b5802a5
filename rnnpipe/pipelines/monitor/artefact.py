"""Early warning on monitoring data: "will an event happen within the next K steps?".

The pieces are the shared ones (ingestion, resampling with a gap policy, splits, scalers,
windows, the recurrent encoder, the fit loop); this module holds what is specific: input
channels and labels, the fitted `MonitorPipeline` artefact, and its evaluation against
baselines on all test windows and on **onset** windows, those whose last reading is not yet an
event. Warning that a low reading stays low is easy; warning before it starts is the job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rnnpipe import artefact
from rnnpipe.batch_input import WHOLE_INPUT
from rnnpipe.config import from_dict, to_dict
from rnnpipe.errors import DataError, ModelError
from rnnpipe.features.events import event_flags, parse_rule
from rnnpipe.features.splits import PARTS, Split, chronological_split, grouped_split
from rnnpipe.features.windows import INFERENCE_BATCH, WindowSet
from rnnpipe.pipelines.monitor.baselines import LastReadingRule, MajorityBaseline, SummaryLogisticRegression
from rnnpipe.pipelines.monitor.config import MonitorConfig
from rnnpipe.pipelines.monitor.data import check_channels, value_columns
from rnnpipe.pipelines.monitor.evaluation import alert_lead_times, choose_threshold, classification_metrics
from rnnpipe.pipelines.monitor.model import SequenceClassifier
from rnnpipe.pipelines.monitor.prepare import (
    GROUPED,
    Chunk,
    MonitorPreprocessor,
    channel_values,
    check_event_counts,
    part_ends,
    readings_example,
    window_counts,
)
from rnnpipe.series import SeriesFrame, series_id_column, to_series_frame
from rnnpipe.training import predict_batches


@dataclass
class MonitorPrepared:
    grid: SeriesFrame
    split: Split
    preprocessor: MonitorPreprocessor
    inputs: np.ndarray  # (T, C) scaled
    events: np.ndarray  # (T,) event now (NaN unknown)
    labels: np.ndarray  # (T,) event within the next K steps
    ends: dict[str, np.ndarray]
    split_kind: str
    fingerprint: str = ""  # of the readings as read
    source: str = ""
    example: pd.DataFrame | None = None  # raw recent readings of a few patients

    @property
    def patients(self) -> list[str]:
        return self.grid.series

    def windows(self, part: str) -> WindowSet:
        return WindowSet(self.inputs, self.labels[:, None], self.ends[part], self.preprocessor.cfg.window.lookback)

    def counts(self) -> dict[str, dict[str, int]]:
        return {p: window_counts(self.labels, self.events, e) for p, e in self.ends.items()}

    def train_readings(self):
        """The training part's readings on the grid, (rows, channels): one block here."""
        yield channel_values(self.grid, self.preprocessor.cfg)[self.split.mask("train", len(self.grid))]

    def chunks(self, part: str):
        """The part's windows for evaluation: all of them at once."""
        yield Chunk(
            channel_values(self.grid, self.preprocessor.cfg),
            self.inputs,
            self.events,
            self.labels,
            self.grid.offsets,
            self.ends[part],
        )

    def baseline_data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(raw readings, training window ends, their labels): what the baselines are fitted on."""
        e = self.ends["train"]
        return channel_values(self.grid, self.preprocessor.cfg), e, self.labels[e]


def prepare_monitor(data, cfg: MonitorConfig, on_shard=None):
    """Grid, split (by patient when there are 3 or more, else in time order), scaling fitted on
    train, labels, and the windows of each part (none spans a gap or a split boundary).
    `data` is a SeriesFrame, or the `Shards` of a streamed data set (`rnnpipe.pipelines.monitor.streaming`; then
    `on_shard(what, done, total)` is called after each shard read, in this step and later)."""
    from rnnpipe.pipelines.monitor.data import Shards

    if isinstance(data, Shards):
        from rnnpipe.pipelines.monitor.streaming import prepare_streamed

        return prepare_streamed(data, cfg, on_shard)
    frame = data
    if cfg.data.label_col:
        event_flags(frame, label_col=cfg.data.label_col)  # 0/1 check on the raw readings
    pre = MonitorPreprocessor(cfg)
    grid = pre.grid(frame)
    s = cfg.split
    if s.val_start:
        split, kind = (
            chronological_split(grid, val_start=s.val_start, test_start=s.test_start),
            f"chronological at {s.val_start} / {s.test_start}",
        )
    elif len(grid.series) >= 3:
        split, kind = grouped_split(grid, s.train, s.val, s.seed), GROUPED
    else:
        split, kind = chronological_split(grid, s.train, s.val), "chronological"
    pre.fit(grid, split)
    inputs, valid = pre.transform(grid)
    events, labels = pre.targets(grid)
    ends = {part: part_ends(split, part, cfg, valid, labels, events) for part in PARTS}
    prepared = MonitorPrepared(
        grid,
        split,
        pre,
        inputs,
        events,
        labels,
        ends,
        kind,
        frame.fingerprint,
        str(frame.source),
        readings_example(frame, cfg),
    )
    check_event_counts(prepared.counts(), kind, cfg, frame.source)
    return prepared


class MonitorPipeline:
    """Preprocessing + classifier + the decision threshold chosen on validation."""

    KIND = "monitor"

    def __init__(
        self,
        config: MonitorConfig,
        preprocessor: MonitorPreprocessor,
        model: SequenceClassifier | None = None,
        threshold: float = 0.5,
    ):
        self.config, self.preprocessor, self.threshold = config, preprocessor, threshold
        if model is None:
            m = config.model
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.train.seed)
                model = SequenceClassifier(
                    len(preprocessor.input_names_),
                    lookback=config.window.lookback,
                    highway=m.highway,
                    **m.encoder(),
                )
        self.model = model

    def risk(self, inputs: np.ndarray, ends: np.ndarray, batch_size: int = INFERENCE_BATCH) -> np.ndarray:
        """Event probability for the windows ending at rows `ends`."""
        device = next(self.model.parameters()).device
        data = WindowSet(inputs, np.zeros((len(inputs), 1), np.float32), ends, self.config.window.lookback).to(device)
        logits = predict_batches(self.model, data, batch_size).reshape(-1)
        return 1 / (1 + np.exp(-logits))

    def _grid(self, readings: pd.DataFrame, with_label: bool = False) -> SeriesFrame:
        """Raw readings checked as training checks them, on the model's time grid (with the
        0/1 label column of a `data.label_col` model, for judging outcomes)."""
        d = self.config.data
        frame = to_series_frame(
            readings,
            timestamp_col=d.timestamp_col,
            series_col=d.series_col,
            series_name=d.series_name,
            value_cols=value_columns(self.config) if with_label else d.channels,
            nan_policy="keep",
            duplicates=d.duplicates,
        )
        check_channels(frame, d.channels)
        return self.preprocessor.grid(frame)

    def drift_features(self, grid: SeriesFrame) -> dict[str, np.ndarray]:
        """Per step of the grid, each channel's reading (missing between readings)."""
        values = channel_values(grid, self.config)
        return {c: values[:, j] for j, c in enumerate(self.config.data.channels)}

    def drift_values(self, inputs: pd.DataFrame, outputs: pd.DataFrame) -> tuple[dict, dict]:
        """A batch chunk's (features, predictions) for its drift report (`rnnpipe.drift`)."""
        return self.drift_features(self._grid(inputs)), {"risk": outputs["risk"].to_numpy(np.float64)}

    def actuals_columns(self) -> tuple[list[str], str]:
        """What `--actuals` holds for realised accuracy: (columns, what they are)."""
        d = self.config.data
        return [*([d.series_col] if d.series_col else []), d.timestamp_col, *value_columns(self.config)], (
            f"the readings after each prediction, at least window.horizon ({self.config.window.horizon}) steps of "
            f"{self.config.resample.step}"
        )

    def realised_scores(self, output: pd.DataFrame, actuals: pd.DataFrame) -> dict[str, float]:
        """A job's alerts against what happened: each prediction (a patient's risk at time t)
        is judged on the readings of `actuals` on the model's grid, in the `window.horizon`
        steps after t, as training labels a window: 1 if the event holds at any of them, 0 if
        all are known and none does; a prediction whose next steps are not all known (and show
        no event) is not judged. -> `f1`, `precision`, `recall` of the event class (the
        registered test scores' names), `rows` judged and `event_rows` among them."""
        d, H = self.config.data, self.config.window.horizon
        grid = self._grid(actuals, with_label=True)
        events = self.preprocessor.events(grid)
        where = {str(s): i for i, s in enumerate(grid.series)}
        ids = output[d.series_col].astype(str) if d.series_col else [str(grid.series[0])] * len(output)
        times = pd.to_datetime(output[d.timestamp_col]).to_numpy("datetime64[ns]")
        horizon = np.timedelta64(pd.Timedelta(self.config.resample.step) * H)
        y, risk = [], []
        for sid, t, r in zip(ids, times, output["risk"].to_numpy(np.float64), strict=True):
            if np.isnan(r) or sid not in where:
                continue
            lo, hi = grid.bounds(where[sid])
            ts = grid.timestamps[lo:hi]
            a, b = lo + np.searchsorted(ts, t, side="right"), lo + np.searchsorted(ts, t + horizon, side="right")
            ahead = events[a:b]
            if np.nansum(ahead) > 0:
                y.append(1)
            elif len(ahead) == H and not np.isnan(ahead).any():
                y.append(0)
            else:
                continue
            risk.append(r)
        if not y:
            return {"rows": 0.0}
        m = classification_metrics(np.array(y), np.array(risk), self.threshold, prefix="r")
        scores = {k: m[f"r_{k}"] for k in ("f1", "precision", "recall") if np.isfinite(m[f"r_{k}"])}
        return {**scores, "rows": float(len(y)), "event_rows": float(sum(y))}

    def _latest(self, readings: pd.DataFrame) -> tuple[SeriesFrame, np.ndarray, np.ndarray, list[str]]:
        d = self.config.data
        grid = self._grid(readings)
        inputs, valid = self.preprocessor.transform(grid)
        L = self.config.window.lookback
        ends, notes = grid.offsets[1:] - 1, []
        channels = grid.values[:, [grid.columns.index(c) for c in d.channels]]
        for i, t in enumerate(ends):
            lo = grid.offsets[i]
            absent = [c for j, c in enumerate(d.channels) if np.isnan(channels[lo : t + 1, j]).all()]
            if absent:
                notes.append(f"no reading of {absent[0]!r}")
            elif t - lo + 1 < L:
                notes.append(f"needs {L} steps of {self.config.resample.step}, has {t - lo + 1}")
            elif not valid[t - L + 1 : t + 1].all():
                notes.append(f"a gap longer than {self.config.resample.max_gap} in the last {L} steps")
            else:
                notes.append("")
        return grid, inputs, ends, notes

    def batch_spec(self, available: list[str]) -> tuple[list[str], str | None]:
        """(columns the model reads, the column whose groups it needs whole) for batch jobs."""
        d = self.config.data
        return [*([d.series_col] if d.series_col else []), d.timestamp_col, *d.channels], d.series_col or WHOLE_INPUT

    def predict(self, readings: pd.DataFrame) -> pd.DataFrame:
        """Raw recent readings of one or many patients -> per patient: the time of the last
        reading, the risk of an event within the horizon, and the alert flag. A patient whose
        recent readings cannot fill a window gets no risk and a note saying why."""
        grid, inputs, ends, notes = self._latest(readings)
        ok = np.array([n == "" for n in notes])
        risk = np.full(len(ends), np.nan)
        if ok.any():
            risk[ok] = self.risk(inputs, ends[ok])
        d = self.config.data
        return pd.DataFrame(
            {
                **series_id_column(d.series_col, grid.series),
                d.timestamp_col: grid.timestamps[ends],
                "risk": risk,
                "alert": ok & (risk >= self.threshold),
                "threshold": self.threshold,
                "note": notes,
            }
        )

    def explain(self, readings: pd.DataFrame) -> pd.DataFrame:
        """Attention weight of each of the last `lookback` steps behind each patient's risk
        (needs model.pooling=attention)."""
        if self.config.model.pooling != "attention":
            raise DataError("explain needs a model trained with model.pooling=attention")
        grid, inputs, ends, notes = self._latest(readings)
        ok = np.flatnonzero([n == "" for n in notes])
        self.risk(inputs, ends[ok])
        weights = self.model.attention().cpu().numpy()
        L, d = self.config.window.lookback, self.config.data
        rows = [
            (grid.series[i], grid.timestamps[t - L + 1 + k], float(weights[j, k]))
            for j, (i, t) in enumerate(zip(ok, ends[ok]))
            for k in range(L)
        ]
        return pd.DataFrame(rows, columns=[d.series_col or "series", d.timestamp_col, "attention"])

    def save(self, path: str | Path) -> Path:
        if not np.isfinite(self.threshold):
            raise ModelError(
                f"the decision threshold is {self.threshold}: a model that can never raise an alert is not saved"
            )
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        (p / "config.json").write_text(json.dumps(to_dict(self.config), indent=2))
        (p / "preprocessor.json").write_text(
            json.dumps({**self.preprocessor.to_dict(), "threshold": float(self.threshold)})
        )
        torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, p / "weights.pt")
        artefact.mark(p, self.KIND)
        return p

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> MonitorPipeline:
        p = Path(path)
        artefact.check(p, cls.KIND)
        cfg = from_dict(MonitorConfig, json.loads((p / "config.json").read_text()))
        state = json.loads((p / "preprocessor.json").read_text())
        pipe = cls(cfg, MonitorPreprocessor.from_dict(cfg, state), threshold=state["threshold"])
        pipe.model.load_state_dict(torch.load(p / "weights.pt", map_location=device, weights_only=True))
        pipe.model.to(device).eval()
        return pipe


def _rule_sign(cfg: MonitorConfig) -> tuple[int, float]:
    """The event channel's column among the inputs and the sign that makes "higher = event"."""
    if cfg.data.event:
        channel, op, _ = parse_rule(cfg.data.event)
        return cfg.data.channels.index(channel), (-1.0 if op in ("<", "<=") else 1.0)
    return 0, 1.0


def evaluate_monitor(pipeline: MonitorPipeline, p) -> dict[str, float]:
    """The model and the baselines on test, all windows and onset windows; each threshold is
    chosen on validation by the same rule, and the model's is stored in `pipeline.threshold`
    (it travels with the registered model).

    `p` gives its windows as `chunks` of whole patients (`MonitorPrepared`: one; a streamed
    data set: one per shard): scores, labels and onset flags are gathered chunk by chunk (one
    float per window and scorer: thresholds and PR-AUC need every score), and alert lead times
    are computed per chunk once the thresholds are known, so the metrics are exactly those of
    the whole part in memory."""
    cfg = pipeline.config
    c, w = cfg.classify, cfg.window
    column, sign = _rule_sign(cfg)
    raw, train_ends, y_train = p.baseline_data()
    scorers: dict[str, Any] = {"": None}
    for b in (MajorityBaseline(), LastReadingRule(column, sign), SummaryLogisticRegression(w.lookback)):
        scorers[b.name] = b.fit(raw, train_ends, y_train)
    del raw

    def score(name: str, ch: Chunk) -> np.ndarray:
        scorer = scorers[name]
        return pipeline.risk(ch.inputs, ch.ends) if scorer is None else scorer.score(ch.raw, ch.ends)

    val = {name: [] for name in scorers}
    y_val, onset_val = [], []
    for ch in p.chunks("val"):
        for name in scorers:
            val[name].append(score(name, ch))
        y_val.append(ch.y)
        onset_val.append(ch.onset)
    yv, ov = np.concatenate(y_val), np.concatenate(onset_val)

    thresholds = {}
    for name in scorers:
        sv = val[name] = np.concatenate(val[name])
        m = ov if c.threshold_on == "onset" else np.ones(len(sv), bool)
        thresholds[name] = 0.5 if name == "majority" else choose_threshold(yv[m], sv[m], c.threshold, c.target_recall)

    test = {name: [] for name in scorers}
    leads: dict[str, list[np.ndarray]] = {name: [] for name in scorers}
    y_test, onset_test = [], []
    for ch in p.chunks("test"):
        for name in scorers:
            st = score(name, ch)
            test[name].append(st)
            leads[name].append(alert_lead_times(ch.events, ch.offsets, ch.ends, st >= thresholds[name], w.horizon))
        y_test.append(ch.y)
        onset_test.append(ch.onset)
    yt, ot = np.concatenate(y_test), np.concatenate(onset_test)

    step_min = pd.Timedelta(cfg.resample.step).total_seconds() / 60
    metrics: dict[str, float] = {}
    for name in scorers:
        sv, st, thr = val[name], np.concatenate(test[name]), thresholds[name]
        prefix = f"{name}_test" if name else "test"
        m = {}
        if name == "":
            pipeline.threshold = thr
            m.update(classification_metrics(yv, sv, thr, "val"))
            m.update(classification_metrics(yv[ov], sv[ov], thr, "val", "_onset"))
        m.update(classification_metrics(yt, st, thr, prefix))
        m.update(classification_metrics(yt[ot], st[ot], thr, prefix, "_onset"))
        lead = np.concatenate(leads[name])
        m[f"{prefix}_events"] = float(len(lead))
        m[f"{prefix}_events_warned"] = float((lead > 0).mean()) if len(lead) else float("nan")
        m[f"{prefix}_alert_lead_min_median"] = float(np.median(lead[lead > 0]) * step_min) if (lead > 0).any() else 0.0
        m[f"{(name + '_') if name else ''}threshold"] = float(thr) if np.isfinite(thr) else float("nan")
        metrics.update(m)
    return metrics


def baseline_names() -> list[str]:
    return [b.name for b in (MajorityBaseline, LastReadingRule, SummaryLogisticRegression)]


def gate_spec(cfg: MonitorConfig) -> dict[str, Any]:
    """The monitor gate: `register.metric` (higher is better) against the best baseline."""
    r = cfg.register
    return dict(
        metric=r.metric,
        baselines={b: f"{b}_{r.metric}" for b in baseline_names()},
        margin=r.baseline_margin,
        greater_is_better=True,
    )


def classification_loss(cfg: MonitorConfig, p):
    """Binary cross-entropy on logits; with classify.class_weight=balanced the rare event class
    is weighted by (negatives / positives) of the training windows."""
    pos_weight = None
    if cfg.classify.class_weight == "balanced":
        n = p.counts()["train"]
        pos_weight = torch.tensor(float((n["windows"] - n["positive"]) / max(n["positive"], 1)))

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = None if pos_weight is None else pos_weight.to(logits.device)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, target[:, 0], pos_weight=w)

    return loss


def comparison_table(metrics: dict[str, float]) -> list[dict[str, Any]]:
    """Model and baselines side by side on all test windows and on onset windows."""
    rows = []
    for name in ["model", *baseline_names()]:
        pre = "test" if name == "model" else f"{name}_test"
        row: dict[str, Any] = {"method": name}
        for suffix in ("_onset", ""):
            for k in ("f1", "precision", "recall", "pr_auc"):
                row[f"{k}{suffix or '_all'}"] = round(metrics[f"{pre}_{k}{suffix}"], 4)
        row["events_warned"] = round(metrics[f"{pre}_events_warned"], 4)
        row["lead_min_median"] = metrics[f"{pre}_alert_lead_min_median"]
        rows.append(row)
    return rows
