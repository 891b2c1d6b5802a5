"""Realised accuracy: a batch job's predictions scored against truth that arrived with (or
after) its input, beside what the model scored on its test part when it was registered.

- A classifier (reviews) scores the rows of its input that carry their label (the training
  label column, e.g. `score`, kept beside the predictions as a key): `LabelTally` counts
  (truth, prediction) pairs chunk by chunk, so memory does not grow with the input, and the
  counts of a Dask job's parts add up.
- A model whose truth arrives later takes `--actuals FILE`, read with the columns the model
  names (`pipeline.actuals_columns()`) and scored after the job by the model itself
  (`pipeline.realised_scores(output, actuals)`): a forecaster's forecasts against the
  target's values at the forecast timestamps (`forecast_scores`); a monitor's alerts against
  the events that the readings after each prediction show.

`judge` compares the realised figure with the registered one (the model's test metric of the
same name): worse by more than `drift.accuracy_margin` (a share of the registered value) is
`degraded`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rnnpipe.config import DriftConfig
from rnnpipe.errors import DataError

STATUSES = ("ok", "degraded")


@dataclass
class LabelTally:
    """(truth, prediction) counts of the labelled rows of a classifier's batch job."""

    truth: str  # the input column with the true labels
    classes: list[str]
    pairs: Counter = field(default_factory=Counter)

    def __call__(self, inputs: pd.DataFrame, outputs: pd.DataFrame, chunk: pd.DataFrame) -> None:
        if self.truth not in chunk.columns:
            return
        y = chunk[self.truth].reset_index(drop=True)
        known = y.notna() & outputs["label"].reset_index(drop=True).notna()
        if known.any():
            pairs = zip(y[known].astype(str), outputs["label"].reset_index(drop=True)[known].astype(str))
            self.pairs.update(pairs)

    def reset(self) -> None:
        self.pairs = Counter()

    def merge(self, other: LabelTally) -> LabelTally:
        self.pairs.update(other.pairs)
        return self

    def scores(self) -> dict[str, float]:
        """`macro_f1`, `accuracy` and `rows` of the labelled rows (scikit-learn's, on the counts)."""
        from sklearn.metrics import accuracy_score, f1_score

        if not self.pairs:
            return {}
        (truth, pred), weight = zip(*self.pairs.keys()), np.array(list(self.pairs.values()), float)
        truth, pred = np.array(truth), np.array(pred)
        out = {
            "macro_f1": float(f1_score(truth, pred, labels=self.classes, average="macro", sample_weight=weight)),
            "accuracy": float(accuracy_score(truth, pred, sample_weight=weight)),
            "rows": float(weight.sum()),
        }
        unknown = sorted(set(truth) - set(self.classes))
        if unknown:
            out["unknown_label_rows"] = float(weight[np.isin(truth, unknown)].sum())
        return out


def forecast_scores(output: pd.DataFrame, actuals: pd.DataFrame, keys: list[str], target: str) -> dict[str, float]:
    """A forecaster's job output joined with the `actuals` (the history's columns: `keys` =
    [series,] timestamp, and `target`) on its keys: `mae`, `rmse`, `coverage_80` (with the
    q0.1 / q0.9 columns) and `rows` matched."""
    out = output.copy()
    truth = actuals[[*keys, target]].dropna(subset=[target]).copy()
    for k in keys:  # both sides' keys as text, times as datetimes
        if k == keys[-1]:
            out[k], truth[k] = pd.to_datetime(out[k]), pd.to_datetime(truth[k])
        else:
            out[k], truth[k] = out[k].astype(str), truth[k].astype(str)
    joined = out.merge(truth.drop_duplicates(subset=keys), on=keys, how="inner")
    if joined.empty:
        return {"rows": 0.0}
    err = joined["forecast"].to_numpy(float) - joined[target].to_numpy(float)
    scores = {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))), "rows": float(len(err))}
    if {"q0.1", "q0.9"} <= set(joined.columns):
        y = joined[target].to_numpy(float)
        scores["coverage_80"] = float(np.mean((y >= joined["q0.1"].to_numpy(float)) & (y <= joined["q0.9"])))
    return scores


def read_actuals(path: str | Path, columns: list[str], what: str) -> pd.DataFrame:
    """The actuals file (CSV, Parquet, JSON Lines) with the model's `columns`, checked before
    the job; `what` says what they hold, for the error."""
    from rnnpipe.io import open_dataset

    dataset, _ = open_dataset(path, "auto")
    missing = [c for c in columns if c not in dataset.schema.names]
    if missing:
        raise DataError(
            f"{path}: column {missing[0]!r} not found (columns: {', '.join(dataset.schema.names)}); "
            f"--actuals holds {', '.join(columns)}: {what}"
        )
    return dataset.to_table(columns=columns).to_pandas()


@dataclass
class Realised:
    """A job's realised scores against the registered ones."""

    scores: dict[str, float]
    registered: dict[str, float]  # score -> the model's test figure
    greater_is_better: dict[str, bool]
    margin: float
    source: str  # "labelled rows" / the actuals file

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for name, value in self.scores.items():
            ref = self.registered.get(name)
            if ref is None or not np.isfinite(ref) or ref == 0:
                continue
            change = value / ref - 1
            worse = -change if self.greater_is_better[name] else change
            status = "degraded" if worse > self.margin else "ok"
            out.append({"score": name, "realised": value, "registered": ref, "change": change, "status": status})
        return out

    @property
    def status(self) -> str:
        rows = self.rows()
        if not rows or not self.scores.get("rows"):
            return "not judged"
        return "degraded" if any(r["status"] == "degraded" for r in rows) else "ok"

    def metrics(self) -> dict[str, float]:
        out = {f"realised_{k}": v for k, v in self.scores.items()}
        out.update({f"registered_{r['score']}": r["registered"] for r in self.rows()})
        return out

    def line(self) -> str:
        rows = self.rows()
        if self.status == "not judged":
            why = "no row could be scored" if not self.scores.get("rows") else "no registered score to compare"
            return f"realised: not judged ({why}; {self.source})"
        first = rows[0]
        return (
            f"realised: {self.status} ({first['score']} {first['realised']:.4g} on {int(self.scores['rows']):,} "
            f"{self.source} vs {first['registered']:.4g} at registration, {first['change']:+.1%}; "
            f"margin {self.margin:.0%})"
        )


def judge(
    scores: dict[str, float], registered_metrics: dict[str, float], profile: dict | None, source: str
) -> Realised:
    """The realised `scores` against the model's registered test metrics (`test_<score>`)."""
    saved = (profile or {}).get("thresholds", {})
    margin = saved.get("accuracy_margin", DriftConfig().accuracy_margin)
    registered = {k: registered_metrics[f"test_{k}"] for k in scores if f"test_{k}" in registered_metrics}
    greater = {k: k in ("macro_f1", "accuracy", "coverage_80", "f1", "precision", "recall") for k in scores}
    if "coverage_80" in registered:  # coverage is judged by its distance from 0.8, not as a score
        registered.pop("coverage_80")
    return Realised(scores, registered, greater, margin, source)
