"""Drift: what a model sees in production against what it learned from.

At training time each kind computes a **reference profile** of its training part (`profile`):
per input feature (a forecaster's channels, the monitor's readings, a text's token count and
unknown-word share) the distribution summarised on a fixed grid, the share missing, mean
and std; and the distribution of the model's own predictions on validation. It is a few
kilobytes of JSON logged with the model (artifact `profile`, `rnnpipe.registry`).

A batch job feeds every chunk's inputs and predictions to a `DriftCounter`: counts on the
reference's grid, so memory is bounded whatever the input size, and counters of the parts of
a job on a cluster add up (`merge`). `DriftCounter.report` then compares, per feature:

- the **population stability index** over the reference's deciles,
  PSI = sum_b (p_b - q_b) ln(p_b / q_b) (q: the reference's share of bin b, p: the batch's);
  for a categorical prediction (a class label) over its classes;
- the **two-sample Kolmogorov-Smirnov statistic**, max |F_ref - F_batch| evaluated on the
  reference's percentiles (within about 0.01 of `scipy.stats.ks_2samp` on the raw values,
  `tests/test_drift.py` checks it), with its asymptotic p-value from scipy's Kolmogorov
  distribution (with a million rows any shift is "significant": the status reads the PSI);
- the share of missing values against the reference's.

Each feature gets a status `ok | warn | drift` from `DriftConfig`'s thresholds (PSI 0.1 and
0.25: the usual rule of thumb of credit scoring, where PSI comes from), or `too few` when the
batch holds fewer than `drift.min_rows` values of it (not judged); the report's status is the
worst of its features'. The PSI thresholds start above the feature's **natural stray**,
measured on the reference itself when it is profiled: the largest PSI of one of
`drift.blocks` consecutive parts of the training data against the whole, less sampling noise
(`natural_psi`). A season, a calm year of a stock, one patient's records differ from the
whole training set by nature; a batch that differs no more than they do is data the model
learned from, and a batch that differs more is drift.

A PSI counts only where the shift is also beyond sampling noise (the KS test's p-value, or for
classes the chi-square test's, below `drift.max_p`): between two samples of a few hundred
values from one distribution PSI alone reaches 0.1-0.2 by chance (about (bins - 1)(1/n +
1/m)), while with a million rows the test finds any shift and the PSI says whether it matters.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rnnpipe.config import DriftConfig

log = logging.getLogger(__name__)

PROFILE_VERSION = 1
GRID = np.linspace(0.0, 1.0, 101)  # the percentiles a numeric reference is summarised on
GROUP_GRID = np.linspace(0.0, 1.0, 21)  # a series group's reference: every 5th percentile (smaller)
MAX_GROUPS = 30  # series profiled on their own (those with the most training rows)
DECILES = slice(10, 100, 10)  # the PSI's bins: the reference's deciles
SAMPLE_ROWS = 20_000  # at most this many rows of a part are profiled (a seeded sample)
MIN_BLOCK = 100  # the fewest values of a part of the reference whose stray is measured (natural_psi)
STATUSES = ("ok", "warn", "drift")
TABLE = (
    "feature",
    "group",
    "role",
    "status",
    "psi",
    "psi_natural",
    "ks",
    "ks_pvalue",
    "n",
    "missing_ref",
    "missing",
    "mean_ref",
    "mean",
)


def sample(values: np.ndarray, rows: int = SAMPLE_ROWS, seed: int = 0) -> np.ndarray:
    """At most `rows` of `values` (a seeded sample, in order)."""
    values = np.asarray(values)
    if len(values) <= rows:
        return values
    keep = np.sort(np.random.default_rng(seed).choice(len(values), rows, replace=False))
    return values[keep]


def _numeric(values: Any) -> np.ndarray:
    return pd.to_numeric(pd.Series(np.asarray(values).ravel()), errors="coerce").to_numpy(np.float64)


def reference(values: Any, categorical: bool = False, grid: np.ndarray = GRID, blocks: int = 0) -> dict[str, Any]:
    """One feature's reference: the grid of its distribution (numeric) or its classes' shares;
    for a numeric one, with `blocks`, how far its own parts stray from it (`natural_psi`)."""
    if categorical:
        s = pd.Series(np.asarray(values, dtype=object).ravel())
        missing = s.isna()
        shares = s[~missing].astype(str).value_counts(normalize=True).sort_index()
        return {
            "type": "categorical",
            "n": int(len(s)),
            "missing": float(missing.mean()) if len(s) else 0.0,
            "shares": {str(k): float(v) for k, v in shares.items()},
        }
    x = _numeric(values)
    finite = x[np.isfinite(x)]
    if not len(finite):
        return {
            "type": "numeric",
            "n": int(len(x)),
            "missing": 1.0,
            "edges": [],
            "cdf": [],
            "mean": None,
            "std": None,
            "psi_natural": 0.0,
        }
    edges = np.unique(np.quantile(finite, grid))
    # the reference's own share at or below each edge (exact, ties included), and the PSI bins
    cdf = np.searchsorted(np.sort(finite), edges, side="right") / len(finite)
    return {
        "type": "numeric",
        "n": int(len(x)),
        "missing": float(1 - len(finite) / len(x)),
        "edges": edges.tolist(),
        "cdf": cdf.tolist(),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "psi_natural": natural_psi(finite, edges, cdf, blocks),
    }


def _decile_cut(cdf: np.ndarray) -> np.ndarray:
    """The indices of a reference's edges that bound its PSI bins (its deciles)."""
    cut = np.unique(np.searchsorted(cdf, GRID[DECILES] - 1e-9))
    return cut[cut < len(cdf) - 1]


def natural_psi(values: np.ndarray, edges: np.ndarray, cdf: np.ndarray, blocks: int) -> float:
    """How far the reference's own parts stray from it: the largest PSI, over the reference's
    deciles, of one of `blocks` consecutive parts of `values` (in the order given: time within
    a series, then series or records) against all of them, less the PSI that sampling alone
    gives a part of its size ((bins - 1)(1/part + 1/all)); 0 with fewer than two parts of
    `MIN_BLOCK` values. A batch that differs from the training data no more than one of its
    own parts does (a season, a calm year, one patient's records) is what the model learned
    from; the report's thresholds start above it."""
    blocks = min(int(blocks), len(values) // MIN_BLOCK)
    if blocks < 2 or len(edges) < 2:
        return 0.0
    cut = _decile_cut(cdf)
    bin_edges = edges[cut]
    expected = np.diff(np.concatenate([[0.0], cdf[cut], [1.0]]))
    worst = 0.0
    for part in np.array_split(values, blocks):
        below = np.searchsorted(np.sort(part), bin_edges, side="right") / len(part)
        actual = np.diff(np.concatenate([[0.0], below, [1.0]]))
        noise = (len(expected) - 1) * (1 / len(part) + 1 / len(values))
        worst = max(worst, _psi(expected, actual) - noise)
    return float(worst)


def profile(
    features: dict[str, Any],
    predictions: dict[str, Any],
    settings: DriftConfig,
    categorical: tuple[str, ...] = (),
    meta: dict[str, Any] | None = None,
    groups: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A model's reference profile: its training part's `features`, its `predictions` on
    validation (names in `categorical` are class labels), the thresholds and `meta` (what was
    profiled: rows, sampling); with `groups` (series id -> its own numeric features), each of
    the `MAX_GROUPS` largest series on a coarser grid too, so that one series' shift is seen
    where the pooled figures hide it."""
    out = {
        "profile_version": PROFILE_VERSION,
        "features": {k: reference(v, k in categorical, blocks=settings.blocks) for k, v in features.items()},
        "predictions": {k: reference(v, k in categorical, blocks=settings.blocks) for k, v in predictions.items()},
        "thresholds": {k: getattr(settings, k) for k in DriftConfig.__dataclass_fields__},
        "meta": meta or {},
    }
    if groups and len(groups) > 1:
        size = {g: max(len(np.asarray(v)) for v in fs.values()) for g, fs in groups.items()}
        largest = sorted(groups, key=lambda g: (-size[g], str(g)))[:MAX_GROUPS]
        out["groups"] = {
            str(g): {
                k: reference(v, grid=GROUP_GRID, blocks=settings.blocks)
                for k, v in groups[g].items()
                if k not in categorical
            }
            for g in largest
        }
    return out


@dataclass
class _Counts:
    counts: np.ndarray  # values per cell: [<= edge 0, (edge 0, edge 1], ..., > last edge]
    missing: int = 0
    total: int = 0
    total_sum: float = 0.0

    def merge(self, other: _Counts) -> None:
        self.counts += other.counts
        self.missing += other.missing
        self.total += other.total
        self.total_sum += other.total_sum


@dataclass
class DriftCounter:
    """Counts of a batch's features and predictions on the grid of a reference profile:
    bounded memory, mergeable across the parts of a job."""

    profile: dict[str, Any]
    counts: dict[str, _Counts] = field(default_factory=dict)
    levels: dict[str, dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, ref in self._refs():
            if ref["type"] == "numeric":
                self.counts.setdefault(key, _Counts(np.zeros(len(ref["edges"]) + 1, np.int64)))
            else:
                self.levels.setdefault(key, {})

    def _refs(self):
        """(key, reference) of every profiled quantity; a key is (role, group, name), the
        group "" for the pooled figures."""
        for role in ("features", "predictions"):
            for name, ref in self.profile.get(role, {}).items():
                yield (role, "", name), ref
        for group, refs in self.profile.get("groups", {}).items():
            for name, ref in refs.items():
                yield ("features", group, name), ref

    def _count(self, key: tuple[str, str, str], v: Any) -> None:
        role, group, name = key
        if key in self.counts:
            x = _numeric(v)
            ok = np.isfinite(x)
            c = self.counts[key]
            ref = self.profile["groups"][group][name] if group else self.profile[role][name]
            edges = np.asarray(ref["edges"])
            c.counts += np.bincount(np.searchsorted(edges, x[ok], side="left"), minlength=len(c.counts))
            c.missing += int((~ok).sum())
            c.total += len(x)
            c.total_sum += float(x[ok].sum())
        elif key in self.levels:
            s = pd.Series(np.asarray(v, dtype=object).ravel())
            counts = self.levels[key]
            counts["\0missing"] = counts.get("\0missing", 0) + int(s.isna().sum())
            for level, n in s.dropna().astype(str).value_counts().items():
                counts[str(level)] = counts.get(str(level), 0) + int(n)

    def update(self, features: dict[str, Any], predictions: dict[str, Any], groups: Any = None) -> None:
        """Count one chunk's values (names as in the profile; others are ignored); `groups`,
        the series id of each feature value, counts the profiled series on their own too."""
        for role, values in (("features", features), ("predictions", predictions)):
            for name, v in values.items():
                self._count((role, "", name), v)
        profiled = self.profile.get("groups", {})
        if groups is None or not profiled:
            return
        # series ids as codes into their names (a Categorical is taken as it is: no string per row)
        cat = groups if isinstance(groups, pd.Categorical) else pd.Categorical(np.asarray(groups).ravel())
        for code, group in enumerate(cat.categories):
            if str(group) in profiled:
                rows = cat.codes == code
                for name, v in features.items():
                    self._count(("features", str(group), name), np.asarray(v)[rows])

    def merge(self, other: DriftCounter) -> DriftCounter:
        for k, c in other.counts.items():
            self.counts[k].merge(c)
        for k, levels in other.levels.items():
            mine = self.levels[k]
            for level, n in levels.items():
                mine[level] = mine.get(level, 0) + n
        return self

    def report(self) -> DriftReport:
        from scipy.stats import kstwo

        saved = self.profile.get("thresholds", {})  # a newer rnnpipe may have saved more settings
        t = DriftConfig(**{k: v for k, v in saved.items() if k in DriftConfig.__dataclass_fields__})
        rows = []
        for key, ref in self._refs():
            role, group, name = key
            if ref["type"] == "numeric":
                row = _numeric_row(ref, self.counts[key], t, kstwo)
            else:
                row = _categorical_row(ref, self.levels[key], t)
            rows.append({"feature": name, "group": group, "role": role[:-1], **row})
        # worst first; at one status, the pooled figures before a single series'
        rows.sort(
            key=lambda r: (
                -STATUSES.index(r["status"]) if r["status"] in STATUSES else 1,
                bool(r["group"]),
                -(r["psi"] or 0),
            )
        )
        return DriftReport(rows)


class Watch:
    """A batch job's drift counting: each chunk's inputs and predictions through the
    artefact's `drift_values(inputs, outputs) -> (features, predictions)` into a counter. A
    failure here never fails the job: the report then says it was not computed, and why."""

    def __init__(self, pipeline: Any, profile: dict[str, Any]):
        self.values = pipeline.drift_values
        self.counter: DriftCounter | None = DriftCounter(profile)
        self.profile, self.error = profile, ""

    @classmethod
    def of(cls, pipeline: Any, profile: dict[str, Any] | None) -> Watch | None:
        """The watch of a model, or None when it has no reference profile."""
        if not profile or not hasattr(pipeline, "drift_values"):
            return None
        return cls(pipeline, profile)

    def __call__(self, inputs: pd.DataFrame, outputs: pd.DataFrame, chunk: pd.DataFrame | None = None) -> None:
        if self.counter is None:
            return
        try:
            features, predictions, *groups = self.values(inputs, outputs)
            self.counter.update(features, predictions, groups[0] if groups else None)
        except Exception as exc:  # noqa: BLE001 - the predictions matter more than their drift report
            self.counter, self.error = None, f"{type(exc).__name__}: {exc}"
            log.warning("drift report not computed: %s", self.error)

    def reset(self) -> None:
        self.counter, self.error = DriftCounter(self.profile), ""


def _status(psi: float, pvalue: float, missing_rise: float, n: int, t: DriftConfig, natural: float = 0.0) -> str:
    """drift / warn when the PSI passes its threshold, raised by how far the reference's own
    parts stray from it (`natural`), and the shift is beyond sampling noise (`pvalue` <
    max_p); or when the share of missing values rises past its threshold."""
    if n < t.min_rows:
        return "too few"
    shifted = pvalue < t.max_p
    if (shifted and psi >= t.psi_drift + natural) or missing_rise >= t.missing_drift:
        return "drift"
    if (shifted and psi >= t.psi_warn + natural) or missing_rise >= t.missing_warn:
        return "warn"
    return "ok"


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    q = np.clip(expected, 1e-4, None)
    p = np.clip(actual, 1e-4, None)
    return float(np.sum((p - q) * np.log(p / q)))


def _numeric_row(ref: dict[str, Any], c: _Counts, t: DriftConfig, kstwo) -> dict[str, Any]:
    n = int(c.counts.sum())
    missing = c.missing / c.total if c.total else 0.0
    row: dict[str, Any] = {
        "n": n,
        "missing_ref": ref["missing"],
        "missing": missing,
        "mean_ref": ref["mean"],
        "mean": c.total_sum / n if n else None,
    }
    if not ref["edges"] or not n:
        return {
            **row,
            "psi": None,
            "psi_natural": None,
            "ks": None,
            "ks_pvalue": None,
            "status": "too few" if not n else "ok",
        }
    ref_cdf = np.asarray(ref["cdf"])
    new_cdf = np.cumsum(c.counts)[:-1] / n  # share at or below each edge
    ks = float(np.max(np.abs(new_cdf - ref_cdf)))
    m = ref["n"] * (1 - ref["missing"])
    pvalue = float(kstwo.sf(ks, max(1, round(n * m / (n + m)))))
    # PSI over the deciles: cells (edges[i-1], edges[i]] grouped at the decile edges
    cut = _decile_cut(ref_cdf)
    expected = np.diff(np.concatenate([[0.0], ref_cdf[cut], [1.0]]))
    actual = np.diff(np.concatenate([[0.0], new_cdf[cut], [1.0]]))
    # values beyond the reference's range fall in the outer bins; a share above 1 cannot occur
    psi = _psi(expected, actual)
    row.update(psi=psi, ks=ks, ks_pvalue=pvalue, bins_ref=expected.tolist(), bins=actual.tolist())
    row["bin_edges"] = [ref["edges"][i] for i in cut]
    natural = float(ref.get("psi_natural", 0.0))  # 0 in profiles saved before it was measured
    row.update(psi_natural=natural, status=_status(psi, pvalue, missing - ref["missing"], n, t, natural))
    return row


def _categorical_row(ref: dict[str, Any], counts: dict[str, int], t: DriftConfig) -> dict[str, Any]:
    missing_n = counts.get("\0missing", 0)
    seen = {k: v for k, v in counts.items() if k != "\0missing"}
    n = sum(seen.values())
    total = n + missing_n
    levels = sorted(set(ref["shares"]) | set(seen))
    expected = np.array([ref["shares"].get(k, 0.0) for k in levels])
    actual = np.array([seen.get(k, 0) / n if n else 0.0 for k in levels])
    psi = _psi(expected, actual) if n else None
    missing = missing_n / total if total else 0.0
    pvalue = _chi2_pvalue(expected * ref["n"] * (1 - ref["missing"]), actual * n) if n else 1.0
    return {
        "n": n,
        "missing_ref": ref["missing"],
        "missing": missing,
        "mean_ref": None,
        "mean": None,
        "psi": psi,
        "psi_natural": None,
        "ks": None,
        "ks_pvalue": None,
        "chi2_pvalue": pvalue,
        "bins_ref": expected.tolist(),
        "bins": actual.tolist(),
        "bin_edges": levels,
        "status": _status(psi or 0.0, pvalue, missing - ref["missing"], n, t),
    }


def _chi2_pvalue(reference: np.ndarray, batch: np.ndarray) -> float:
    """The chi-square test of homogeneity of two samples' class counts (scipy)."""
    from scipy.stats import chi2_contingency

    table = np.vstack([reference, batch])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(chi2_contingency(table).pvalue)


@dataclass
class DriftReport:
    """Per feature and prediction: PSI, KS, missing shares and a status, worst first."""

    rows: list[dict[str, Any]]

    @property
    def status(self) -> str:
        judged = [r["status"] for r in self.rows if r["status"] in STATUSES]
        return max(judged, key=STATUSES.index) if judged else "ok"

    def line(self) -> str:
        """The one line a batch job ends with."""
        judged = [r for r in self.rows if r["status"] in STATUSES]
        if not self.rows:
            return "drift: not judged (the model has no reference profile)"
        if not judged:
            return f"drift: not judged (fewer than the minimum of values in all {len(self.rows)} figures)"
        worst = judged[0]
        of = f" of series {worst['group']!r}" if worst["group"] else ""
        where = f"; worst {worst['role']} {worst['feature']!r}{of}: PSI {_fmt(worst['psi'])}, KS {_fmt(worst['ks'])}"
        pooled = [r for r in self.rows if not r["group"]]
        counted = f"{sum(1 for r in judged if not r['group'])} of {len(pooled)} features judged"
        groups = len({r["group"] for r in self.rows if r["group"]})
        if groups:
            counted += f", and {groups} series on their own"
        return f"drift: {self.status} ({counted}{where})"

    def metrics(self) -> dict[str, float]:
        """MLflow metrics: `drift_psi.<feature>`, `drift_ks.<feature>`, `drift_status` (0 ok,
        1 warn, 2 drift)."""
        out: dict[str, float] = {"drift_status": float(STATUSES.index(self.status))}
        for r in self.rows:
            key = _metric_key(r["feature"], r["role"], r["group"])
            for score in ("psi", "ks"):
                if r[score] is not None and math.isfinite(r[score]):
                    out[f"drift_{score}.{key}"] = r[score]
        return out

    def table(self) -> list[dict[str, Any]]:
        return [{k: (round(r[k], 5) if isinstance(r[k], float) else r[k]) for k in TABLE} for r in self.rows]

    def figures(self) -> dict[str, Any]:
        """One plot per feature that is not `ok`: its bins' shares, reference against batch."""
        from rnnpipe.evaluation import subplots

        out = {}
        for r in self.rows:
            if r["status"] not in ("warn", "drift") or not r.get("bins"):
                continue
            fig, ax = subplots(figsize=(7, 3.8))
            k = np.arange(len(r["bins"]))
            ax.bar(k - 0.2, r["bins_ref"], 0.4, label="reference (training)")
            ax.bar(k + 0.2, r["bins"], 0.4, label="this batch")
            edges = r["bin_edges"]
            if r["ks"] is None:  # classes
                ax.set_xticks(k, [str(e) for e in edges], fontsize=8)
            else:
                ax.set_xticks(k, [f"<={_fmt(e)}" for e in edges] + [f">{_fmt(edges[-1])}"], fontsize=7, rotation=30)
            ax.set_ylabel("share")
            of = f" of series {r['group']}" if r["group"] else ""
            ax.set_title(f"{r['role']} {r['feature']}{of}: {r['status']} (PSI {_fmt(r['psi'])})")
            ax.legend(fontsize=8)
            fig.tight_layout()
            out[f"drift/{_metric_key(r['feature'], r['role'], r['group'])}.png"] = fig
        return out

    def to_json(self) -> str:
        return json.dumps({"status": self.status, "features": self.table()}, indent=2)


def _metric_key(name: str, role: str, group: str = "") -> str:
    def clean(text: str) -> str:
        return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in text)

    key = f"prediction.{clean(name)}" if role == "prediction" else clean(name)
    return f"{key}.series_{clean(group)}" if group else key


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3g}"
