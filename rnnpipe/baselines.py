"""Classical baselines, scored on the same data as the recurrent models.

Early warning (windows of readings):

- majority: always the most frequent class of the training windows;
- rule: a threshold on the last reading of the event's channel (the threshold is chosen on
  validation like the model's);
- logreg: logistic regression on window summary statistics (last, mean, min, max, slope, std
  of each channel).

Each exposes `fit(inputs, ends, y)` on training windows and `score(inputs, ends)`: higher
means more likely an event.

Forecasting: `RidgeForecast` on the forecaster's scaled window (alpha chosen on validation);
`GradientBoostingForecast` on the same window and the inputs known in advance;
`StatisticalForecast`, StatsForecast's AutoETS / AutoTheta / AutoARIMA / SeasonalNaive per
series, fitted on the training part only. Text classification: `TfidfLogisticRegression`
(word 1-2 grams) and `MajorityClass`, each with `fit(texts, y)` and `predict_proba(texts)`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rnnpipe import models
from rnnpipe.features.targets import TargetEncoding


def window_summary(values: np.ndarray, ends: np.ndarray, lookback: int) -> np.ndarray:
    """(N, 6 * C): last, mean, min, max, least-squares slope and std of each channel of the
    windows ending at rows `ends` (the same statistics the wide part of a classifier reads)."""
    w = torch.from_numpy(
        np.ascontiguousarray(values[ends[:, None] + np.arange(-lookback + 1, 1)], dtype=np.float64)
    )  # (N, L, C)
    return models.window_summary(w).numpy()


class MajorityBaseline:
    name = "majority"

    def fit(self, values, ends, y):
        self.label_ = float(np.mean(y) > 0.5)
        return self

    def score(self, values, ends):
        return np.full(len(ends), self.label_)


class LastReadingRule:
    """Score = the last reading of one channel, signed so that higher means "event"."""

    name = "rule"

    def __init__(self, column: int, sign: float):
        self.column, self.sign = column, sign

    def fit(self, values, ends, y):
        return self

    def score(self, values, ends):
        return self.sign * values[ends, self.column]


class SummaryLogisticRegression:
    name = "logreg"

    def __init__(self, lookback: int, class_weight: str | None = "balanced", seed: int = 0):
        self.lookback = lookback
        self.model = make_pipeline(
            StandardScaler(), LogisticRegression(class_weight=class_weight, max_iter=2000, random_state=seed)
        )

    def fit(self, values, ends, y):
        self.model.fit(window_summary(values, ends, self.lookback), y)
        return self

    def score(self, values, ends):
        return self.model.decision_function(window_summary(values, ends, self.lookback))


RIDGE_PENALTIES = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)  # alpha / training rows


def fit_ridge(
    X: np.ndarray, Y: np.ndarray, Xv: np.ndarray, Yv: np.ndarray, penalties: tuple[float, ...] = RIDGE_PENALTIES
) -> tuple[Ridge, float, float]:
    """Ridge regression of Y on X (train), its penalty chosen by the mean squared error on
    (Xv, Yv) (validation). The penalty is relative to the number of training rows (alpha =
    penalty x rows), so on standardised features it means the same at any data size.
    -> (fitted model, penalty, validation MSE)."""
    import warnings

    from scipy.linalg import LinAlgWarning

    best = None
    for penalty in penalties:
        with warnings.catch_warnings():  # the smallest penalties on collinear inputs: validation judges them
            warnings.simplefilter("ignore", LinAlgWarning)
            model = Ridge(alpha=penalty * len(X)).fit(X, Y)
        mse = float(np.mean((model.predict(Xv).reshape(Yv.shape) - Yv) ** 2))
        if best is None or mse < best[2]:
            best = (model, penalty, mse)
    return best


class RidgeForecast:
    """Ridge regression on the forecaster's own inputs: the scaled window of every input
    channel, and the inputs known for the forecast steps -> the scaled targets of every step
    ahead (the same encoding the recurrent model learns, so it is a linear model of the same
    inputs), decoded like the model's output. The penalty is chosen on validation windows
    (`fit_ridge`). The linear part of a forecaster (`model.highway=linear`) starts from this
    same fit."""

    name = "ridge"

    def __init__(self, lookback: int, horizon: int = 1):
        self.lookback, self.horizon = lookback, horizon

    def _x(self, inputs: np.ndarray, ends: np.ndarray, future: np.ndarray | None = None) -> np.ndarray:
        x = inputs[ends[:, None] + np.arange(-self.lookback + 1, 1)].reshape(len(ends), -1)
        if future is None or not future.shape[1]:
            return x
        return np.hstack([x, future[ends[:, None] + 1 + np.arange(self.horizon)].reshape(len(ends), -1)])

    def fit(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        train_ends: np.ndarray,
        val_ends: np.ndarray,
        future: np.ndarray | None = None,
    ) -> RidgeForecast:
        self.model, self.penalty_, _ = fit_ridge(
            self._x(inputs, train_ends, future),
            targets[train_ends],
            self._x(inputs, val_ends, future),
            targets[val_ends],
        )
        return self

    def predict(self, inputs: np.ndarray, ends: np.ndarray, future: np.ndarray | None = None) -> np.ndarray:
        """Scaled outputs (N, H), like the recurrent model's."""
        return self.model.predict(self._x(inputs, ends, future)).reshape(len(ends), -1)

    def forecast(self, prepared, ends: np.ndarray) -> np.ndarray:
        """Forecasts (N, H) in the target's units for the windows ending at `ends`."""
        return prepared.preprocessor.decode(self.predict(prepared.inputs, ends, prepared.future), prepared.frame, ends)


class GradientBoostingForecast:
    """Gradient boosting on the forecaster's own inputs, the practitioner's strongest
    non-neural baseline on seasonal data with covariates (the M5 winners' recipe):
    scikit-learn's `HistGradientBoostingRegressor`, one model for every step ahead with the
    step as a feature, early stopping on the validation windows.

    A row is one (window, step h) pair, its target the model's own scaled target of step h
    as a change from the window's last value (trees do not extrapolate a level outside the
    training years' range), decoded like the model's output. Its features, all from the window and the inputs known
    for the step (nothing after the window's last row but those):
    - the target's level relative to the window's last value, `lags` steps back and at one
      and two seasons back (`window.season`), and at h steps less than a season back (the
      seasonal naive forecast of step h, relative);
    - the window's mean and std of the target channel, the last value of every input channel
      (extra features, known features and calendar at the window's end);
    - the inputs known in advance at step h (calendar, known features) and h itself.
    At most `max_rows` training rows (a seeded sample of the pairs) and `max_rows // 4`
    validation rows.
    """

    name = "gbm"

    def __init__(
        self,
        lookback: int,
        horizon: int,
        centered: bool,
        season: int = 0,
        lags: int = 24,
        max_rows: int = 200_000,
        seed: int = 0,
    ):
        self.lookback, self.horizon, self.centered = lookback, horizon, centered
        self.season, self.lags, self.max_rows, self.seed = season, lags, max_rows, seed

    def _relative(self, x0: np.ndarray) -> np.ndarray:
        """(N, L) windows of the target channel -> (N, L): column k-1 holds the level k steps
        before the window's last one minus its last level (k = 1..L-1; the last column 0)."""
        if self.centered:  # level inputs
            rel = x0[:, ::-1] - x0[:, -1:]
            return np.concatenate([rel[:, 1:], np.zeros((len(x0), 1))], axis=1)
        return -np.cumsum(x0[:, ::-1], axis=1)  # the sum of the last k changes, negated

    def _design(
        self, inputs: np.ndarray, future: np.ndarray | None, ends: np.ndarray, future_starts: np.ndarray | None = None
    ) -> np.ndarray:
        """(N x H, F) features, rows window-major (window n, step h at n * H + h - 1)."""
        L, H = self.lookback, self.horizon
        W = inputs[ends[:, None] + np.arange(-L + 1, 1)]  # (N, L, C)
        rel = self._relative(W[:, :, 0].astype(np.float64))  # (N, L)
        m = self.season if 2 <= self.season < L else 0  # a season the window reaches back over
        lags = sorted({k for k in range(1, min(L, self.lags + 1))} | {k for k in (m, 2 * m) if 0 < k < L})
        per_window = np.column_stack(
            [rel[:, [k - 1 for k in lags]], W[:, :, 0].mean(1), W[:, :, 0].std(1), W[:, -1, :]]
        )
        rows = [np.repeat(per_window, H, axis=0)]
        steps = np.tile(np.arange(1, H + 1), len(ends))
        if m:  # the seasonal naive forecast of step h: the level at t + h - m (or - 2m), relative
            back = np.where(steps <= m, m - steps, 2 * m - steps)
            ok = (back >= 1) & (back < L)
            snaive = np.where(ok, rel[np.repeat(np.arange(len(ends)), H), np.clip(back - 1, 0, L - 1)], np.nan)
            rows.append(snaive[:, None])
        if future is not None and future.shape[1]:
            start = ends + 1 if future_starts is None else future_starts
            rows.append(future[(start[:, None] + np.arange(H)).reshape(-1)])
        rows.append(steps[:, None])
        return np.column_stack(rows).astype(np.float32)

    def _sample(self, n_windows: int, limit: int, rng: np.random.Generator) -> np.ndarray:
        rows = n_windows * self.horizon
        return np.arange(rows) if rows <= limit else np.sort(rng.choice(rows, limit, replace=False))

    def fit(self, prepared) -> GradientBoostingForecast:
        import time

        from sklearn.ensemble import HistGradientBoostingRegressor

        t0 = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        parts = {}
        for part, limit in (("train", self.max_rows), ("val", self.max_rows // 4)):
            ends = prepared.ends[part]
            keep = self._sample(len(ends), limit, rng)
            X = self._design(prepared.inputs, prepared.future, ends)[keep]
            y = (prepared.targets[ends] - self._last(prepared.inputs, ends)).reshape(-1)[keep]
            parts[part] = (X, y)
        self.model = HistGradientBoostingRegressor(
            max_iter=1000,
            learning_rate=0.05,
            max_leaf_nodes=31,
            min_samples_leaf=40,
            early_stopping=True,
            n_iter_no_change=30,
            random_state=self.seed,
        )
        self.model.fit(*parts["train"], X_val=parts["val"][0], y_val=parts["val"][1])
        self.fit_seconds_ = time.perf_counter() - t0
        self.fallback_series: list[str] = []
        return self

    def _last(self, inputs: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """(N, 1) what a change is measured from in the scaled target: the window's last level
        for level targets, 0 for targets that are changes already."""
        return inputs[ends, :1].astype(np.float64) if self.centered else np.zeros((len(ends), 1))

    def predict(
        self, inputs: np.ndarray, future: np.ndarray | None, ends: np.ndarray, future_starts: np.ndarray | None = None
    ) -> np.ndarray:
        """Scaled outputs (N, H), like the recurrent model's."""
        X = self._design(inputs, future, ends, future_starts)
        return self.model.predict(X).reshape(len(ends), self.horizon) + self._last(inputs, ends)

    def forecast(self, prepared, ends: np.ndarray) -> np.ndarray:
        """Forecasts (N, H) in the target's units for the windows ending at `ends`."""
        out = self.predict(prepared.inputs, prepared.future, ends)
        return prepared.preprocessor.decode(out, prepared.frame, ends)


STATISTICAL = ("autoets", "autotheta", "autoarima", "seasonalnaive")


def _statsforecast_model(name: str, season: int):
    from statsforecast import models as sf

    m = max(int(season), 1)
    return {
        "autoets": lambda: sf.AutoETS(season_length=m),
        "autotheta": lambda: sf.AutoTheta(season_length=m),
        "autoarima": lambda: sf.AutoARIMA(season_length=m),
        "seasonalnaive": lambda: sf.SeasonalNaive(season_length=m),
    }[name]()


class StatisticalForecast:
    """A StatsForecast model (Nixtla) per series, fitted on that series' training part only
    (its last `history` points), forecasting `horizon` steps from every origin it is asked
    about.

    From an origin the fitted model is applied, with its parameters fixed, to the series'
    history up to and including the origin (StatsForecast's `forward`: no refit, nothing
    after the origin is read), at most its last `forward_history` points (0: all; by
    default `history`, the points the fit reads). The cap is an
    approximation for speed: `forward` re-reads the whole history at every origin (AutoTheta
    also re-estimates its trend line on it), which costs O(length) per origin, 47 ms for
    AutoTheta at 8,000 points, and fitting AutoTheta to long series is slower still (153 s
    for the bundled glucose patients' whole training parts). Gaps (NaN) in the history are
    filled by linear interpolation between the readings around them, which all lie before the
    origin. A series the model
    cannot be fitted to (too short, constant) gets the naive forecast, counted in
    `fallback_series`.
    """

    def __init__(self, name: str, season: int = 0, history: int = 3000, forward_history: int | None = None):
        if name not in STATISTICAL:
            raise ValueError(f"statistical baseline {name!r}: expected one of {', '.join(STATISTICAL)}")
        if name == "seasonalnaive" and season < 2:
            raise ValueError("seasonalnaive needs window.season >= 2")
        self.name, self.season, self.history = name, season, history
        # the points read from each origin (None: `history`, as the fit)
        self.forward_history = history if forward_history is None else forward_history
        self.models_: dict[int, object] = {}
        self.fallback_series: list[str] = []
        self.fit_seconds_ = 0.0

    @staticmethod
    def _filled(y: np.ndarray) -> np.ndarray:
        bad = np.isnan(y)
        if not bad.any():
            return y
        idx = np.arange(len(y))
        out = y.copy()
        out[bad] = np.interp(idx[bad], idx[~bad], y[~bad])
        return out

    def fit(self, frame, split) -> StatisticalForecast:
        import time
        import warnings

        t0 = time.perf_counter()
        for i, (lo, train_end, _, _) in enumerate(split.bounds):
            y = frame.target[max(lo, train_end - self.history) if self.history else lo : train_end]
            train = self._filled(y) if (~np.isnan(y)).any() else y
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if len(train) < max(2 * max(self.season, 1), 4) or np.isnan(train).any():
                        raise ValueError("too short")
                    self.models_[i] = _statsforecast_model(self.name, self.season).fit(train)
            except Exception:  # noqa: BLE001 - any model failure: naive for this series
                self.fallback_series.append(frame.series[i])
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def forecast(self, prepared, ends: np.ndarray) -> np.ndarray:
        """Forecasts (N, H) in the target's units from the origins `ends` (row indices)."""
        return self.forecast_with_quantiles(prepared, ends)[0]

    def forecast_with_quantiles(self, prepared, ends: np.ndarray, quantiles=()) -> tuple[np.ndarray, np.ndarray | None]:
        """Point forecasts (N, H) and, for `quantiles`, the model's own prediction intervals
        read as quantiles (N, H, Q): level q < 0.5 is the lower end of the (1 - 2q) interval,
        q > 0.5 the upper end of the (2q - 1) one, 0.5 the mean. Naive fallbacks (and
        origins where the model gives no finite interval) get NaN quantiles."""
        import warnings

        frame, H = prepared.frame, prepared.preprocessor.horizon
        index = np.searchsorted(frame.offsets, ends, side="right") - 1
        out = np.repeat(frame.target[ends][:, None], H, axis=1).astype(np.float64)
        keys = [_interval_key(q) for q in quantiles]
        levels = sorted({int(k[3:]) for k in keys if k != "mean"})
        bands = np.full((len(ends), H, len(keys)), np.nan) if keys else None
        filled: dict[int, np.ndarray] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for j, (i, end) in enumerate(zip(index, ends)):
                model = self.models_.get(int(i))
                if model is None:
                    continue
                lo = int(frame.offsets[i])
                if i not in filled:  # interpolated per series once; a gap's neighbours precede any origin after it
                    filled[i] = self._filled(frame.target[lo : frame.offsets[i + 1]])
                first = end + 1 - self.forward_history if self.forward_history else lo
                y = filled[i][max(first, lo) - lo : end + 1 - lo]
                fc = model.forward(y, h=H, level=levels) if levels else model.forward(y, h=H)
                if np.isfinite(fc["mean"]).all():
                    out[j] = fc["mean"]
                    for k, key in enumerate(keys):
                        bands[j, :, k] = fc[key]
        if bands is not None:
            bands = np.sort(bands, axis=-1)  # NaN rows stay NaN (sorted last)
        return out, bands


def _interval_key(q: float) -> str:
    """The StatsForecast output column that is quantile q: `lo-80` for 0.1, `hi-80` for 0.9."""
    if abs(q - 0.5) < 1e-12:
        return "mean"
    level = round(100 * abs(2 * q - 1), 6)
    if level != int(level):
        raise ValueError(f"quantile {q}: StatsForecast intervals need whole-percent levels")
    return f"{'lo' if q < 0.5 else 'hi'}-{int(level)}"


class NaiveQuantiles:
    """The naive forecast with empirical quantiles: persistence for every step, and as its
    band the quantiles of persistence's own errors on the training and validation windows,
    per series and step ahead (pooled over series for one with no train or val window, such
    as a patient of the test part). Errors are taken as changes in the target's encoding (log
    returns for `log_return`, differences otherwise), so the band scales with the price
    as the model's does."""

    name = "naive"

    def __init__(self, quantiles):
        self.quantiles = tuple(quantiles)

    def _encoding(self, prepared) -> TargetEncoding:
        return TargetEncoding("log_return" if prepared.preprocessor.encoding.kind == "log_return" else "diff")

    def fit(self, prepared) -> NaiveQuantiles:
        frame, H = prepared.frame, prepared.preprocessor.horizon
        changes = self._encoding(prepared).encode(frame.target, frame.offsets, H)
        ends = np.concatenate([prepared.ends["train"], prepared.ends["val"]])
        index = np.searchsorted(frame.offsets, ends, side="right") - 1
        self.levels_ = np.full((len(frame.series), H, len(self.quantiles)), np.nan)
        pooled = changes[ends]  # for a series with no train or val window (a test patient)
        for i in range(len(frame.series)):
            err = changes[ends[index == i]]
            for h in range(H):
                e = err[:, h][np.isfinite(err[:, h])]
                if not len(e):
                    e = pooled[:, h][np.isfinite(pooled[:, h])]
                if len(e):
                    self.levels_[i, h] = np.quantile(e, self.quantiles)
        return self

    def forecast_with_quantiles(self, prepared, ends: np.ndarray, quantiles=()) -> tuple[np.ndarray, np.ndarray]:
        frame, H = prepared.frame, prepared.preprocessor.horizon
        index = np.searchsorted(frame.offsets, ends, side="right") - 1
        last = frame.target[ends].astype(np.float64)
        enc = self._encoding(prepared)
        bands = np.stack([enc.decode(self.levels_[index, :, k], last) for k in range(len(self.quantiles))], axis=-1)
        return np.repeat(last[:, None], H, axis=1), bands


class TfidfLogisticRegression:
    """TF-IDF of word unigrams and bigrams (sublinear tf, terms in 2+ training texts) and a
    multinomial logistic regression with inverse regularisation `C`. The fitted vectorizer
    is also the n-gram part of a wide-and-deep text classifier (`vectorizer_to_dict` keeps
    it in a model artefact as JSON)."""

    name = "tfidf"

    def __init__(self, C: float = 4.0, lowercase: bool = True, seed: int = 0):
        self.C, self.seed = C, seed
        self.vectorizer = make_tfidf_vectorizer(lowercase)
        self.model = LogisticRegression(C=C, max_iter=3000, random_state=seed)

    def fit(self, texts, y):
        return self.fit_features(self.vectorizer.fit_transform(texts), y)

    def fit_features(self, X, y):
        """Fit the regression on features of an already fitted vectorizer."""
        self.model = LogisticRegression(C=self.C, max_iter=3000, random_state=self.seed).fit(X, y)
        return self

    def features(self, texts):
        return self.vectorizer.transform(texts)

    def predict_proba(self, texts) -> np.ndarray:
        return self.model.predict_proba(self.features(texts))

    def logit_weights(self, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """(weight (K, F), bias (K,)) of a linear layer whose softmax equals `predict_proba`
        (binary: logits 0 and the regression's)."""
        W, b = self.model.coef_, self.model.intercept_
        if n_classes == 2 and W.shape[0] == 1:
            W, b = np.vstack([np.zeros_like(W), W]), np.array([0.0, b[0]])
        return W, b


def make_tfidf_vectorizer(lowercase: bool = True, vocabulary: dict | None = None) -> TfidfVectorizer:
    return TfidfVectorizer(
        ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=lowercase, strip_accents=None, vocabulary=vocabulary
    )


def vectorizer_to_dict(v: TfidfVectorizer) -> dict:
    return {
        "lowercase": v.lowercase,
        "vocabulary": {k: int(i) for k, i in v.vocabulary_.items()},
        "idf": v.idf_.tolist(),
    }


def vectorizer_from_dict(d: dict) -> TfidfVectorizer:
    v = make_tfidf_vectorizer(d["lowercase"], d["vocabulary"])
    v.idf_ = np.asarray(d["idf"], dtype=np.float64)
    return v


class MajorityClass:
    name = "majority"

    def fit(self, texts, y):
        counts = np.bincount(np.asarray(y))
        self.proba_ = counts / counts.sum()
        return self

    def predict_proba(self, texts) -> np.ndarray:
        return np.tile(self.proba_, (len(texts), 1))


# --- language models -----------------------------------------------------------------------


def _cached_kneser_ney():
    """nltk's interpolated Kneser-Ney smoothing with its counts indexed once.

    nltk computes each continuation count by scanning every higher-order n-gram, and each
    context's totals by summing its followers, on every call: 37 scored tokens/s on the
    bundled reviews. This subclass precomputes exactly those numbers once after fitting;
    the formulas are nltk's own (`nltk.lm.smoothing.KneserNey.alpha_gamma`)."""
    from collections import defaultdict

    from nltk.lm.smoothing import KneserNey

    class CachedKneserNey(KneserNey):
        def __init__(self, vocabulary, counter, order, discount=0.75, **kwargs):
            super().__init__(vocabulary, counter, order, discount=discount, **kwargs)
            self._cont = None  # built on first use: the model is fitted after this is made
            self._context_stats: dict = {}

        def _index(self) -> None:
            cont, total = defaultdict(int), defaultdict(int)
            for k in range(2, self._order + 1):
                for prefix, followers in self.counts[k].items():
                    n = 0
                    for word, count in followers.items():
                        if count > 0:
                            cont[(prefix[1:], word)] += 1
                            n += 1
                    total[prefix[1:]] += n
            self._cont, self._total = dict(cont), dict(total)

        def _continuation_counts(self, word, context=tuple()):
            if self._cont is None:
                self._index()
            return self._cont.get((context, word), 0), self._total.get(context, 0)

        def _stats(self, context):
            stats = self._context_stats.get(context)
            if stats is None:
                followers = self.counts[context]
                stats = (followers.N(), sum(1 for c in followers.values() if c > 0))
                self._context_stats[context] = stats
            return stats

        def alpha_gamma(self, word, context):
            n, n_plus = self._stats(context)
            if len(context) + 1 == self._order:
                count, total = self.counts[context][word], n
            else:
                count, total = self._continuation_counts(word, context)
            alpha = max(count - self.discount, 0.0) / total
            gamma = self.discount * n_plus / total
            return alpha, gamma

    return CachedKneserNey


class KneserNeyLM:
    """An interpolated Kneser-Ney n-gram language model (nltk.lm), the baseline of the
    recurrent language model on the same tokens: each document's tokens and one end-of-text
    token, every token outside the model's vocabulary mapped to its unknown token first.
    The order and the discount are chosen on validation perplexity."""

    name = "ngram"
    ORDERS = (2, 3, 4)
    DISCOUNTS = (0.5, 0.75, 0.9)

    def __init__(self, eos: str = "</s>"):
        self.eos = eos

    def _fit_order(self, docs: list[list[str]], order: int):
        from nltk.lm.models import InterpolatedLanguageModel
        from nltk.lm.preprocessing import padded_everygram_pipeline

        train, vocab = padded_everygram_pipeline(order, docs)
        lm = InterpolatedLanguageModel(_cached_kneser_ney(), order, params={"order": order})
        lm.fit(train, vocab)
        return lm

    def _log_prob(self, lm, docs: list[list[str]]) -> tuple[float, int]:
        """(sum of natural-log probabilities, tokens scored): every token and one end per doc."""
        order, total, n = lm.order, 0.0, 0
        score = lm.unmasked_score
        lookup = lm.vocab.lookup
        for doc in docs:
            padded = ["<s>"] * (order - 1) + list(lookup(doc)) + ["</s>"]
            for i in range(order - 1, len(padded)):
                p = score(padded[i], tuple(padded[i - order + 1 : i]))
                total += math.log(p) if p > 0 else -math.inf
                n += 1
        return total, n

    def fit(self, train_docs: list[list[str]], val_docs: list[list[str]]) -> KneserNeyLM:
        best = None
        self.val_perplexity_ = {}
        for order in self.ORDERS:
            lm = self._fit_order(train_docs, order)
            for discount in self.DISCOUNTS:
                lm.estimator.discount = discount
                lp, n = self._log_prob(lm, val_docs)
                ppl = math.exp(-lp / n)
                self.val_perplexity_[f"{order}/{discount}"] = ppl
                if best is None or ppl < best[0]:
                    best = (ppl, order, discount, lm)
        _, self.order_, self.discount_, self.lm_ = best
        self.lm_.estimator.discount = self.discount_
        return self

    def perplexity(self, docs: list[list[str]]) -> tuple[float, float, int]:
        """(perplexity, sum of natural-log probabilities, tokens scored)."""
        lp, n = self._log_prob(self.lm_, docs)
        return math.exp(-lp / n), lp, n
